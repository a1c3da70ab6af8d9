"""JSON-lines export and import of records.

Export format: one JSON object per line, :meth:`schemas.Record.flat` serialised with orjson (UTF-8, no
ASCII escaping, keys in model order), ``\\n`` after every line. Import reads that back losslessly, and also
reads the previous system's logs (:mod:`daemon.legacy`), detected line by line. Every imported record goes
through :meth:`Store.commit_batch`, so the idempotency rules of live ingestion apply: a ``message_id``
already recorded is counted as a duplicate, never stored twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

import orjson
from pydantic import ValidationError

from daemon.legacy import LegacyLineError, first_error, is_legacy, legacy_to_envelope
from daemon.store.base import Store
from daemon.tagging.base import Tagger
from schemas import DEFAULT_MAX_CONTENT_BYTES, AgentMessage, Record, RejectReason
from schemas._types import utc_now

#: Records committed per transaction during an import (the daemon's default batch size).
IMPORT_BATCH_SIZE = 500

#: Directory of the day-by-day export, under the chosen output directory.
DAILY_DIR = "conversation_logs"


def record_line(record: Record) -> bytes:
    """One export line: the flat record as compact JSON, then a newline."""
    return orjson.dumps(record.flat()) + b"\n"


def export_records(
    store: Store, out: BinaryIO | IO[bytes], since: datetime | None = None, until: datetime | None = None
) -> int:
    """Write every record with ``since <= created_at < until`` to ``out``, one JSON object per line.

    Records come in ``created_at``, then ``message_id`` order, each with its current tags.

    Args:
        store: The store to read.
        out: A binary stream (a file, ``sys.stdout.buffer``).
        since: Inclusive lower bound on ``created_at`` (None: from the first record).
        until: Exclusive upper bound on ``created_at`` (None: to the last record).

    Returns:
        The number of records written.
    """
    count = 0
    for record in store.iter_records(since=since, until=until):
        out.write(record_line(record))
        count += 1
    out.flush()
    return count


def export_daily(
    store: Store, out_dir: Path, since: datetime | None = None, until: datetime | None = None
) -> dict[Path, int]:
    """Write records day by day to ``out_dir/conversation_logs/YYYY-MM-DD.jsonl`` (by ``created_at`` UTC).

    Each day file is written whole to a temporary name and then renamed, so a reader never sees half a
    file and an existing day file is replaced, not appended to. With ``since``/``until`` inside a day, that
    day's file holds only the selected part.

    Returns:
        Each file written with its number of records, in day order.
    """
    directory = out_dir / DAILY_DIR
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[Path, int] = {}
    current_day: str | None = None
    handle: IO[bytes] | None = None
    tmp_path: Path | None = None

    def finish() -> None:
        if handle is not None and tmp_path is not None and current_day is not None:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            final = directory / f"{current_day}.jsonl"
            tmp_path.replace(final)
            written[final] = written.pop(tmp_path)

    try:
        for record in store.iter_records(since=since, until=until):
            day = record.envelope.created_at.date().isoformat()
            if day != current_day:
                finish()
                current_day = day
                tmp_path = directory / f".{day}.jsonl.tmp"
                handle = tmp_path.open("wb")
                written[tmp_path] = 0
            assert handle is not None and tmp_path is not None  # set together above
            handle.write(record_line(record))
            written[tmp_path] += 1
        finish()
        handle = None
    finally:
        if handle is not None and not handle.closed:  # an error mid-day: leave no temporary file behind
            handle.close()
            if tmp_path is not None:
                with contextlib.suppress(OSError):
                    tmp_path.unlink()
    return written


# -- import ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """A line that was not imported: its 1-based number, a stable reason code and a readable reason."""

    line: int
    code: str
    reason: str


@dataclass(slots=True)
class ImportReport:
    """What an import did. ``imported + duplicate + rejected`` = the non-blank lines read."""

    source: str
    imported: int = 0
    #: already recorded (same ``message_id``), including re-imports of the very same line
    duplicate: int = 0
    rejected: int = 0
    rejected_lines: list[RejectedLine] = field(default_factory=list)
    #: how many lines of each detected format: ``aced`` (export lines), ``envelope`` (bare
    #: ``AgentMessage`` objects), ``legacy``
    formats: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``aced import --json``)."""
        return {
            "source": self.source,
            "imported": self.imported,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "formats": dict(self.formats),
            "rejected_lines": [
                {"line": r.line, "code": r.code, "reason": r.reason} for r in self.rejected_lines
            ],
        }


