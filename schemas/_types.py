"""Shared constrained types and helpers for the schema models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


#: A timezone-aware datetime, normalised to UTC. A naive datetime is rejected, never guessed.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]

#: Producer-generated identifier (ULID or UUID recommended): printable ASCII without spaces.
MessageId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]

#: A conversation identifier: any non-blank text up to 128 characters.
ConversationId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"\S")]

#: A 0..100 score.
Score = Annotated[int, Field(ge=0, le=100)]


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)
