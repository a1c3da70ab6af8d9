"""``aced import``, ``aced export`` and ``aced query`` through the real CLI, on a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.config import Settings
from daemon.store import open_store
from tests.test_store_support import make_record, make_tags, varied_records

REPO = Path(__file__).resolve().parent.parent
LEGACY = Path(__file__).parent / "data" / "legacy" / "legacy_log.jsonl"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("ACED_DATA_DIR", str(path))
    monkeypatch.setenv("ACED_TAGGER", "none")
    return path


@pytest.fixture
def filled(data_dir: Path) -> Path:
    store = open_store(Settings(data_dir=data_dir))
    store.commit_batch(varied_records(), [])
    store.commit_batch(
        [
            make_record(10, content="We decide to use WAL mode.", tags=make_tags("A", 50, 60)),
            make_record(
                11, content="Agreed, ship it.", reply_to="m-000010", agent="bob", tags=make_tags("C")
            ),
        ],
        [],
    )
    store.close()
    return data_dir


def test_import_legacy_reports_and_exits_1_on_rejections(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(LEGACY)]) == 1
    out = capsys.readouterr().out
    assert "imported 6, duplicate 1, rejected 6" in out
    assert "line 3: legacy_import: empty body" in out
    assert "line 6: invalid_json" in out
    assert main(["import", str(LEGACY), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["imported"], report["duplicate"], report["rejected"]) == (0, 7, 6)
    assert [r["line"] for r in report["rejected_lines"]] == [3, 4, 6, 9, 11, 14]


def test_import_clean_file_exits_0(filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "all.jsonl"
    assert main(["export", "--out", str(out_file)]) == 0
    capsys.readouterr()
    assert main(["import", str(out_file)]) == 0  # all duplicates: nothing rejected
    assert "imported 0, duplicate 7, rejected 0" in capsys.readouterr().out


def test_import_unreadable_file_exits_2(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(tmp_path / "absent.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aced import: error: cannot read") and err.count("\n") == 1


def test_import_with_the_rules_tagger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("daemon.tagging.rules")
    monkeypatch.setenv("ACED_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ACED_TAGGER", "rules")
    assert main(["import", str(LEGACY), "--json"]) == 1
    store = open_store(Settings(data_dir=tmp_path / "data"))
    record = store.get("leg-001")
    assert record is not None and record.tags is not None
    store.close()


def test_export_to_stdout_file_and_days(
    filled: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert main(["export"]) == 0
    captured = capsysbinary.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 7 and b"exported 7 records" in captured.err
    assert json.loads(lines[0])["message_id"] == "m-000001"
    assert main(["export", "--since", "2026-03-02", "--until", "2026-03-03T00:00:00+00:00"]) == 0
    assert [json.loads(x)["message_id"] for x in capsysbinary.readouterr().out.splitlines()] == ["m-000004"]
    assert main(["export", "--format", "daily", "--out", str(tmp_path / "days")]) == 0
    names = sorted(p.name for p in (tmp_path / "days" / "conversation_logs").iterdir())
    assert names == ["2026-03-01.jsonl", "2026-03-02.jsonl", "2026-03-03.jsonl"]


def test_export_errors(
    filled: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--format", "daily"]) == 2
    assert "give --out DIR" in capsys.readouterr().err
    assert main(["export", "--since", "2026-03-02", "--until", "2026-03-01"]) == 2
    assert "--since must be before --until" in capsys.readouterr().err
    assert main(["export", "--out", str(tmp_path / "no" / "such" / "dir" / "x.jsonl")]) == 2
    assert "cannot write" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["export", "--since", "tomorrow"])
    assert exc.value.code == 2


def test_export_finetune_hands_records_to_the_writer(
    filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, object] = {}

    def write_finetune(records: object, out_dir: Path) -> dict[str, object]:
        seen["ids"] = [r.envelope.message_id for r in records]  # type: ignore[attr-defined]
        seen["out"] = out_dir
        return {"train": 7, "path": out_dir / "train.jsonl"}

    fake = types.ModuleType("daemon.tagging.finetune")
    fake.write_finetune = write_finetune  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "daemon.tagging.finetune", fake)
    assert main(["export", "--format", "finetune", "--out", str(tmp_path / "ft")]) == 0
    assert seen["out"] == tmp_path / "ft" and len(seen["ids"]) == 7  # type: ignore[arg-type]
    assert json.loads(capsys.readouterr().out) == {"train": 7, "path": str(tmp_path / "ft" / "train.jsonl")}


def test_query_table_json_and_filters(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query"]) == 0
    out = capsys.readouterr().out
    assert "created_at (UTC)" in out and "(7 records)" in out and "Grüße aus Köln" in out
    assert main(["query", "--tier", "A", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["message_id"] for r in rows] == ["m-000001", "m-000010"]
    assert main(["query", "--signal", "error_correction>60", "--text", "Köln", "--json"]) == 0
    assert [json.loads(x)["message_id"] for x in capsys.readouterr().out.splitlines()] == ["m-000001"]
    assert (
        main(["query", "--emergence", "60..", "--sort", "emergence", "--desc", "--limit", "1", "--json"]) == 0
    )
    assert [json.loads(x)["message_id"] for x in capsys.readouterr().out.splitlines()] == ["m-000001"]
    assert main(["query", "--agent", "bob", "--count"]) == 0
    assert capsys.readouterr().out.strip() == "2"


def test_query_stats_and_decisions(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "--stats", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tier_mix"] == {"A": 2, "C": 1, "E": 1, "untagged": 3}
    assert main(["query", "--stats"]) == 0
    assert "tiers:   A 2  C 1  E 1  untagged 3" in capsys.readouterr().out
    assert main(["query", "--decisions", "--json"]) == 0
    found = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d["message_id"] for d in found] == ["m-000001", "m-000010"]
    assert found[1]["tally"] == {"agree": 1, "disagree": 0, "neutral": 0}
    assert main(["query", "--decisions"]) == 0
    assert "agree    bob: Agreed, ship it." in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["query", "--text", '"unclosed'], "bad full-text expression"),
        (["query", "--signal", "bogus>1"], "unknown signal"),
        (["query", "--limit", "-1"], "must not be negative"),
        (["query", "--top", "0"], "--top must be at least 1"),
        (["query", "--since", "2026-03-02", "--until", "2026-03-01"], "--since must be before --until"),
    ],
)
def test_query_user_errors_are_one_line(
    filled: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("aced query: error:") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("flag", ["--novelty", "--emergence"])
def test_query_reversed_score_range_is_one_line(
    filled: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    # an empty range is a mistake, not a query whose answer is "nothing"
    with pytest.raises(SystemExit) as exc:
        main(["query", flag, "90..10"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "low end is above the high end" in err and err.count("\n") == 1


def test_reading_commands_without_a_store_exit_1(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query"]) == 1
    assert "no store at" in capsys.readouterr().err
    assert main(["export"]) == 1
    assert not data_dir.exists()  # a reader never creates a store


def test_import_then_export_as_real_processes(tmp_path: Path) -> None:
    env = {**os.environ, "ACED_DATA_DIR": str(tmp_path / "data"), "ACED_TAGGER": "none"}
    env = {k: v for k, v in env.items() if not k.startswith("ACED_") or k in ("ACED_DATA_DIR", "ACED_TAGGER")}
    run = [sys.executable, "-m", "daemon"]
    imported = subprocess.run(
        [*run, "import", str(LEGACY), "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert imported.returncode == 1, imported.stderr
    assert json.loads(imported.stdout)["imported"] == 6
    exported = subprocess.run(
        [*run, "export"], env=env, cwd=REPO, capture_output=True, timeout=60, check=False
    )
    assert exported.returncode == 0, exported.stderr
    ids = [json.loads(line)["message_id"] for line in exported.stdout.splitlines()]
    assert sorted(ids) == sorted(["leg-001", "leg-002", "leg-005", "4242", "leg-012", "leg-013"])
    assert "🌍".encode() in exported.stdout


def test_export_finetune_with_the_real_writer(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("daemon.tagging.finetune")
    assert main(["export", "--format", "finetune", "--out", str(tmp_path / "ft")]) == 0
    capsys.readouterr()
    assert (tmp_path / "ft" / "train.jsonl").exists() or (tmp_path / "ft" / "val.jsonl").exists()
