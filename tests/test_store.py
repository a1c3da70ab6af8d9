"""SQLiteStore on real files: migrations, idempotent batches, tags, dead letters, reads, failures."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.config import Settings
from daemon.store import SQLiteStore, Store, StoreError, StoreUnavailable, open_store
from daemon.store import sqlite as sqlite_store
from daemon.store.sqlite import available_migrations, pack_fields, unpack_fields
from schemas._types import utc_now
from tests.helpers import chattr
from tests.test_store_support import (
    T0,
    make_dead_letter,
    make_record,
    make_tags,
    open_test_store,
    varied_records,
)


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    s = open_test_store(tmp_path / "aced.sqlite3")
    yield s
    s.close()


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# -- schema and settings ---------------------------------------------------------------------------------


def test_satisfies_the_store_protocol(store: SQLiteStore) -> None:
    as_protocol: Store = store  # mypy checks the structural match; this checks it at runtime too
    for name in (
        "migrate",
        "check_writable",
        "commit_batch",
        "counts",
        "get",
        "iter_records",
        "conversation_history",
        "add_tags",
        "list_dead_letters",
        "get_dead_letter",
        "mark_replayed",
        "close",
    ):
        assert callable(getattr(as_protocol, name))


def test_migrations_apply_once_and_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "aced.sqlite3"
    first = open_test_store(path)
    versions = [v for v, _, _ in available_migrations()]
    assert versions[0] == 1
    assert first.applied_migrations() == versions
    first.commit_batch([make_record(1)], [])
    first.close()
    # Opening again (another process, a restart) applies nothing twice and keeps the data.
    second = open_test_store(path)
    assert second.applied_migrations() == versions
    assert second.counts().recorded == 1
    second.close()
    conn = _raw(path)
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(versions)
    conn.close()


def test_an_older_store_is_upgraded_by_the_missing_migrations_only(tmp_path: Path) -> None:
    path = tmp_path / "aced.sqlite3"
    store = open_test_store(path)
    store.commit_batch([make_record(1)], [])
    store.close()
    # Make it look like a store created before migration 0002 existed.
    conn = _raw(path)
    conn.execute("DELETE FROM schema_migrations WHERE version = 2")
    conn.execute("INSERT INTO records_fts (records_fts, rank) VALUES ('automerge', 4)")
    conn.close()
    upgraded = open_test_store(path)
    assert upgraded.applied_migrations() == [v for v, _, _ in available_migrations()]
    assert ("automerge", 16) in upgraded.read("SELECT k, v FROM records_fts_config")
    assert upgraded.counts().recorded == 1
    upgraded.close()


def test_tags_move_to_a_rowid_table_with_every_version_kept(tmp_path: Path) -> None:
    """Migration 0004 rebuilds tags as a rowid table: every version, its columns and the current flag kept."""
    path = tmp_path / "aced.sqlite3"
    store = open_test_store(path)
    records = [make_record(i) for i in range(3)]
    store.commit_batch(records, [])
    for i, record in enumerate(records):
        store.add_tags(record.envelope.message_id, make_tags("C", version="rules-1"))
        if i:
            store.add_tags(record.envelope.message_id, make_tags("A", 90, 80, version="rules-2"))
    store.close()
    conn = _raw(path)
    before = conn.execute("SELECT * FROM tags ORDER BY message_id, tagger_version").fetchall()
    # make it look like a store from before 0004: tags as 0001 created them
    conn.execute("DELETE FROM schema_migrations WHERE version = 4")
    conn.execute("ALTER TABLE tags RENAME TO tags_new_layout")
    conn.execute("DROP INDEX tags_current")
    columns = _migration_sql(1).split("CREATE TABLE tags (", 1)[1].split(") WITHOUT ROWID;", 1)[0]
    conn.execute(f"CREATE TABLE tags ({columns}) WITHOUT ROWID")
    conn.execute("CREATE UNIQUE INDEX tags_current ON tags (message_id) WHERE is_current = 1")
    conn.execute("INSERT INTO tags SELECT * FROM tags_new_layout")
    conn.execute("DROP TABLE tags_new_layout")
    assert "WITHOUT ROWID" in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'tags'").fetchone()[0]
    conn.close()

    upgraded = open_test_store(path)
    assert upgraded.applied_migrations() == [v for v, _, _ in available_migrations()]
    assert upgraded.read("SELECT * FROM tags ORDER BY message_id, tagger_version") == before
    assert len(before) == 5
    assert "WITHOUT ROWID" not in upgraded.read("SELECT sql FROM sqlite_master WHERE name = 'tags'")[0][0]
    assert upgraded.tag_history(records[1].envelope.message_id)[-1].tier == "A"
    upgraded.close()
    raw = _raw(path)
    with pytest.raises(sqlite3.IntegrityError):  # the key (message_id, tagger_version) came along
        raw.execute("INSERT INTO tags SELECT * FROM tags LIMIT 1")
    with pytest.raises(sqlite3.IntegrityError):  # so did "one current version per message"
        raw.execute(
            "INSERT INTO tags SELECT message_id, 'other', 1, added_us, tier, tier_rule, tier_confidence, "
            "novelty, emergence, novelty_signal, solution_quality, assumption_challenge, error_correction, "
            "cross_domain_synthesis, specialization_recognition, evidence FROM tags "
            "WHERE is_current = 1 LIMIT 1"
        )
    raw.close()


def _migration_sql(version: int) -> str:
    return next(sql for v, _, sql in available_migrations() if v == version)


def test_wal_mode_and_synchronous_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", sqlite_synchronous="EXTRA")
    store = open_store(settings)
    assert settings.store_path.exists()
    assert store.read("PRAGMA journal_mode") == [("wal",)]
    assert _writer_pragma(store, "synchronous") == 3  # EXTRA
    store.close()
    default = open_store(Settings(data_dir=tmp_path / "data"))
    assert _writer_pragma(default, "synchronous") == 2  # FULL by default: commit = on disk
    default.close()


def _writer_pragma(store: Store, name: str) -> object:
    # Per-connection settings are the writer's; read() runs on a connection of its own.
    assert isinstance(store, SQLiteStore)
    with store._lock:
        return store._connection().execute(f"PRAGMA {name}").fetchone()[0]


def test_open_store_without_create_refuses_a_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store at"):
        open_store(Settings(data_dir=tmp_path / "nothing"), create=False)
    assert not (tmp_path / "nothing").exists()


# -- commit_batch --------------------------------------------------------------------------------------


def test_commit_inserts_and_reads_back_exactly(store: SQLiteStore) -> None:
    records = varied_records()
    result = store.commit_batch(records, [])
    assert result.inserted == [r.envelope.message_id for r in records]
    assert result.duplicates == [] and result.redelivered == []
    assert result.committed_at is not None
    for original in records:
        got = store.get(original.envelope.message_id)
        assert got is not None
        assert got.committed_at == result.committed_at
        assert got.model_copy(update={"committed_at": None}) == original
    assert store.get("missing") is None


def test_same_message_id_is_one_record_and_the_duplicate_is_counted(store: SQLiteStore) -> None:
    store.commit_batch([make_record(1)], [])
    same_text = make_record(1, entry_id="1700000000000-99")
    other_text = make_record(1, entry_id="1700000000000-98", content="changed")
    redelivery = make_record(1)
    result = store.commit_batch([same_text, other_text, redelivery], [])
    assert result.inserted == []
    assert result.duplicates == ["m-000001", "m-000001"]
    assert result.redelivered == ["m-000001"]
    got = store.get("m-000001")
    assert got is not None and got.envelope.content == "message number 1"  # the first one stays
    assert store.read("SELECT entry_id, content_matches FROM duplicates ORDER BY id") == [
        ("1700000000000-99", 1),
        ("1700000000000-98", 0),
    ]
    counts = store.counts()
    assert (counts.recorded, counts.duplicates, counts.redelivered) == (1, 2, 1)


def test_duplicates_inside_one_batch_first_wins(store: SQLiteStore) -> None:
    a = make_record(7, content="first")
    b = make_record(7, content="second", entry_id="1700000000000-70")
    again = make_record(7, content="first")
    result = store.commit_batch([a, b, again], [])
    assert result.inserted == ["m-000007"]
    assert result.duplicates == ["m-000007"]
    assert result.redelivered == ["m-000007"]
    assert store.counts().recorded == 1


def test_recommitting_a_whole_batch_is_idempotent(store: SQLiteStore) -> None:
    batch = [make_record(i) for i in range(50)]
    first = store.commit_batch(batch, [])
    second = store.commit_batch(batch, [])
    assert len(first.inserted) == 50
    assert second.inserted == [] and len(second.redelivered) == 50
    assert store.counts().recorded == 50
    # The full-text index holds each record once.
    assert store.read("SELECT count(*) FROM records_fts WHERE records_fts MATCH 'number'") == [(50,)]


def test_fts_index_follows_commits(store: SQLiteStore) -> None:
    store.commit_batch(
        [make_record(1, content="the gradient exploded"), make_record(2, content="all fine")], []
    )
    store.commit_batch([make_record(3, content="Gradient clipping fixed it")], [])
    rows = store.read(
        "SELECT r.message_id FROM records_fts f JOIN records r ON r.id = f.rowid "
        "WHERE records_fts MATCH 'gradient' ORDER BY r.message_id"
    )
    assert rows == [("m-000001",), ("m-000003",)]
    # The external-content index agrees with its table (FTS5's own consistency check). It is an INSERT
    # to SQLite, so it runs on a connection of its own: read() refuses statements that could write.
    raw = sqlite3.connect(store.path)
    raw.execute("INSERT INTO records_fts (records_fts) VALUES ('integrity-check')")
    raw.close()
    with pytest.raises(StoreError, match="readonly"):
        store.read("INSERT INTO records_fts (records_fts) VALUES ('integrity-check')")


def test_a_read_sees_the_last_commit_and_does_not_wait_for_a_write_in_progress(store: SQLiteStore) -> None:
    store.commit_batch([make_record(1)], [])
    inside, release = threading.Event(), threading.Event()

    def hold_a_write_open() -> None:
        with store._write_transaction("test") as conn:
            conn.execute("INSERT INTO store_meta (key, value) VALUES ('uncommitted', 'x')")
            inside.set()
            release.wait(30)

    writer = threading.Thread(target=hold_a_write_open)
    writer.start()
    try:
        assert inside.wait(10)
        with ThreadPoolExecutor(1) as pool:
            # Returns while the write transaction is still open (the writer waits for `release`).
            counts = pool.submit(store.counts).result(timeout=10)
            uncommitted = pool.submit(store.read, "SELECT * FROM store_meta WHERE key = 'uncommitted'")
            assert uncommitted.result(timeout=10) == []
        assert counts.recorded == 1
        assert writer.is_alive()
    finally:
        release.set()
        writer.join(10)
    assert store.read("SELECT value FROM store_meta WHERE key = 'uncommitted'") == [("x",)]


def test_commit_is_one_transaction(store: SQLiteStore) -> None:
    good = make_record(1)
    # A dead letter the database refuses (NOT NULL detail via a raw None) must take the records with it.
    bad = make_dead_letter(1).model_copy(update={"detail": None})
    with pytest.raises(StoreError):
        store.commit_batch([good], [bad])
    assert store.counts().recorded == 0
    assert store.commit_batch([good], []).inserted == ["m-000001"]


def test_an_empty_batch_commits_nothing(store: SQLiteStore) -> None:
    result = store.commit_batch([], [])
    assert (result.inserted, result.duplicates, result.redelivered, result.dead_letters) == ([], [], [], 0)
    assert store.counts().last_commit_at is None


def test_imported_records_keep_their_commit_time(store: SQLiteStore) -> None:
    old = make_record(1).model_copy(update={"committed_at": T0 + timedelta(minutes=5)})
    store.commit_batch([old], [])
    got = store.get("m-000001")
    assert got is not None and got.committed_at == T0 + timedelta(minutes=5)


# -- tags ------------------------------------------------------------------------------------------------


def test_current_tags_are_the_latest_added_and_versions_are_kept(store: SQLiteStore) -> None:
    store.commit_batch([make_record(1, tags=make_tags("E", version="rules-1"))], [])
    store.add_tags("m-000001", make_tags("A", 90, 80, version="model-1"))
    got = store.get("m-000001")
    assert got is not None and got.tags is not None
    assert (got.tags.tier, got.tags.tagger_version) == ("A", "model-1")
    assert [t.tagger_version for t in store.tag_history("m-000001")] == ["rules-1", "model-1"]
    # Re-adding an older version replaces it and makes it current again.
    store.add_tags("m-000001", make_tags("C", version="rules-1"))
    got = store.get("m-000001")
    assert got is not None and got.tags is not None and got.tags.tier == "C"
    assert [t.tagger_version for t in store.tag_history("m-000001")] == ["model-1", "rules-1"]
    assert store.read("SELECT count(*) FROM tags WHERE message_id = 'm-000001' AND is_current = 1") == [(1,)]


def test_tag_rows_given_beside_the_records_are_stored_as_their_tags(store: SQLiteStore) -> None:
    """The daemon's tagger process sends tags in the store's form; they are stored as if on the records,
    a ``None`` row leaves its record untagged, and a duplicate's row is not stored."""
    from daemon.store.base import tag_row

    tags = make_tags("A", 90, 80, version="rules-x")
    records = [make_record(1), make_record(2), make_record(1)]
    result = store.commit_batch(records, [], [tag_row(tags), None, tag_row(make_tags("C"))])
    assert result.inserted == ["m-000001", "m-000002"]
    first, second = store.get("m-000001"), store.get("m-000002")
    assert first is not None and first.tags == tags
    assert second is not None and second.tags is None
    with pytest.raises(ValueError):
        store.commit_batch([make_record(3)], [], [])