class _Rejected(Exception):
    def __init__(self, code: RejectReason, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def import_stream_name(source_name: str) -> str:
    """The ``stream`` recorded for lines that carry none (legacy logs, bare envelopes)."""
    return f"import:{source_name}"


def _parse_line(
    raw: bytes, line_no: int, source_name: str, received_at: datetime, max_content_bytes: int
) -> tuple[str, Record]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Rejected(RejectReason.INVALID_UTF8, f"not valid UTF-8 at byte {exc.start}") from None
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _Rejected(RejectReason.INVALID_JSON, f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _Rejected(RejectReason.INVALID_JSON, f"a JSON {type(obj).__name__}, not an object")
    context = {"max_content_bytes": max_content_bytes}

    if "message_id" in obj and "stream" in obj and "entry_id" in obj:
        try:
            record = Record.from_flat(obj, context=context)
        except ValidationError as exc:
            raise _Rejected(RejectReason.VALIDATION, first_error(exc)) from None
        if record.content_sha256 != _sha256(record.envelope.content):
            raise _Rejected(RejectReason.VALIDATION, "content_sha256 does not match the content")
        return "aced", record

    if "message_id" in obj:
        fmt = "envelope"
        try:
            envelope = AgentMessage.model_validate(obj, strict=False, context=context)
        except ValidationError as exc:
            raise _Rejected(RejectReason.VALIDATION, first_error(exc)) from None
    elif is_legacy(obj):
        fmt = "legacy"
        try:
            envelope = legacy_to_envelope(obj, max_content_bytes=max_content_bytes)
        except LegacyLineError as exc:
            raise _Rejected(RejectReason.LEGACY_IMPORT, str(exc)) from None
    else:
        raise _Rejected(RejectReason.VALIDATION, "neither an aced export line nor a legacy log line")
    return fmt, Record(
        envelope=envelope,
        stream=import_stream_name(source_name),
        entry_id=f"0-{line_no}",
        received_at=received_at,
        delivery_count=1,
        content_sha256=_sha256(envelope.content),
    )


def _numbered_lines(stream: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, raw in enumerate(stream, start=1):
        line = raw.rstrip(b"\r\n")
        if line.strip():
            yield number, line


def import_jsonl(
    source: Path | str | BinaryIO | IO[bytes],
    store: Store,
    tagger: Tagger | None = None,
    *,
    source_name: str | None = None,
    batch_size: int = IMPORT_BATCH_SIZE,
    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
) -> ImportReport:
    """Import an aced export or a legacy log (detected per line) into ``store``.

    Lines are committed in batches of ``batch_size`` through ``store.commit_batch``, so re-importing a
    file imports nothing and counts every line as a duplicate. A line that cannot be read or mapped is
    listed in the report with its number and reason and never stops the rest. Blank lines are skipped.

    Records of an aced export keep their stream, entry id, times, delivery count and tags, so that
    export -> import -> export is byte-identical. Lines without those (legacy logs, bare envelopes) get
    ``stream = "import:<file name>"`` and ``entry_id = "0-<line number>"``.

    Args:
        source: A path, or a binary stream (then give ``source_name``).
        store: Where to import.
        tagger: Tags records that arrive without tags (legacy lines, envelopes, untagged exports); records
            that carry tags keep them. Without a tagger they are stored untagged.
        source_name: Name used in the import stream; defaults to the file's name.
        batch_size: Records per transaction.
        max_content_bytes: Content cap to validate against (the daemon's ``max_content_bytes``).

    Raises:
        OSError: The file cannot be opened (an unreadable line is reported, not raised).
        StoreUnavailable: The store cannot be written; batches committed before stay committed.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        with path.open("rb") as handle:
            return import_jsonl(
                handle,
                store,
                tagger,
                source_name=source_name or path.name,
                batch_size=batch_size,
                max_content_bytes=max_content_bytes,
            )
    name = source_name or "stdin"
    report = ImportReport(source=name)
    received_at = utc_now()
    pending: list[Record] = []
    for line_no, raw in _numbered_lines(source):
        try:
            fmt, record = _parse_line(raw, line_no, name, received_at, max_content_bytes)
        except _Rejected as rejected:
            report.rejected += 1
            report.rejected_lines.append(RejectedLine(line_no, rejected.code.value, rejected.reason))
            continue
        report.formats[fmt] = report.formats.get(fmt, 0) + 1
        pending.append(record)
        if len(pending) >= batch_size:
            _commit(store, pending, tagger, report)
            pending = []
    if pending:
        _commit(store, pending, tagger, report)
    return report


def _commit(store: Store, records: list[Record], tagger: Tagger | None, report: ImportReport) -> None:
    if tagger is not None:
        untagged = [i for i, r in enumerate(records) if r.tags is None]
        if untagged:
            tags = tagger.tag_batch([records[i].envelope for i in untagged])
            for i, tag in zip(untagged, tags, strict=True):
                if tag is not None:
                    records[i] = records[i].model_copy(update={"tags": tag})
    result = store.commit_batch(records, [])
    report.imported += len(result.inserted)
    report.duplicate += len(result.duplicates) + len(result.redelivered)
