"""``aced tag`` and ``aced retag``."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.cli.tag import tag_stream
from daemon.config import Settings
from daemon.store import open_store
from daemon.tagging import RULES_VERSION, RulesTagger
from schemas import SIGNAL_NAMES, AgentMessage, Record

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def line(**fields: object) -> bytes:
    return json.dumps(fields).encode() + b"\n"


def run_tag(data: bytes, **kwargs: object) -> tuple[list[dict], int]:
    sink = io.BytesIO()
    errors = tag_stream(io.BytesIO(data), sink, **kwargs)  # type: ignore[arg-type]
    return [json.loads(x) for x in sink.getvalue().splitlines()], errors


def test_tag_writes_one_object_per_line_in_order() -> None:
    data = (
        line(agent="maya", conversation_id="c1", content="Should we use Redis or Kafka?", message_id="m1")
        + line(agent="claude", conversation_id="c2", content="Status: merged, 14 tests pass.")
        + line(agent="gemini", conversation_id="c1", content="Should we use Redis or Kafka?")
    )
    out, errors = run_tag(data)
    assert errors == 0 and len(out) == 3
    assert out[0]["message_id"] == "m1" and out[1]["line"] == 2
    assert out[0]["tier"] == "A" and out[1]["tier"] == "E"
    for obj in out:
        assert set(obj["signals"]) == set(SIGNAL_NAMES)
        assert {"tier", "novelty", "emergence", "tier_rule", "evidence", "tagger_version"} <= set(obj)
    # the third line repeats the first of its conversation: its history made it not novel
    assert out[2]["novelty"] == 0 < out[0]["novelty"]


def test_malformed_lines_get_error_objects_and_the_rest_is_tagged() -> None:
    data = (
        b"not json\n"
        + b"[1, 2]\n"
        + line(agent="a", content="no conversation")
        + line(agent="a", conversation_id="c", content=5)
        + b"\n"
        + line(agent="a", conversation_id="c", content="fine", reply_to=7)
        + line(agent="a", conversation_id="c", content="Status: done.")
    )
    out, errors = run_tag(data)
    assert errors == 6 and len(out) == 7
    assert [("error" in o) for o in out] == [True] * 6 + [False]
    assert out[0]["error"].startswith("line 1: not JSON")
    assert "conversation_id" in out[2]["error"]
    assert out[4]["error"] == "line 5: empty line"
    assert out[6]["tier"] == "E"


def test_no_evidence_flag() -> None:
    out, _ = run_tag(line(agent="a", conversation_id="c", content="hi"), evidence=False)
    assert "evidence" not in out[0]


def _aced(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        input=stdin,
        capture_output=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_tag_command_exit_status_and_help() -> None:
    ok = _aced("tag", stdin=line(agent="a", conversation_id="c", content="Status: merged."))
    assert ok.returncode == 0 and json.loads(ok.stdout)["tier"] == "E"
    bad = _aced("tag", stdin=b"{broken\n" + line(agent="a", conversation_id="c", content="x"))
    assert bad.returncode == 1
    assert len(bad.stdout.splitlines()) == 2
    assert b"1 malformed line" in bad.stderr
    helptext = _aced("tag", "--help").stdout.decode()
    assert "malformed" in helptext and "exit status" in helptext


def test_tag_takes_the_daemons_tagging_settings() -> None:
    text = line(agent="a", conversation_id="c", content="Status: merged.")
    votes = _aced("tag", stdin=text, env={"ACED_TIER_MODEL": "false"})
    assert votes.returncode == 0 and json.loads(votes.stdout)["tagger_version"].endswith("-votes")
    for args, env in ((("--history", "5000"), {}), ((), {"ACED_TIER_MODEL": "maybe"})):
        bad = _aced("tag", *args, stdin=text, env=env)
        assert bad.returncode == 2 and bad.stdout == b""
        assert bad.stderr.startswith(b"aced tag: error: invalid setting") and bad.stderr.count(b"\n") == 1


def test_tag_output_is_identical_across_hash_seeds() -> None:
    data = b"".join(
        line(agent=a, conversation_id="c", content=t)
        for a, t in [
            ("maya", "Decision: Redis Streams; Kafka stays off the table. Ship it."),
            ("gemini", "Correction: that is a bug, it conflicts with the cap and would lose entries."),
            ("claude", "Gemini is better at breadth, I'm more careful with tests: split by strength."),
        ]
    )
    outs = {_aced("tag", stdin=data, env={"PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert len(outs) == 1


# ------------------------------------------------------------------ retag


def _record(i: int, conv: str, content: str) -> Record:
    message = AgentMessage(
        message_id=f"{conv}-{i}",
        agent="claude",
        role="agent",
        conversation_id=conv,
        content=content,
        created_at=T0 + timedelta(minutes=i),
    )
    return Record(
        envelope=message,
        stream="aced:agent:claude",
        entry_id=f"{i + 1}-0",
        received_at=message.created_at,
        delivery_count=1,
        content_sha256=hashlib.sha256(content.encode()).hexdigest(),
    )


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ACED_DATA_DIR", str(tmp_path))
    store = open_store(Settings(data_dir=tmp_path))
    texts = ["Should we use Redis or Kafka?", "Status: merged.", "Kafka retention and partitions", "Done."]
    old = RulesTagger().tag_batch(
        [AgentMessage.model_validate({**_record(0, "c0", "x").envelope.model_dump(), "content": "x"})]
    )[0]
    assert old is not None
    old = old.model_copy(update={"tagger_version": "rules-0"})
    recs = [_record(i, f"c{i % 2}", t) for i, t in enumerate(texts)]
    # the first record was stored with an older tagger's tags; the others without tags
    recs[0] = recs[0].model_copy(update={"tags": old})
    store.commit_batch(recs, [])
    store.close()
    return tmp_path


def test_retag_adds_a_version_and_keeps_the_old(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["retag", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"tagger_version": RULES_VERSION, "retagged": 4, "untaggable": 0, "conversations": 2}
    store = open_store(Settings(data_dir=data_dir))
    try:
        record = store.get("c0-0")
        assert record is not None and record.tags is not None and record.tags.tier == "A"
        assert [t.tagger_version for t in store.tag_history("c0-0")] == ["rules-0", RULES_VERSION]
    finally:
        store.close()


def test_retag_range_primes_history(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    since = (T0 + timedelta(minutes=2)).isoformat()
    assert main(["retag", "--since", since, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["retagged"] == 2
    store = open_store(Settings(data_dir=data_dir))
    try:
        assert [t.tagger_version for t in store.tag_history("c1-1")] == []  # outside the range
        third = store.get("c0-2")
        assert third is not None and third.tags is not None
        # primed with "Should we use Redis or Kafka?": "kafka" is not new
        assert third.tags.evidence["novelty"]["history"] == 1
        assert third.tags.novelty < 100
    finally:
        store.close()


def test_retag_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACED_DATA_DIR", str(tmp_path / "empty"))
    assert main(["retag"]) == 1
    assert "no store" in capsys.readouterr().err
    monkeypatch.setenv("ACED_TAGGER", "none")
    assert main(["retag"]) == 2
    assert "nothing to re-tag" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["retag", "--since", "yesterday"])