def test_add_tags_to_an_unknown_record_fails(store: SQLiteStore) -> None:
    with pytest.raises(StoreError, match="no record"):
        store.add_tags("nope", make_tags())


def test_untagged_record_reads_back_without_tags(store: SQLiteStore) -> None:
    store.commit_batch([make_record(1)], [])
    got = store.get("m-000001")
    assert got is not None and got.tags is None


# -- dead letters ----------------------------------------------------------------------------------------


def test_dead_letters_keep_the_original_bytes(store: SQLiteStore) -> None:
    odd = {b"data": bytes(range(256)), b"\x00key": b"", b"k2": b"\xc3\x28"}
    result = store.commit_batch([], [make_dead_letter(1), make_dead_letter(2, fields=odd)])
    assert result.dead_letters == 2
    newest, oldest = store.list_dead_letters()
    assert newest.entry.fields == odd and list(newest.entry.fields) == list(odd)  # order kept too
    assert oldest.entry == make_dead_letter(1)
    assert store.get_dead_letter(newest.id) == newest
    assert store.get_dead_letter(999) is None


def test_dead_letter_replay_state_and_paging(store: SQLiteStore) -> None:
    store.commit_batch([], [make_dead_letter(i) for i in range(5)])
    ids = [d.id for d in store.list_dead_letters()]
    assert ids == sorted(ids, reverse=True)
    assert [d.id for d in store.list_dead_letters(limit=2, offset=1)] == ids[1:3]
    when = utc_now()
    store.mark_replayed(ids[0], when)
    replayed = store.get_dead_letter(ids[0])
    assert replayed is not None and replayed.replayed_at == when
    assert ids[0] not in [d.id for d in store.list_dead_letters(include_replayed=False)]
    with pytest.raises(StoreError):
        store.mark_replayed(12345, when)


