"""The envelope every agent message travels in: ``AgentMessage``, schema version 1.

On the wire a stream entry carries the envelope as JSON in one field, ``data`` (see ``schemas.keys``).
The rules here are the locked persistence schema documented in ``docs/schema.md``: change them only with a
new ``schema_version``.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from schemas._types import ConversationId, MessageId, UtcDatetime
from schemas.keys import AGENT_NAME_PATTERN

#: The only envelope version this code understands. An entry with another version is dead-lettered,
#: never guessed at.
SCHEMA_VERSION = 1

#: Default cap on ``content``, in UTF-8 bytes; the daemon's setting ``max_content_bytes`` overrides it by
#: passing ``{"max_content_bytes": n}`` as validation context.
DEFAULT_MAX_CONTENT_BYTES = 256 * 1024

#: Cap on ``metadata`` (and on ``sender_tags``), measured as compact JSON in bytes.
MAX_METADATA_BYTES = 64 * 1024

Role = Literal["agent", "human", "system"]


class Attachment(BaseModel):
    """Something a message carries besides its text (a file, an image, a tool result).

    A message may have empty ``content`` only when it has at least one attachment, so that an empty record
    always says why it is empty.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = Field(min_length=1, max_length=256, description="File name or short label.")
    media_type: str = Field(
        min_length=1, max_length=128, description="IANA media type, e.g. `image/png` or `text/x-python`."
    )
    uri: str | None = Field(
        default=None, max_length=2048, description="Where the bytes live (the record stores no blobs)."
    )
    size_bytes: int | None = Field(default=None, ge=0, description="Size of the attachment in bytes.")
    sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the attachment's bytes."
    )
    description: str | None = Field(default=None, max_length=4096, description="What it is, for people.")


def _json_size(value: Any) -> int:
    return len(orjson.dumps(value))


def _has_non_finite(value: Any) -> bool:
    """NaN and infinities are not JSON (RFC 8259); stored, they would silently come back as null."""
    if isinstance(value, float):
        return value != value or value in (float("inf"), float("-inf"))
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    return False


class AgentMessage(BaseModel):
    """One message an agent (or a person, or the system) said, as published to ``aced:agent:<agent>``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    message_id: MessageId = Field(
        description="Producer-generated id (ULID or UUID), 1..128 printable ASCII characters. "
        "The idempotency key: the same id twice is recorded once."
    )
    agent: str = Field(
        pattern=AGENT_NAME_PATTERN,
        description="Who said it; also names the stream `aced:agent:<agent>` it must arrive on.",
    )
    role: Role = Field(description="`agent` for an LLM agent, `human` for a person, `system` for automation.")
    conversation_id: ConversationId = Field(description="The conversation (thread) this message belongs to.")
    reply_to: MessageId | None = Field(default=None, description="The `message_id` this message answers.")
    content: str = Field(
        description="The text, valid UTF-8, at most `max_content_bytes` (256 KiB by default). "
        "May be empty only when `attachments` is not."
    )
    attachments: list[Attachment] = Field(
        default_factory=list, max_length=64, description="Files or objects the message carries."
    )
    created_at: UtcDatetime = Field(
        description="When the sender created the message; must carry a timezone, stored in UTC."
    )
    sender_tags: dict[str, Any] | None = Field(
        default=None,
        description="What the sender claims about its own message (e.g. its ACE tier). Recorded as sent, "
        "never overwritten by aced's own tags.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Free-form JSON object, at most 64 KiB as compact JSON."
    )
    schema_version: Literal[1] = Field(
        default=1, description="Envelope version; only 1 exists. Unknown versions are rejected."
    )

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version_is_int(cls, value: Any) -> Any:
        # JSON `true` equals 1 in Python; a boolean is not a version number.
        if isinstance(value, bool):
            raise ValueError(f"schema_version must be an integer, not {value!r}")
        return value

    @field_validator("content")
    @classmethod
    def _content_size(cls, value: str, info: ValidationInfo) -> str:
        limit = DEFAULT_MAX_CONTENT_BYTES
        if isinstance(info.context, dict):
            limit = int(info.context.get("max_content_bytes", limit))
        # Cheap bound first: a str of n code points has at most 4n UTF-8 bytes.
        if len(value) * 4 > limit:
            size = len(value.encode("utf-8", "surrogatepass"))
            if size > limit:
                raise ValueError(f"content is {size} bytes, over the limit of {limit} bytes")
        return value

    @field_validator("metadata", "sender_tags")
    @classmethod
    def _json_object_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            try:
                size = _json_size(value)
            except orjson.JSONEncodeError as exc:
                # e.g. an integer beyond 64 bits, or (from Python) a set: neither can be stored as JSON.
                # A ValueError makes it a validation error, never an exception that escapes intake.
                raise ValueError(f"is not storable as JSON: {exc}") from None
            if size > MAX_METADATA_BYTES:
                raise ValueError(f"is {size} bytes as JSON, over the limit of {MAX_METADATA_BYTES} bytes")
            if b"null" in orjson.dumps(value) and _has_non_finite(value):
                raise ValueError("holds NaN or Infinity, which JSON cannot represent")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> AgentMessage:
        if not self.content.strip() and not self.attachments:
            raise ValueError("content is empty and there are no attachments to say why")
        return self

    def to_wire(self) -> bytes:
        """Serialise to the JSON bytes carried in a stream entry's ``data`` field."""
        return self.model_dump_json(exclude_none=False).encode("utf-8")
