"""Factories shared by the store, jsonl, analytics and CLI tests (no tests here)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from daemon.store import SQLiteStore
from schemas import AgentMessage, Attachment, DeadLetter, Record, RejectReason, Signals, Tags

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_tags(
    tier: str = "C", novelty_score: int = 30, emergence: int = 20, version: str = "test-1", **signals: int
) -> Tags:
    """Tags with the given tier, scores and signals (others 0); ``novelty=`` sets the novelty *signal*."""
    return Tags(
        tier=tier,  # type: ignore[arg-type]
        tier_rule=f"rule-{tier}",
        tier_confidence=0.75,
        signals=Signals(**signals),
        novelty=novelty_score,
        emergence=emergence,
        tagger_version=version,
        evidence={"markers": [tier.lower()]},
    )


def make_record(
    n: int = 0,
    *,
    message_id: str | None = None,
    content: str | None = None,
    agent: str = "alice",
    conversation_id: str = "conv-1",
    created_at: datetime | None = None,
    stream: str | None = None,
    entry_id: str | None = None,
    tags: Tags | None = None,
    reply_to: str | None = None,
    **envelope: Any,
) -> Record:
    """A valid record; ``n`` makes the id, entry id, content and time distinct."""
    text = f"message number {n}" if content is None else content
    env = AgentMessage(
        message_id=message_id or f"m-{n:06d}",
        agent=agent,
        role=envelope.pop("role", "agent"),
        conversation_id=conversation_id,
        reply_to=reply_to,
        content=text,
        created_at=created_at or T0 + timedelta(seconds=n),
        **envelope,
    )
    return Record(
        envelope=env,
        stream=stream or f"aced:agent:{agent}",
        entry_id=entry_id or f"1700000000000-{n}",
        received_at=T0 + timedelta(seconds=n, milliseconds=5),
        delivery_count=1,
        content_sha256=hashlib.sha256(text.encode()).hexdigest(),
        tags=tags,
    )


def make_dead_letter(n: int = 0, fields: dict[bytes, bytes] | None = None) -> DeadLetter:
    """A dead letter with raw (even non-UTF-8) field bytes."""
    return DeadLetter(
        stream="aced:agent:alice",
        entry_id=f"1700000000001-{n}",
        reason=RejectReason.INVALID_JSON,
        detail="not JSON",
        fields=fields if fields is not None else {b"data": b"\xff\xfe{not json", b"extra": b""},
        message_id=None,
        delivery_count=1,
        received_at=T0,
        consumer="host-1",
    )


def varied_records() -> list[Record]:
    """Records covering what must survive export/import: non-ASCII, emoji, an empty content with an
    attachment, metadata, sender_tags, tags, a reply, several days."""
    return [
        make_record(
            1, content="Grüße aus Köln — naïve café ✓", tags=make_tags("A", 80, 70, error_correction=65)
        ),
        make_record(2, content="emoji 🚀🔥 and CJK 漢字 and RTL שלום", agent="bob", reply_to="m-000001"),
        make_record(
            3,
            content="",
            attachments=[
                Attachment(name="plot.png", media_type="image/png", size_bytes=1234, sha256="a" * 64)
            ],
            metadata={"nested": {"list": [1, 2.5, None, True], "text": "ü"}, "n": 10**15},
            sender_tags={"ace_tier": "A", "shl_tags": ["x", "y"]},
            tags=make_tags("E", 5, 1),
        ),
        make_record(
            4, content='quotes " and \\ backslash\nnewline\ttab', created_at=T0 + timedelta(days=1, hours=3)
        ),
        make_record(
            5, content="line\u2028separator and \x00 NUL", created_at=T0 + timedelta(days=2), role="human"
        ),
    ]


def open_test_store(path: Path, **kwargs: Any) -> SQLiteStore:
    """A migrated SQLiteStore on a real file."""
    store = SQLiteStore(path, **kwargs)
    store.migrate()
    return store