def test_field_encoding_round_trip_and_garbage() -> None:
    fields = {b"a": b"1", b"": b"\xff" * 3}
    assert unpack_fields(pack_fields(fields)) == fields
    assert unpack_fields(pack_fields({})) == {}
    with pytest.raises(StoreError):
        unpack_fields(b"\x02junk")
    with pytest.raises(StoreError):
        unpack_fields(pack_fields(fields)[:-2])


# -- reads -----------------------------------------------------------------------------------------------


def test_iter_records_orders_and_bounds_and_pages(store: SQLiteStore) -> None:
    same_time = T0 + timedelta(hours=1)
    records = [make_record(i) for i in range(30)]
    records += [make_record(100 + i, message_id=f"z-{i}", created_at=same_time) for i in (2, 0, 1)]
    store.commit_batch(list(reversed(records)), [])
    got = [r.envelope.message_id for r in store.iter_records(batch_size=7)]
    assert got == [f"m-{i:06d}" for i in range(30)] + ["z-0", "z-1", "z-2"]
    window = list(store.iter_records(since=T0 + timedelta(seconds=5), until=T0 + timedelta(seconds=9)))
    assert [r.envelope.message_id for r in window] == [f"m-{i:06d}" for i in range(5, 9)]


def test_conversation_history(store: SQLiteStore) -> None:
    store.commit_batch([make_record(i, conversation_id="c1" if i % 2 else "c2") for i in range(10)], [])
    history = store.conversation_history("c1", before=T0 + timedelta(seconds=8), limit=2)
    assert [r.envelope.message_id for r in history] == ["m-000005", "m-000007"]


