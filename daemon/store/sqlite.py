"""The embedded store: one SQLite file in WAL mode, numbered migrations, an FTS5 index on content.

One writer connection per process, shared between threads behind a lock (the daemon commits from a worker
thread); other processes (the CLI) open their own connections, and WAL lets them read while the daemon
writes. Every write happens in one ``BEGIN IMMEDIATE`` transaction, so the idempotency check and the insert
see the same database state even when another process writes too.
"""

# SQL text here is assembled only from this module's constants (column lists, placeholders); every value
# is bound as a parameter. S608 cannot tell the two apart.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import sqlite3
import struct
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import orjson
import structlog

from daemon.store.base import (
    CommitResult,
    StoreCounts,
    StoredDeadLetter,
    StoreError,
    StoreUnavailable,
    TagRow,
    tag_row,
    tags_from_row,
)
from schemas import SIGNAL_NAMES, AgentMessage, DeadLetter, Record, RejectReason, Tags
from schemas._types import utc_now

log = structlog.get_logger()

#: How long a writer waits for another process's write lock before the store reports itself unavailable.
DEFAULT_BUSY_TIMEOUT_MS = 5000

#: With a background checkpointer, a WAL larger than this is started over (see ``_restart_wal``).
WAL_RESTART_BYTES = 64 * 1024 * 1024

#: Records re-read from the store were validated when written; the content cap then may have been higher
#: than the default, so reading must not enforce it again.
_READ_CONTEXT = {"max_content_bytes": 1 << 62}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

#: Signal name -> tags column. ``novelty`` is both a signal and the history-based score, so the signal's
#: column carries a suffix.
SIGNAL_COLUMNS: dict[str, str] = {
    name: ("novelty_signal" if name == "novelty" else name) for name in SIGNAL_NAMES
}

#: SQLite result codes that mean "cannot write right now" (retry later), not "this is a bug".
_UNAVAILABLE_CODES = (
    "SQLITE_READONLY",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_PERM",
    "SQLITE_NOLFS",
)
_UNAVAILABLE_TEXT = (
    "readonly database",
    "disk is full",
    "unable to open database",
    "database is locked",
    "disk i/o error",
)

_RECORD_COLUMNS = (
    "message_id, agent, role, conversation_id, reply_to, content, attachments, created_at, created_us, "
    "sender_tags, metadata, schema_version, stream, entry_id, received_at, committed_at, committed_us, "
    "delivery_count, content_sha256"
)
_TAG_COLUMNS = (
    "tagger_version, tier, tier_rule, tier_confidence, novelty, emergence, "
    + ", ".join(SIGNAL_COLUMNS[name] for name in SIGNAL_NAMES)
    + ", evidence"
)
#: The columns read to rebuild a Record with its current tags (see :func:`row_to_record`); ``r`` is
#: records, ``t`` the current tags row (LEFT JOIN, so all NULL when untagged).
RECORD_SELECT = (
    ", ".join(f"r.{c.strip()}" for c in _RECORD_COLUMNS.split(","))
    + ", "
    + ", ".join(f"t.{c.strip()}" for c in _TAG_COLUMNS.split(","))
)
#: FROM clause joining each record to its current tags.
RECORD_FROM = "records r LEFT JOIN tags t ON t.message_id = r.message_id AND t.is_current = 1"

