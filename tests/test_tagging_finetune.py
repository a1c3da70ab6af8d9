"""Fine-tune export: chat format, labels from the record's tags, split by conversation."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.tagging import RulesTagger
from daemon.tagging.definitions import DEFINITIONS
from daemon.tagging.finetune import split_conversations, write_finetune
from schemas import SIGNAL_NAMES, SIGNAL_PRESENT_ABOVE, AgentMessage, Record

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def records(conversations: int = 10, turns: int = 3, untagged: set[str] | None = None) -> list[Record]:
    """Tagged records, oldest first; ids in ``untagged`` are left without tags."""
    tagger = RulesTagger()
    out = []
    texts = [
        "Should we use Redis or Kafka?",
        "I agree, but what about memory?",
        "Status: merged, 14 tests pass.",
    ]
    for c in range(conversations):
        for t in range(turns):
            message = AgentMessage(
                message_id=f"m{c}-{t}",
                agent="claude" if t % 2 else "gemini",
                role="agent",
                conversation_id=f"conv-{c}",
                content=texts[t % len(texts)],
                created_at=T0 + timedelta(minutes=c * 10 + t),
            )
            (tags,) = tagger.tag_batch([message])
            out.append(
                Record(
                    envelope=message,
                    stream="aced:agent:x",
                    entry_id=f"{c}-{t}",
                    received_at=message.created_at,
                    delivery_count=1,
                    content_sha256=hashlib.sha256(message.content.encode()).hexdigest(),
                    tags=None if untagged and message.message_id in untagged else tags,
                )
            )
    return out


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_chat_format_and_labels(tmp_path: Path) -> None:
    recs = records()
    summary = write_finetune(recs, tmp_path)
    rows = read(tmp_path / "train.jsonl") + read(tmp_path / "val.jsonl")
    assert summary["train"] + summary["val"] == len(recs) == len(rows)
    by_id = {r.envelope.message_id: r for r in recs}
    for row in rows:
        system, user, assistant = row["messages"]
        assert (system["role"], user["role"], assistant["role"]) == ("system", "user", "assistant")
        assert DEFINITIONS in system["content"]
        mid = user["content"].split("Message to tag [", 1)[1].split("]", 1)[0]
        tags = by_id[mid].tags
        assert tags is not None
        label = json.loads(assistant["content"])
        assert label["tier"] == tags.tier
        assert label["signals"] == [
            n for n in SIGNAL_NAMES if getattr(tags.signals, n) > SIGNAL_PRESENT_ABOVE
        ]


def test_context_is_the_earlier_messages_of_the_same_conversation(tmp_path: Path) -> None:
    write_finetune(records(conversations=2), tmp_path, val_fraction=0.0)
    rows = read(tmp_path / "train.jsonl")
    third = next(r for r in rows if "Message to tag [m1-2]" in r["messages"][1]["content"])["messages"][1][
        "content"
    ]
    assert "[m1-0]" in third and "[m1-1]" in third
    assert "[m0-" not in third


def test_split_by_conversation(tmp_path: Path) -> None:
    summary = write_finetune(records(conversations=10), tmp_path, val_fraction=0.2, seed=7)
    convs = {}
    for name in ("train", "val"):
        convs[name] = {
            r["messages"][1]["content"].split("Message to tag [m", 1)[1].split("-", 1)[0]
            for r in read(tmp_path / f"{name}.jsonl")
        }
    assert convs["train"].isdisjoint(convs["val"])
    assert summary["val_conversations"] == 2 and summary["train_conversations"] == 8


def test_split_is_reproducible_and_keeps_training_data() -> None:
    ids = [f"c{i}" for i in range(20)]
    assert split_conversations(ids, 0.25, seed=1) == split_conversations(reversed(ids), 0.25, seed=1)
    assert split_conversations(ids, 0.25, seed=1) != split_conversations(ids, 0.25, seed=2)
    assert len(split_conversations(["only"], 0.5, 0)) == 0
    assert len(split_conversations(["a", "b"], 0.9, 0)) == 1


def test_untagged_records_are_skipped_but_kept_as_context(tmp_path: Path) -> None:
    summary = write_finetune(records(conversations=1, untagged={"m0-0"}), tmp_path, val_fraction=0.0)
    assert summary["skipped_untagged"] == 1 and summary["train"] == 2
    rows = read(tmp_path / "train.jsonl")
    assert "[m0-0]" in rows[0]["messages"][1]["content"]


def test_bad_fraction(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_finetune([], tmp_path, val_fraction=1.0)


def test_empty_input_writes_empty_files(tmp_path: Path) -> None:
    summary = write_finetune([], tmp_path / "out")
    assert summary["train"] == summary["val"] == 0
    assert (tmp_path / "out" / "train.jsonl").read_text() == ""