def test_counts_on_an_empty_store(store: SQLiteStore) -> None:
    counts = store.counts()
    assert (counts.recorded, counts.duplicates, counts.redelivered, counts.dead_letters) == (0, 0, 0, 0)
    assert counts.last_commit_at is None


def test_concurrent_commits_from_threads(store: SQLiteStore) -> None:
    def work(k: int) -> None:
        for b in range(5):
            store.commit_batch([make_record(k * 1000 + b * 20 + i) for i in range(20)], [])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.counts().recorded == 400


def test_a_second_process_connection_reads_while_writer_is_open(tmp_path: Path, store: SQLiteStore) -> None:
    store.commit_batch([make_record(1)], [])
    reader = SQLiteStore(tmp_path / "aced.sqlite3", readonly=True)
    assert reader.counts().recorded == 1
    store.commit_batch([make_record(2)], [])
    assert reader.counts().recorded == 2
    reader.close()


def test_closed_store_refuses(store: SQLiteStore) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.counts()


# -- unavailability --------------------------------------------------------------------------------------


def test_locked_database_is_unavailable_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "aced.sqlite3"
    store = open_test_store(path, busy_timeout_ms=50)
    store.commit_batch([make_record(1)], [])
    other = _raw(path)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            store.commit_batch([make_record(2)], [])
        with pytest.raises(StoreUnavailable):
            store.check_writable()
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.check_writable()
    assert store.commit_batch([make_record(2)], []).inserted == ["m-000002"]
    assert store.counts().recorded == 2
    store.close()


