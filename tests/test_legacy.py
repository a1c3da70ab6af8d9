"""The previous system's logs: mapping rules and importing the fixture that covers every variant."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from daemon.jsonl import import_jsonl
from daemon.legacy import LegacyLineError, extract_text, legacy_to_envelope, normalise_agent, parse_timestamp
from schemas import MAX_METADATA_BYTES
from tests.test_store_support import open_test_store

FIXTURE = Path(__file__).parent / "data" / "legacy" / "legacy_log.jsonl"


@pytest.mark.parametrize(
    ("name", "agent"),
    [
        ("Claude Opus", "claude-opus"),
        ("GPT-4o", "gpt-4o"),
        ("Jöse Coder", "jose-coder"),
        ("  Mistral_Large ", "mistral_large"),
        ("_hidden.bot_", "hidden.bot"),
        ("x" * 80, "x" * 64),
    ],
)
def test_normalise_agent(name: str, agent: str) -> None:
    assert normalise_agent(name) == agent


@pytest.mark.parametrize("name", ["???", "", None, 42])
def test_unusable_speaker_names(name: object) -> None:
    with pytest.raises(LegacyLineError):
        normalise_agent(name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-01T09:15:00", datetime(2025, 3, 1, 9, 15, tzinfo=UTC)),  # naive = UTC
        ("2025-03-01 09:15:00.250", datetime(2025, 3, 1, 9, 15, 0, 250000, tzinfo=UTC)),
        ("2025-03-01T09:15:00Z", datetime(2025, 3, 1, 9, 15, tzinfo=UTC)),
        ("2025-03-01T11:15:00+02:00", datetime(2025, 3, 1, 9, 15, tzinfo=UTC)),
        (1740820500, datetime(2025, 3, 1, 9, 15, tzinfo=UTC)),
        (1740820500000, datetime(2025, 3, 1, 9, 15, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(value: object, expected: datetime) -> None:
    parsed = parse_timestamp(value)
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize("value", ["yesterday", None, True, [], ""])
def test_bad_timestamps(value: object) -> None:
    with pytest.raises(LegacyLineError):
        parse_timestamp(value)


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ('{"message": "hello", "model": "x"}', "hello"),
        ({"message": "as an object"}, "as an object"),
        ('"a JSON string"', "a JSON string"),
        ("plain text", "plain text"),
        ("{not json} text", "{not json} text"),
        ('{"content": "other key"}', "other key"),
    ],
)
def test_extract_text(message: object, text: str) -> None:
    assert extract_text(message) == text


@pytest.mark.parametrize("message", ["{}", "", "   ", '{"message": ""}', None, '{"message": 3}'])
def test_empty_bodies_are_rejected(message: object) -> None:
    with pytest.raises(LegacyLineError, match="empty body"):
        extract_text(message)


def test_mapping_of_one_line() -> None:
    obj = orjson.loads(FIXTURE.read_bytes().splitlines()[0])
    env = legacy_to_envelope(obj)
    assert env.message_id == "leg-001"
    assert env.agent == "claude-opus" and env.role == "agent"
    assert env.conversation_id == "ctx-arch-1"
    assert env.content.startswith("We should split the ingest path")
    assert env.created_at == datetime(2025, 3, 1, 9, 15, tzinfo=UTC)
    assert env.sender_tags == {
        "ace_tier": "A",
        "chain_type": "proposal",
        "shl_tags": ["architecture", "pipeline"],
    }
    assert env.metadata == {"legacy": obj}


def test_huge_legacy_message_keeps_metadata_under_the_cap() -> None:
    text = "word " * 20000  # 100 KB: fits the content cap, not the 64 KiB metadata cap
    obj = {
        "Id": "big",
        "Timestamp": "2025-01-01T00:00:00",
        "SpeakerName": "a",
        "Message": text,
        "ContextId": "c",
    }
    env = legacy_to_envelope(obj)
    assert env.content == text
    assert env.metadata["legacy"]["Message"] is None and env.metadata["legacy"]["_message_in_content"] is True
    assert len(orjson.dumps(env.metadata)) <= MAX_METADATA_BYTES


def test_import_fixture(tmp_path: Path) -> None:
    store = open_test_store(tmp_path / "s.sqlite3")
    report = import_jsonl(FIXTURE, store)
    assert (report.imported, report.duplicate, report.rejected) == (6, 1, 6)
    assert report.formats == {"legacy": 7}
    rejected = {r.line: r for r in report.rejected_lines}
    assert sorted(rejected) == [3, 4, 6, 9, 11, 14]
    assert "empty body" in rejected[3].reason and rejected[3].code == "legacy_import"
    assert "empty body" in rejected[4].reason
    assert rejected[6].code == "invalid_json"
    assert "Timestamp" in rejected[9].reason
    assert "SpeakerName" in rejected[11].reason
    assert rejected[14].code == "invalid_json"

    first = store.get("leg-001")
    assert first is not None
    assert (first.stream, first.entry_id) == ("import:legacy_log.jsonl", "0-1")
    assert first.envelope.content.startswith("We should split")  # the duplicate on line 7 did not win
    human = store.get("leg-002")
    assert human is not None and (human.envelope.agent, human.envelope.role) == ("jose-coder", "human")
    zoned = store.get("leg-005")
    assert zoned is not None
    assert zoned.envelope.created_at == datetime(2025, 3, 1, 9, 20, tzinfo=UTC)
    assert "🌍" in zoned.envelope.content
    assert zoned.envelope.sender_tags == {"ace_tier": "E", "chain_type": "fix", "shl_tags": ["bugfix"]}
    numeric = store.get("4242")
    assert numeric is not None
    assert (numeric.envelope.conversation_id, numeric.envelope.role) == ("legacy:ops", "system")
    unknown_role = store.get("leg-012")
    assert unknown_role is not None and unknown_role.envelope.role == "agent"
    assert unknown_role.envelope.content.startswith("I disagree")
    braces = store.get("leg-013")
    assert braces is not None and braces.envelope.content == "{not json} but a real sentence."

    again = import_jsonl(FIXTURE, store)
    assert (again.imported, again.duplicate, again.rejected) == (0, 7, 6)
    assert store.counts().recorded == 6
    store.close()
