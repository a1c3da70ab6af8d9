"""The store interface. SQLite is the embedded default; a PostgreSQL backend can implement the same
protocol later so that several daemon hosts share one record."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from schemas import DeadLetter, Record, Tags


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

    def commit_batch(self, records: Sequence[Record], dead_letters: Sequence[DeadLetter]) -> CommitResult:
        """Commit records and dead letters in ONE durable transaction, idempotently on ``message_id``.

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