def test_vanished_directory_is_unavailable_then_recovers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = data / "aced.sqlite3"
    store = open_test_store(path, busy_timeout_ms=50)
    store.commit_batch([make_record(1)], [])
    # Force the connection to be reopened: a lock failure drops it.
    other = _raw(path)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreUnavailable):
        store.commit_batch([make_record(2)], [])
    other.execute("ROLLBACK")
    other.close()
    # The data directory is moved away and a plain file sits in its place (an unmounted volume, say).
    shutil.move(str(data), str(tmp_path / "moved"))
    data.write_text("not a directory")
    with pytest.raises(StoreUnavailable, match="unable to open"):
        store.commit_batch([make_record(2)], [])
    data.unlink()
    shutil.move(str(tmp_path / "moved"), str(data))
    assert store.commit_batch([make_record(2)], []).inserted == ["m-000002"]
    assert store.counts().recorded == 2
    store.close()


def test_a_read_never_recreates_a_vanished_store_and_recovers_when_it_is_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = data / "aced.sqlite3"
    store = open_test_store(path)
    store.commit_batch([make_record(1)], [])
    shutil.move(str(data), str(tmp_path / "moved"))
    data.mkdir()  # the directory is back, empty (a volume not mounted yet, say)
    with pytest.raises(StoreUnavailable, match="unable to open"):
        store.counts()  # reads open their own connection: it must not create an empty store here
    assert not path.exists()
    data.rmdir()
    shutil.move(str(tmp_path / "moved"), str(data))
    assert store.counts().recorded == 1
    store.close()


def test_read_only_files_are_unavailable_then_recover(tmp_path: Path) -> None:
    """chattr +i makes files unwritable even for root (tests run as root, which ignores chmod). The -shm
    file is left alone: SQLite maps it into memory and an immutable mapping would crash the process."""
    path = tmp_path / "aced.sqlite3"
    store = open_test_store(path)
    store.commit_batch([make_record(1)], [])
    wal = Path(f"{path}-wal")
    if not chattr("+i", path, wal):
        store.close()
        pytest.skip("chattr +i is not supported here (needs CAP_LINUX_IMMUTABLE on ext2/3/4, xfs, btrfs)")
    try:
        with pytest.raises(StoreUnavailable):
            store.commit_batch([make_record(2)], [])
        # Reopened, the file is still read-only: still unavailable, still nothing committed.
        with pytest.raises(StoreUnavailable, match="readonly"):
            store.commit_batch([make_record(2)], [])
    finally:
        chattr("-i", path, wal)
    assert store.commit_batch([make_record(2)], []).inserted == ["m-000002"]
    assert store.counts().recorded == 2
    store.close()