_INSERT_RECORD = (
    f"INSERT INTO records ({_RECORD_COLUMNS}) VALUES ({', '.join('?' * len(_RECORD_COLUMNS.split(',')))}) "
    "ON CONFLICT (message_id) DO NOTHING"
)
_INSERT_TAGS = (
    f"INSERT INTO tags (message_id, is_current, added_us, {_TAG_COLUMNS}) "
    f"VALUES ({', '.join('?' * (3 + len(_TAG_COLUMNS.split(','))))})"
)
_INSERT_DEAD_LETTER = (
    "INSERT INTO dead_letters (stream, entry_id, reason, detail, fields, message_id, delivery_count, "
    "received_at, consumer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


# -- encodings -------------------------------------------------------------------------------------------


def to_iso(value: datetime) -> str:
    """A timezone-aware datetime as UTC ISO-8601 text (the stored form of every ``*_at`` column)."""
    return value.astimezone(UTC).isoformat()


def to_us(value: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the Unix epoch (the ``*_us`` columns)."""
    return (value - _EPOCH) // _MICROSECOND


def from_iso(text: str) -> datetime:
    """Inverse of :func:`to_iso`."""
    return datetime.fromisoformat(text).astimezone(UTC)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


def pack_fields(fields: dict[bytes, bytes]) -> bytes:
    """Encode a dead letter's original stream fields exactly: a version byte ``0x01``, then for each pair a
    4-byte big-endian length and the key's bytes, a 4-byte length and the value's bytes, in order."""
    parts = [b"\x01"]
    for key, value in fields.items():
        parts.append(struct.pack(">I", len(key)))
        parts.append(key)
        parts.append(struct.pack(">I", len(value)))
        parts.append(value)
    return b"".join(parts)


def unpack_fields(blob: bytes) -> dict[bytes, bytes]:
    """Inverse of :func:`pack_fields`; raises :class:`StoreError` on a blob it did not write."""
    if not blob or blob[0] != 1:
        raise StoreError("dead letter fields: unknown encoding")
    out: dict[bytes, bytes] = {}
    pos, end = 1, len(blob)
    try:
        while pos < end:
            (klen,) = struct.unpack_from(">I", blob, pos)
            key = blob[pos + 4 : pos + 4 + klen]
            pos += 4 + klen
            (vlen,) = struct.unpack_from(">I", blob, pos)
            value = blob[pos + 4 : pos + 4 + vlen]
            pos += 4 + vlen
            if len(key) != klen or len(value) != vlen:
                raise StoreError("dead letter fields: truncated")
            out[bytes(key)] = bytes(value)
    except struct.error:
        raise StoreError("dead letter fields: truncated") from None
    return out


def _record_row(record: Record, committed_at: datetime, iso: dict[datetime, str]) -> tuple[Any, ...]:
    env = record.envelope
    # An imported record keeps the commit time it was first recorded with, so export -> import -> export
    # is byte-identical; a new record gets this transaction's time.
    committed = record.committed_at or committed_at
    # received_at and committed_at are mostly shared by a whole batch: format each distinct value once.
    received_iso = iso.get(record.received_at)
    if received_iso is None:
        received_iso = iso[record.received_at] = to_iso(record.received_at)
    committed_iso = iso.get(committed)
    if committed_iso is None:
        committed_iso = iso[committed] = to_iso(committed)
    return (
        env.message_id,
        env.agent,
        env.role,
        env.conversation_id,
        env.reply_to,
        env.content,
        _json([a.model_dump(mode="json") for a in env.attachments]) if env.attachments else None,
        to_iso(env.created_at),
        to_us(env.created_at),
        None if env.sender_tags is None else _json(env.sender_tags),
        _json(env.metadata),
        env.schema_version,
        record.stream,
        record.entry_id,
        received_iso,
        committed_iso,
        to_us(committed),
        record.delivery_count,
        record.content_sha256,
    )


def row_to_record(row: Sequence[Any]) -> Record:
    """Rebuild a :class:`Record` from a row selected with :data:`RECORD_SELECT`."""
    (
        message_id,
        agent,
        role,
        conversation_id,
        reply_to,
        content,
        attachments,
        created_at,
        _created_us,
        sender_tags,
        metadata,
        schema_version,
        stream,
        entry_id,
        received_at,
        committed_at,
        _committed_us,
        delivery_count,
        content_sha256,
    ) = row[:19]
    envelope = AgentMessage.model_validate(
        {
            "message_id": message_id,
            "agent": agent,
            "role": role,
            "conversation_id": conversation_id,
            "reply_to": reply_to,
            "content": content,
            "attachments": orjson.loads(attachments) if attachments else [],
            "created_at": from_iso(created_at),
            "sender_tags": None if sender_tags is None else orjson.loads(sender_tags),
            "metadata": orjson.loads(metadata),
            "schema_version": schema_version,
        },
        strict=False,
        context=_READ_CONTEXT,
    )
    tags = tags_from_row(row[19:]) if row[19] is not None else None
    return Record(
        envelope=envelope,
        stream=stream,
        entry_id=entry_id,
        received_at=from_iso(received_at),
        committed_at=from_iso(committed_at),
        delivery_count=delivery_count,
        content_sha256=content_sha256,
        tags=tags,
    )


def _is_unavailable(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(_UNAVAILABLE_CODES):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _UNAVAILABLE_TEXT)


# -- migrations ------------------------------------------------------------------------------------------


def available_migrations() -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` of every shipped migration, in order. Files are ``NNNN_name.sql``."""
    found: list[tuple[int, str, str]] = []
    for entry in resources.files("daemon.store").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql") and entry.name[:4].isdigit():
            found.append((int(entry.name[:4]), entry.name[:-4], entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two migrations share a number: {versions}")
    return found


def _split_statements(sql: str) -> list[str]:
    """Split a migration into statements; ``sqlite3.complete_statement`` understands triggers' ``END;``."""
    statements: list[str] = []
    buffer: list[str] = []
    for line in sql.splitlines(keepends=True):
        buffer.append(line)
        text = "".join(buffer)
        if sqlite3.complete_statement(text):
            if text.strip():
                statements.append(text)
            buffer = []
    rest = "".join(buffer).strip()
    # A trailing fragment of comments only is fine; anything else is a broken migration.
    if rest and any(not ln.strip().startswith("--") for ln in rest.splitlines() if ln.strip()):
        raise StoreError(f"migration ends with an incomplete statement: {rest[:60]!r}")
    return statements


# -- the store -------------------------------------------------------------------------------------------


class SQLiteStore:
    """The :class:`~daemon.store.base.Store` on one SQLite file.

    Args:
        path: The database file. Its directory must exist (``open_store`` creates the data dir); a
            vanished directory is reported as :class:`StoreUnavailable`, never silently recreated.
        synchronous: ``PRAGMA synchronous``. ``FULL`` (default): a returned ``commit_batch`` survives a
            power cut, which the daemon relies on before it acks.
        busy_timeout_ms: How long a write waits for another process's lock before
            :class:`StoreUnavailable`.
        readonly: Open with ``mode=ro`` (readers that must never create or migrate anything).
        background_checkpoint_s: If set, commits never checkpoint the WAL themselves; a thread with its
            own connection runs a passive checkpoint this often instead (the daemon: the copy back into
            the database file then runs beside ingest, not inside a commit it would hold up).
    """

    def __init__(
        self,
        path: Path,
        synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL",
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        readonly: bool = False,
        background_checkpoint_s: float | None = None,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.readonly = readonly
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        # Reads have a connection of their own: in WAL mode a reader sees the last committed state and
        # never waits for a write transaction, so the recorder's history loads (tagger priming) and
        # analytics do not queue behind a commit and its fsync.
        self._read_lock = threading.Lock()
        self._read_conn: sqlite3.Connection | None = None
        self._migrated = False
        self._closed = False
        self._checkpoint_s = None if readonly else background_checkpoint_s
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()

    # -- connection management

    def _open(self) -> sqlite3.Connection:
        if self.readonly:
            # as_uri() percent-encodes, so a path with '?' or '#' cannot be read as URI parameters.
            uri = f"{self.path.absolute().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if not self.readonly:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"cannot switch {self.path} to WAL mode (got {mode})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = OFF")
            # Bigger page cache than the 2 MiB default: FTS5 merges and the indexes stay in memory.
            conn.execute("PRAGMA cache_size = -32768")
            # Checkpoint every ~16 MiB of WAL instead of 4 MiB: a 500-record batch writes about 1 MiB, and
            # fewer, larger checkpoints cost less per record (pages rewritten often are copied back once).
            # With a background checkpointer, commits never checkpoint (0).
            autocheckpoint = 0 if self._checkpoint_s is not None else 4000
            conn.execute(f"PRAGMA wal_autocheckpoint = {autocheckpoint}")
            if self._checkpoint_s is not None:
                # When this writer starts the WAL over (see _restart_wal), it cuts the file back to this size.
                conn.execute(f"PRAGMA journal_size_limit = {WAL_RESTART_BYTES}")
                self._start_checkpointer()
        except BaseException:
            conn.close()
            raise
        return conn

    def _connection(self) -> sqlite3.Connection:
        """The open connection, reopened after a failure (and re-migrated if the file is new)."""
        if self._closed:
            raise StoreError("the store is closed")
        if self._conn is None:
            self._conn = self._open()
            if self._migrated:
                self._apply_migrations(self._conn)
        return self._conn

    def _read_connection(self) -> sqlite3.Connection:
        """The readers' connection (held under ``_read_lock``), opened on first use. ``mode=rw``: a store
        file that vanished is reported as unavailable, never recreated empty by a read."""
        if self._closed:
            raise StoreError("the store is closed")
        if self.readonly:
            return self._connection()  # one read-only connection serves everything
        if self._read_conn is None:
            conn = sqlite3.connect(
                f"{self.path.absolute().as_uri()}?mode=rw",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                conn.execute("PRAGMA query_only = ON")
                conn.execute("PRAGMA cache_size = -16384")
            except BaseException:
                conn.close()
                raise
            self._read_conn = conn
        return self._read_conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # A broken connection may refuse to close cleanly; it is gone anyway.
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _drop_read_connection(self) -> None:
        conn, self._read_conn = self._read_conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _fail(self, exc: sqlite3.Error, doing: str, reading: bool = False) -> StoreError:
        """Map an sqlite3 error to ours; after an availability error the connection (the readers' one when
        ``reading``) is reopened next time."""
        if _is_unavailable(exc):
            if reading and not self.readonly:
                self._drop_read_connection()
            else:
                self._drop_connection()
            return StoreUnavailable(f"{doing}: {exc} ({self.path})")
        return StoreError(f"{doing}: {exc}")

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            # If ROLLBACK fails the connection is dropped by _fail, and SQLite rolls back on close.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    # -- schema

    def migrate(self) -> None:
        """Create or upgrade the schema: each numbered migration applied once, in its own transaction."""
        with self._lock:
            try:
                self._apply_migrations(self._connection())
            except sqlite3.Error as exc:
                raise self._fail(exc, "migrate") from exc
            self._migrated = True

    def _apply_migrations(self, conn: sqlite3.Connection) -> None:
        # Fast path without any write: an up-to-date store opens even where it cannot be written (a
        # read-only copy, a full disk), so readers such as `aced query` still work.
        try:
            applied = {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            applied = set()
        missing = [m for m in available_migrations() if m[0] not in applied]
        if not missing:
            return
        if self.readonly:
            raise StoreError(f"{self.path} needs migrations {[m[0] for m in missing]}; open it writable once")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        for version, name, sql in missing:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Checked inside the write transaction: another process may have just applied it.
                done = conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
                ).fetchone()
                if done is None:
                    for statement in _split_statements(sql):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                        (version, name, to_iso(utc_now())),
                    )
                conn.execute("COMMIT")
            except BaseException:
                self._rollback(conn)
                raise

    def applied_migrations(self) -> list[int]:
        """Versions recorded in ``schema_migrations``."""
        rows = self.read("SELECT version FROM schema_migrations ORDER BY version")
        return [int(r[0]) for r in rows]

    # -- writing

    def check_writable(self) -> None:
        """Commit a one-row write (fsynced like any commit); raise :class:`StoreUnavailable` if it fails."""
        with self._write_transaction("check_writable") as conn:
            conn.execute(
                "INSERT INTO store_meta (key, value) VALUES ('writable_check', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (to_iso(utc_now()),),
            )

    @contextlib.contextmanager
    def _write_transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """Under the lock: BEGIN IMMEDIATE, hand out the connection, COMMIT. Any error rolls back; an
        SQLite error becomes :class:`StoreUnavailable` or :class:`StoreError` (``what`` names the call)."""
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    self._rollback(conn)
                    raise
            except sqlite3.Error as exc:
                raise self._fail(exc, what) from exc

    def commit_batch(
        self,
        records: Sequence[Record],
        dead_letters: Sequence[DeadLetter],
        tag_rows: Sequence[TagRow | None] | None = None,
    ) -> CommitResult:
        """Commit records (with their tags) and dead letters in ONE durable transaction.

        Each record's tags are ``tag_rows[i]`` when ``tag_rows`` is given (already in the store's form, as
        a tagger in another process sends them), else ``record.tags``.

        Each record ends in exactly one list of the result: ``inserted`` (new ``message_id``),
        ``redelivered`` (same ``message_id`` from the same stream entry: Redis delivered it again) or
        ``duplicates`` (same ``message_id`` from another entry; a row in ``duplicates`` notes whether the
        content matched). The same holds inside one batch: the first occurrence wins. A record whose
        ``committed_at`` is set (an import) keeps it; otherwise it gets this transaction's time.

        Returns only after COMMIT, which with ``synchronous=FULL`` is on disk. Raises
        :class:`StoreUnavailable` (nothing committed) when the store cannot be written.
        """
        now = utc_now()
        if not records and not dead_letters:
            return CommitResult(committed_at=now)  # nothing to make durable: no transaction, no fsync
        now_iso = to_iso(now)
        with self._write_transaction("commit_batch") as conn:
            result = self._commit_locked(conn, records, dead_letters, tag_rows, now, now_iso)
        return result

    def _commit_locked(
        self,
        conn: sqlite3.Connection,
        records: Sequence[Record],
        dead_letters: Sequence[DeadLetter],
        given_tags: Sequence[TagRow | None] | None,
        now: datetime,
        now_iso: str,
    ) -> CommitResult:
        now_us = to_us(now)
        iso_cache: dict[datetime, str] = {}
        inserted: list[str] = []
        duplicates: list[str] = []
        redelivered: list[str] = []
        new_rows: list[tuple[Any, ...]] = []
        tag_rows: list[tuple[Any, ...]] = []
        duplicate_rows: list[tuple[Any, ...]] = []
        redelivery_rows: list[tuple[Any, ...]] = []

        # One query for every message_id already recorded (json_each: one parameter, no variable limit).
        # Under BEGIN IMMEDIATE nobody else can insert between this SELECT and our INSERT.
        known: dict[str, tuple[str, str, str]] = {}
        if records:
            ids = _json(list({r.envelope.message_id for r in records}))
            for mid, stream, entry_id, sha in conn.execute(
                "SELECT message_id, stream, entry_id, content_sha256 FROM records "
                "WHERE message_id IN (SELECT value FROM json_each(?))",
                (ids,),
            ):
                known[mid] = (stream, entry_id, sha)

        if given_tags is not None and len(given_tags) != len(records):
            raise ValueError(f"{len(given_tags)} tag rows for {len(records)} records")
        for i, record in enumerate(records):
            mid = record.envelope.message_id
            seen = known.get(mid)
            if seen is None:
                known[mid] = (record.stream, record.entry_id, record.content_sha256)
                inserted.append(mid)
                new_rows.append(_record_row(record, now, iso_cache))
                if given_tags is not None:
                    given = given_tags[i]
                    if given is not None:
                        tag_rows.append((mid, 1, now_us, *given))
                elif record.tags is not None:
                    tag_rows.append((mid, 1, now_us, *tag_row(record.tags)))
            elif seen[0] == record.stream and seen[1] == record.entry_id:
                redelivered.append(mid)
                redelivery_rows.append((mid, record.stream, record.entry_id, now_iso, record.delivery_count))
            else:
                duplicates.append(mid)
                duplicate_rows.append(
                    (mid, record.stream, record.entry_id, now_iso, int(seen[2] == record.content_sha256))
                )

        if new_rows:
            (last_id,) = conn.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()
            cursor = conn.executemany(_INSERT_RECORD, new_rows)
            if cursor.rowcount != len(new_rows):  # cannot happen under BEGIN IMMEDIATE; never hide it
                raise StoreError(f"inserted {cursor.rowcount} of {len(new_rows)} new records")
            # The FTS index is filled here, in the same transaction, rather than by a per-row trigger, and
            # by one INSERT ... SELECT: SQLite indexes the whole batch in C, releasing the GIL once instead
            # of once per row. commit_batch is the only writer of records: the new rows are id > last_id.
            conn.execute(
                "INSERT INTO records_fts (rowid, content) SELECT id, content FROM records WHERE id > ?",
                (last_id,),
            )
        if tag_rows:
            conn.executemany(_INSERT_TAGS, tag_rows)
        if duplicate_rows:
            conn.executemany(
                "INSERT INTO duplicates (message_id, stream, entry_id, seen_at, content_matches) "
                "VALUES (?, ?, ?, ?, ?)",
                duplicate_rows,
            )
        if redelivery_rows:
            conn.executemany(
                "INSERT INTO redeliveries (message_id, stream, entry_id, seen_at, delivery_count) "
                "VALUES (?, ?, ?, ?, ?)",
                redelivery_rows,
            )
        new_letters: list[DeadLetter] = []
        if dead_letters:
            # An entry already dead-lettered (its ack was lost to a crash) is not stored twice.
            keys = _json([[d.stream, d.entry_id] for d in dead_letters])
            stored = set(
                conn.execute(
                    "SELECT stream, entry_id FROM dead_letters WHERE (stream, entry_id) IN "
                    "(SELECT value ->> 0, value ->> 1 FROM json_each(?))",
                    (keys,),
                ).fetchall()
            )
            for d in dead_letters:
                if (d.stream, d.entry_id) not in stored:
                    stored.add((d.stream, d.entry_id))
                    new_letters.append(d)
            conn.executemany(
                _INSERT_DEAD_LETTER,
                [
                    (
                        d.stream,
                        d.entry_id,
                        d.reason.value,
                        d.detail,
                        pack_fields(d.fields),
                        d.message_id,
                        d.delivery_count,
                        to_iso(d.received_at),
                        d.consumer,
                    )
                    for d in new_letters
                ],
            )
        conn.execute(
            "INSERT INTO store_meta (key, value) VALUES ('last_commit_at', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (now_iso,),
        )
        return CommitResult(
            inserted=inserted,
            duplicates=duplicates,
            redelivered=redelivered,
            dead_letters=len(new_letters),
            new_dead_letters=[f"{d.stream}/{d.entry_id}" for d in new_letters],
            committed_at=now,
        )

    def add_tags(self, message_id: str, tags: Tags) -> None:
        """Store another tag version for a record; it becomes the current one, earlier versions are kept.

        Adding a ``tagger_version`` the record already has replaces that version (and makes it current).
        Raises :class:`StoreError` if no record has this ``message_id``.
        """
        self.add_tags_many([(message_id, tags)])

    def add_tags_many(self, items: Sequence[tuple[str, Tags]]) -> None:
        """:meth:`add_tags` for many records in one transaction (``aced retag``)."""
        added_us = to_us(utc_now())
        with self._write_transaction("add_tags") as conn:
            for message_id, tags in items:
                known = conn.execute("SELECT 1 FROM records WHERE message_id = ?", (message_id,)).fetchone()
                if known is None:
                    raise StoreError(f"no record with message_id {message_id!r}")
                conn.execute(
                    "DELETE FROM tags WHERE message_id = ? AND tagger_version = ?",
                    (message_id, tags.tagger_version),
                )
                conn.execute(
                    "UPDATE tags SET is_current = 0 WHERE message_id = ? AND is_current = 1", (message_id,)
                )
                conn.execute(_INSERT_TAGS, (message_id, 1, added_us, *tag_row(tags)))

    def tag_history(self, message_id: str) -> list[Tags]:
        """Every tag version of a record, oldest first (the last one is current)."""
        rows = self.read(
            f"SELECT {_TAG_COLUMNS} FROM tags WHERE message_id = ? ORDER BY is_current, added_us",
            (message_id,),
        )
        return [tags_from_row(row) for row in rows]

    def mark_replayed(self, dead_letter_id: int, at: datetime) -> None:
        """Record that a dead letter was published again (``aced dlq replay``)."""
        with self._lock:
            try:
                conn = self._connection()
                cur = conn.execute(
                    "UPDATE dead_letters SET replayed_at = ? WHERE id = ?", (to_iso(at), dead_letter_id)
                )
            except sqlite3.Error as exc:
                raise self._fail(exc, "mark_replayed") from exc
        if cur.rowcount == 0:
            raise StoreError(f"no dead letter with id {dead_letter_id}")

    # -- reading

    def read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read-only statement and return all rows (used by analytics). Errors are mapped like
        writes; an invalid FTS5 expression surfaces as :class:`StoreError` with SQLite's message.

        Runs on the readers' own connection: it sees every committed transaction and never waits for one
        in progress."""
        with self._lock if self.readonly else self._read_lock:
            try:
                return [tuple(r) for r in self._read_connection().execute(sql, params).fetchall()]
            except sqlite3.Error as exc:
                raise self._fail(exc, "read", reading=True) from exc

    def counts(self) -> StoreCounts:
        """Totals of records, duplicates, redeliveries and dead letters, and the last commit time."""
        (row,) = self.read(
            "SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM duplicates), "
            "(SELECT count(*) FROM redeliveries), (SELECT count(*) FROM dead_letters), "
            "(SELECT value FROM store_meta WHERE key = 'last_commit_at')"
        )
        return StoreCounts(
            recorded=row[0],
            duplicates=row[1],
            redelivered=row[2],
            dead_letters=row[3],
            last_commit_at=from_iso(row[4]) if row[4] else None,
        )

    def get(self, message_id: str) -> Record | None:
        """One record by its ``message_id``, with its current tags."""
        rows = self.read(f"SELECT {RECORD_SELECT} FROM {RECORD_FROM} WHERE r.message_id = ?", (message_id,))
        return row_to_record(rows[0]) if rows else None

    def iter_records(
        self, since: datetime | None = None, until: datetime | None = None, batch_size: int = 1000
    ) -> Iterator[Record]:
        """Every record with ``since <= created_at < until``, ordered by ``created_at``, then ``message_id``.

        Reads page by page (keyset pagination), so the lock is never held across a ``yield`` and memory
        stays bounded on a large store.
        """
        lo = to_us(since) if since is not None else -(1 << 62)
        hi = to_us(until) if until is not None else 1 << 62
        after: tuple[int, str] = (lo - 1, "")
        while True:
            rows = self.read(
                f"SELECT {RECORD_SELECT} FROM {RECORD_FROM} "
                "WHERE r.created_us >= ? AND r.created_us < ? AND (r.created_us, r.message_id) > (?, ?) "
                "ORDER BY r.created_us, r.message_id LIMIT ?",
                (lo, hi, after[0], after[1], batch_size),
            )
            for row in rows:
                yield row_to_record(row)
            if len(rows) < batch_size:
                return
            after = (rows[-1][8], rows[-1][0])

    def conversation_history(self, conversation_id: str, before: datetime, limit: int) -> list[Record]:
        """Up to ``limit`` records of a conversation created before ``before``, oldest first."""
        rows = self.read(
            f"SELECT {RECORD_SELECT} FROM {RECORD_FROM} WHERE r.conversation_id = ? AND r.created_us < ? "
            "ORDER BY r.created_us DESC, r.message_id DESC LIMIT ?",
            (conversation_id, to_us(before), limit),
        )
        return [row_to_record(row) for row in reversed(rows)]

    def list_dead_letters(
        self, limit: int = 100, offset: int = 0, include_replayed: bool = True
    ) -> list[StoredDeadLetter]:
        """Dead letters, newest first."""
        where = "" if include_replayed else "WHERE replayed_at IS NULL"
        rows = self.read(
            f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters {where} ORDER BY id DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [_row_to_dead_letter(row) for row in rows]

    def get_dead_letter(self, dead_letter_id: int) -> StoredDeadLetter | None:
        """One dead letter by its store id."""
        rows = self.read(f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = ?", (dead_letter_id,))
        return _row_to_dead_letter(rows[0]) if rows else None

    def close(self) -> None:
        """Close the connection; later calls raise :class:`StoreError`."""
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=30)
        with self._read_lock:
            self._drop_read_connection()
        with self._lock:
            self._drop_connection()
            self._closed = True

    def _start_checkpointer(self) -> None:
        if self._checkpointer is not None and self._checkpointer.is_alive():
            return
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="aced-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _restart_wal(self, conn: sqlite3.Connection) -> None:
        """Make the next write start the WAL over from its beginning.

        SQLite starts the WAL over only when a write begins with every frame already copied back, which a
        writer that never pauses never lets a passive checkpoint reach: under a sustained backlog the WAL
        grew without bound (509 MiB after 100,000 messages in ``bench/ingest.py``), and with it the disk
        used and the cost of finding a page in it. A RESTART checkpoint must have no writer while it runs;
        waiting for SQLite's lock, it lost every race to a writer that commits back to back, so it takes
        this store's write lock instead: the commit thread waits while the frames written since the last
        pass (about a second's worth) are copied and synced, and its next commit starts the WAL over (and
        cuts the file back to ``WAL_RESTART_BYTES``).
        """
        with self._lock:
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        if busy:  # a reader kept it from finishing (or another process wrote): the next pass tries again
            log.info("wal_restart_postponed", frames=frames, copied=copied)

    def _checkpoint_loop(self) -> None:
        """Copy committed WAL pages back into the database file, off the commit path. PASSIVE never waits
        for or blocks a writer; one that cannot finish now finishes on a later pass."""
        assert self._checkpoint_s is not None
        conn: sqlite3.Connection | None = None
        page_size = 0
        while not self._stop_checkpoints.wait(self._checkpoint_s):
            try:
                if conn is None:
                    conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                    conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                    (page_size,) = conn.execute("PRAGMA page_size").fetchone()  # fixed for a database
                (_, frames, _) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames * page_size > WAL_RESTART_BYTES:
                    self._restart_wal(conn)
            except sqlite3.Error as exc:  # e.g. the store is unwritable for now: the writer reports it
                log.warning("checkpoint_failed", error=str(exc))
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DEAD_LETTER_COLUMNS = (
    "id, stream, entry_id, reason, detail, fields, message_id, delivery_count, received_at, consumer, "
    "replayed_at"
)


def _row_to_dead_letter(row: Sequence[Any]) -> StoredDeadLetter:
    (dl_id, stream, entry_id, reason, detail, fields, message_id, count, received_at, consumer, replayed) = (
        row
    )
    entry = DeadLetter(
        stream=stream,
        entry_id=entry_id,
        reason=RejectReason(reason),
        detail=detail,
        fields=unpack_fields(bytes(fields)),
        message_id=message_id,
        delivery_count=count,
        received_at=from_iso(received_at),
        consumer=consumer,
    )
    return StoredDeadLetter(id=dl_id, entry=entry, replayed_at=from_iso(replayed) if replayed else None)
