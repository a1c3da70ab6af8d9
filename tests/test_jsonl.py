"""Export and import of JSON lines: lossless round trip, dedup on re-import, corrupt lines, day files."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from daemon.jsonl import export_daily, export_records, import_jsonl
from daemon.store import SQLiteStore
from schemas import AgentMessage, Signals, Tags
from tests.test_store_support import T0, make_record, make_tags, open_test_store, varied_records


@pytest.fixture
def source(tmp_path: Path) -> SQLiteStore:
    store = open_test_store(tmp_path / "source.sqlite3")
    store.commit_batch(varied_records(), [])
    yield store
    store.close()


def _export(store: SQLiteStore, **kwargs: object) -> bytes:
    out = io.BytesIO()
    export_records(store, out, **kwargs)  # type: ignore[arg-type]
    return out.getvalue()


def test_export_is_one_flat_object_per_line(source: SQLiteStore) -> None:
    lines = _export(source).splitlines()
    assert len(lines) == 5
    first = orjson.loads(lines[0])
    assert list(first)[:3] == ["message_id", "agent", "role"]
    assert first["content"] == "Grüße aus Köln — naïve café ✓"
    assert "Grüße".encode() in lines[0]  # UTF-8 as is, not \u escapes
    for key in ("stream", "entry_id", "received_at", "committed_at", "delivery_count", "content_sha256"):
        assert key in first
    assert first["tags"]["tier"] == "A"


def test_export_import_export_is_byte_identical(tmp_path: Path, source: SQLiteStore) -> None:
    exported = _export(source)
    path = tmp_path / "all.jsonl"
    path.write_bytes(exported)
    target = open_test_store(tmp_path / "target.sqlite3")
    report = import_jsonl(path, target)
    assert (report.imported, report.duplicate, report.rejected) == (5, 0, 0)
    assert report.formats == {"aced": 5}
    assert _export(target) == exported
    # Re-importing the same file: every line already recorded, nothing new.
    again = import_jsonl(path, target)
    assert (again.imported, again.duplicate, again.rejected) == (0, 5, 0)
    assert target.counts().recorded == 5
    assert _export(target) == exported
    target.close()


def test_export_time_window(source: SQLiteStore) -> None:
    lines = _export(source, since=T0 + timedelta(days=1), until=T0 + timedelta(days=2)).splitlines()
    assert [orjson.loads(x)["message_id"] for x in lines] == ["m-000004"]


def test_corrupt_lines_are_listed_and_never_stop_the_rest(tmp_path: Path, source: SQLiteStore) -> None:
    good = _export(source).splitlines()
    tampered = orjson.loads(good[1])
    tampered["content"] = "edited after export"
    lines = [
        good[0],
        b"{not json",
        b"\xff\xfe invalid utf-8",
        b"",
        b"[1, 2]",
        orjson.dumps({**orjson.loads(good[2]), "agent": "Not Valid!"}),
        orjson.dumps(tampered),
        b'{"something": "else"}',
        good[3],
        good[4],
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    target = open_test_store(tmp_path / "target.sqlite3")
    report = import_jsonl(path, target)
    assert (report.imported, report.duplicate, report.rejected) == (3, 0, 6)
    by_line = {r.line: r for r in report.rejected_lines}
    assert sorted(by_line) == [2, 3, 5, 6, 7, 8]
    assert by_line[2].code == "invalid_json"
    assert by_line[3].code == "invalid_utf8"
    assert by_line[5].code == "invalid_json" and "list" in by_line[5].reason
    assert by_line[6].code == "validation" and by_line[6].reason.startswith("agent")
    assert "content_sha256" in by_line[7].reason
    assert "neither" in by_line[8].reason
    assert report.as_dict()["rejected_lines"][0] == {
        "line": 2,
        "code": "invalid_json",
        "reason": by_line[2].reason,
    }
    target.close()


def test_bare_envelopes_get_an_import_stream(tmp_path: Path) -> None:
    env = make_record(1).envelope
    stream = io.BytesIO(env.to_wire() + b"\n")
    store = open_test_store(tmp_path / "s.sqlite3")
    report = import_jsonl(stream, store, source_name="handmade.jsonl")
    assert report.formats == {"envelope": 1} and report.imported == 1
    got = store.get(env.message_id)
    assert got is not None
    assert (got.stream, got.entry_id, got.envelope) == ("import:handmade.jsonl", "0-1", env)
    store.close()


class _FixedTagger:
    version = "fixed-1"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def tag_batch(self, messages: Sequence[AgentMessage]) -> list[Tags | None]:
        self.seen.extend(m.message_id for m in messages)
        return [
            Tags(
                tier="C",
                tier_rule="fixed",
                tier_confidence=1.0,
                signals=Signals(),
                novelty=1,
                emergence=2,
                tagger_version=self.version,
            )
            for _ in messages
        ]

    def prime(self, conversation_id: str, history: Sequence[AgentMessage]) -> None:
        """Keeps no history."""


def test_tagger_tags_only_untagged_records(tmp_path: Path) -> None:
    src = open_test_store(tmp_path / "src.sqlite3")
    src.commit_batch([make_record(1, tags=make_tags("A", version="orig")), make_record(2)], [])
    data = _export(src)
    src.close()
    tagger = _FixedTagger()
    target = open_test_store(tmp_path / "t.sqlite3")
    import_jsonl(io.BytesIO(data), target, tagger, batch_size=1)
    assert tagger.seen == ["m-000002"]
    first, second = target.get("m-000001"), target.get("m-000002")
    assert first is not None and first.tags is not None and first.tags.tagger_version == "orig"
    assert second is not None and second.tags is not None and second.tags.tagger_version == "fixed-1"
    target.close()


def test_import_in_small_batches_counts_every_line(tmp_path: Path) -> None:
    store = open_test_store(tmp_path / "s.sqlite3")
    lines = [make_record(i).envelope.to_wire() for i in range(23)] + [make_record(3).envelope.to_wire()]
    report = import_jsonl(io.BytesIO(b"\n".join(lines)), store, batch_size=5, source_name="x")
    assert (report.imported, report.duplicate, report.rejected) == (23, 1, 0)
    store.close()


def test_export_daily_writes_one_file_per_utc_day_and_reimports(tmp_path: Path, source: SQLiteStore) -> None:
    written = export_daily(source, tmp_path / "out")
    day_dir = tmp_path / "out" / "conversation_logs"
    assert sorted(p.name for p in day_dir.iterdir()) == [
        "2026-03-01.jsonl",
        "2026-03-02.jsonl",
        "2026-03-03.jsonl",
    ]
    assert {p.name: n for p, n in written.items()} == {
        "2026-03-01.jsonl": 3,
        "2026-03-02.jsonl": 1,
        "2026-03-03.jsonl": 1,
    }
    # The day files concatenated are the plain export; they import back to the same bytes.
    joined = b"".join((day_dir / name).read_bytes() for name in sorted(p.name for p in day_dir.iterdir()))
    assert joined == _export(source)
    target = open_test_store(tmp_path / "t.sqlite3")
    for path in sorted(day_dir.iterdir()):
        import_jsonl(path, target)
    assert _export(target) == joined
    # Exporting again replaces the files rather than appending.
    export_daily(source, tmp_path / "out")
    assert (day_dir / "2026-03-01.jsonl").read_bytes().count(b"\n") == 3
    target.close()


def test_missing_file_raises_oserror(tmp_path: Path, source: SQLiteStore) -> None:
    with pytest.raises(OSError):
        import_jsonl(tmp_path / "absent.jsonl", source)
