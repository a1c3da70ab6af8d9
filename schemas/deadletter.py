"""Entries the daemon refused to record, kept with the reason and the original bytes."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas._types import UtcDatetime


class RejectReason(StrEnum):
    """Why an entry went to the dead letter. Stable codes: scripts and queries rely on them."""

    MISSING_DATA = "missing_data"  #: the entry has no ``data`` field
    INVALID_UTF8 = "invalid_utf8"  #: ``data`` is not valid UTF-8
    INVALID_JSON = "invalid_json"  #: ``data`` is not JSON, or not a JSON object
    OVERSIZED = "oversized"  #: the entry is larger than the daemon accepts at all
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"  #: not version 1
    VALIDATION = "validation"  #: fields missing, of the wrong type, or breaking a rule
    STREAM_MISMATCH = "stream_mismatch"  #: ``agent`` does not match the stream it arrived on
    POISON = "poison"  #: delivered more than ``max_deliveries`` times without being recorded
    LEGACY_IMPORT = "legacy_import"  #: a legacy log line that could not be mapped


class DeadLetter(BaseModel):
    """One rejected entry. ``fields`` holds the original stream fields as raw bytes, never re-encoded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: str = Field(description="Stream the entry was read from.")
    entry_id: str = Field(description="Its Redis stream entry id.")
    reason: RejectReason = Field(description="Stable reason code.")
    detail: str = Field(max_length=8192, description="Human-readable explanation (validation errors etc.).")
    fields: dict[bytes, bytes] = Field(description="The entry's original fields and values, byte for byte.")
    message_id: str | None = Field(
        default=None, description="The envelope's message_id, if one was readable."
    )
    delivery_count: int = Field(ge=0, description="Deliveries by Redis when it was rejected.")
    received_at: UtcDatetime = Field(description="When the daemon rejected it.")
    consumer: str | None = Field(default=None, description="The daemon consumer that rejected it.")