def test_database_full_is_unavailable_then_recovers(tmp_path: Path) -> None:
    """``max_page_count`` caps the file the way a full disk does (SQLITE_FULL)."""
    store = open_test_store(tmp_path / "aced.sqlite3")
    store.commit_batch([make_record(1)], [])
    (pages,) = store.read("PRAGMA page_count")[0]
    # The cap is per connection, so it goes on the writer's (reads have a connection of their own).
    with store._lock:
        store._connection().execute(f"PRAGMA max_page_count = {pages}")
    big = [make_record(10 + i, content="x" * 5000) for i in range(50)]
    with pytest.raises(StoreUnavailable, match="full"):
        store.commit_batch(big, [])
    # The connection was reopened (the cap is per connection): the store works again, nothing half-done.
    assert store.counts().recorded == 1
    assert len(store.commit_batch(big, []).inserted) == 50
    store.close()


def test_an_up_to_date_read_only_store_still_opens_for_reading(tmp_path: Path) -> None:
    """Opening migrates only when something is missing, so a read-only copy can be queried."""
    settings = Settings(data_dir=tmp_path / "data")
    writer = open_store(settings)
    writer.commit_batch([make_record(1)], [])
    writer.close()  # last connection: the WAL is checkpointed into the file and removed
    if not chattr("+i", settings.store_path):
        pytest.skip("chattr +i is not supported here")
    try:
        reader = open_store(settings, create=False)
        assert reader.counts().recorded == 1
        with pytest.raises(StoreUnavailable, match="readonly"):
            reader.commit_batch([make_record(2)], [])
        reader.close()
    finally:
        chattr("-i", settings.store_path)


def test_readonly_store_refuses_to_migrate_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    sqlite3.connect(path).close()
    reader = SQLiteStore(path, readonly=True)
    with pytest.raises(StoreError, match="needs migrations"):
        reader.migrate()
    reader.close()


def test_background_checkpoint_copies_the_wal_into_the_database_outside_commits(tmp_path: Path) -> None:
    from tests.helpers import wait_until

    path = tmp_path / "aced.sqlite3"
    background = open_test_store(path, background_checkpoint_s=0.05)
    try:
        (auto,) = _raw(path).execute("PRAGMA wal_autocheckpoint").fetchone()
        assert auto == 1000  # a fresh connection's default; the store's own writer has it at 0
        (writer_auto,) = background._connection().execute("PRAGMA wal_autocheckpoint").fetchone()
        assert writer_auto == 0
        size_before = path.stat().st_size
        for batch in range(5):
            records = [make_record(batch * 100 + i) for i in range(100)]
            assert len(background.commit_batch(records, []).inserted) == 100
        # The copy into the database file happens in the checkpoint thread, not in the commits.
        wait_until(lambda: path.stat().st_size > size_before + 100 * 1024, timeout_s=10, what="a checkpoint")
        assert background.counts().recorded == 500
    finally:
        background.close()
    assert background._checkpointer is not None and not background._checkpointer.is_alive()


def _wal_salt(path: Path) -> bytes:
    # The WAL header's salts (bytes 16-23) change each time a writer starts the WAL over.
    with open(f"{path}-wal", "rb") as f:
        return f.read(24)[16:24]


def test_a_sustained_writer_keeps_the_wal_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits back to back never leave a passive checkpoint the moment to finish, so SQLite alone would
    never start the WAL over; the checkpointer forces it once the WAL outgrows WAL_RESTART_BYTES, and the
    writer then cuts the file back."""
    monkeypatch.setattr(sqlite_store, "WAL_RESTART_BYTES", 256 * 1024)
    path = tmp_path / "aced.sqlite3"
    store = open_test_store(path, background_checkpoint_s=0.01)
    salts: set[bytes] = set()
    largest = n = 0
    deadline = time.monotonic() + 60
    try:
        # Back to back, no pause between commits (a wait_until poll interval would give the checkpoint one).
        while len(salts) < 3 and time.monotonic() < deadline:
            store.commit_batch(
                [make_record(n + i, content=f"{n + i} " + "words " * 500) for i in range(5)], []
            )
            n += 5
            salts.add(_wal_salt(path))
            largest = max(largest, Path(f"{path}-wal").stat().st_size)
        assert len(salts) >= 3, f"the WAL was started over {len(salts) - 1} times in {n} commits"
        # Without restarts the WAL would hold every commit so far.
        assert largest < 4 * 1024 * 1024
        assert store.counts().recorded == n
    finally:
        store.close()
