"""The store interface. SQLite is the embedded default; a PostgreSQL backend can implement the same
protocol later so that several daemon hosts share one record."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from schemas import SIGNAL_NAMES, DeadLetter, Record, Signals, Tags

#: One tag version as the store holds it: ``tagger_version, tier, tier_rule, tier_confidence, novelty,
#: emergence``, the six signals in ``SIGNAL_NAMES`` order, and the evidence as JSON text. A tagger in
#: another process sends its tags in this form, so the daemon stores them without rebuilding ``Tags``.
TagRow = tuple[str, str, str, float, int, int, int, int, int, int, int, int, str]


def tag_row(tags: Tags) -> TagRow:
    """``tags`` in the store's column order (see :data:`TagRow`)."""
    s = tags.signals
    return (
        tags.tagger_version,
        tags.tier,
        tags.tier_rule,
        tags.tier_confidence,
        tags.novelty,
        tags.emergence,
        s.novelty,
        s.solution_quality,
        s.assumption_challenge,
        s.error_correction,
        s.cross_domain_synthesis,
        s.specialization_recognition,
        orjson.dumps(tags.evidence).decode("utf-8"),
    )


def tags_from_row(values: Sequence[Any]) -> Tags:
    """Inverse of :func:`tag_row`, validated."""
    tagger_version, tier, tier_rule, confidence, novelty, emergence = values[:6]
    signal_values = values[6 : 6 + len(SIGNAL_NAMES)]
    return Tags(
        tier=tier,
        tier_rule=tier_rule,
        tier_confidence=confidence,
        signals=Signals(**dict(zip(SIGNAL_NAMES, signal_values, strict=True))),
        novelty=novelty,
        emergence=emergence,
        tagger_version=tagger_version,
        evidence=orjson.loads(values[-1]),
    )


class StoreError(Exception):
    """Base class for store failures."""


class StoreUnavailable(StoreError):
    """The store cannot be written right now (read-only, disk full, locked). Retry later; do not ack."""


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one batch commit did. Every input record is accounted for in exactly one list."""

    inserted: list[str] = field(default_factory=list)  #: message_ids newly recorded
    #: same message_id, different stream entry: a producer retry or a duplicate publish (counted, not stored)
    duplicates: list[str] = field(default_factory=list)
    #: same message_id and same stream entry: Redis redelivered an entry we had already committed
    redelivered: list[str] = field(default_factory=list)
    dead_letters: int = 0  #: dead letters written in the same transaction (not counting ones stored before)
    #: "<stream>/<entry_id>" of those dead letters; an entry dead-lettered before is not stored again
    new_dead_letters: list[str] = field(default_factory=list)
    committed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """Totals for ``aced status``."""

    recorded: int
    duplicates: int
    redelivered: int
    dead_letters: int
    last_commit_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as stored, with its store id and replay state."""

    id: int
    entry: DeadLetter
    replayed_at: datetime | None


class Store(Protocol):
    """Durable, idempotent storage of records, dead letters and tags."""

    def migrate(self) -> None:
        """Create or upgrade the schema (numbered migrations, applied once each)."""

    def check_writable(self) -> None:
        """Raise :class:`StoreUnavailable` unless a write transaction can commit right now."""

    def commit_batch(
        self,
        records: Sequence[Record],
        dead_letters: Sequence[DeadLetter],
        tag_rows: Sequence[TagRow | None] | None = None,
    ) -> CommitResult:
        """Commit records and dead letters in ONE durable transaction, idempotently on ``message_id``.

        ``tag_rows``, when given, holds each record's tags (same order; ``None``: untagged) and is used
        instead of ``Record.tags``.

        Returns only after the transaction is durable. Raises :class:`StoreUnavailable` (nothing
        committed) when the store cannot be written.
        """

    def counts(self) -> StoreCounts:
        """Totals of records, duplicates, redeliveries and dead letters."""

    def get(self, message_id: str) -> Record | None:
        """One record by its ``message_id``, with its current tags."""

    def iter_records(
        self, since: datetime | None = None, until: datetime | None = None, batch_size: int = 1000
    ) -> Iterator[Record]:
        """Records with ``since <= created_at < until``, by ``created_at`` then ``message_id``."""

    def conversation_history(self, conversation_id: str, before: datetime, limit: int) -> list[Record]:
        """Up to ``limit`` records of a conversation created before ``before``, oldest first."""

    def add_tags(self, message_id: str, tags: Tags) -> None:
        """Store another tag version for a record (retag, model tags); earlier versions are kept."""

    def list_dead_letters(
        self, limit: int = 100, offset: int = 0, include_replayed: bool = True
    ) -> list[StoredDeadLetter]:
        """Dead letters, newest first."""

    def get_dead_letter(self, dead_letter_id: int) -> StoredDeadLetter | None:
        """One dead letter by its store id."""

    def mark_replayed(self, dead_letter_id: int, at: datetime) -> None:
        """Record that a dead letter was published again (``aced dlq replay``)."""

    def close(self) -> None:
        """Release connections."""
