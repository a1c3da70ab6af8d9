"""Turning one raw stream entry into a validated message, or into a dead letter with its reason.

This is the ingest hot path: the common case (a valid envelope) costs one pydantic JSON validation and
one SHA-256. Only a failure pays for the slower work of explaining itself.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from schemas import DATA_FIELD, AgentMessage, DeadLetter, Record, RejectReason, StreamKeys

_DATA = DATA_FIELD.encode()
# A high surrogate escape not followed by a low one, or a low one not preceded by a high one: JSON allows
# the syntax, Unicode text does not.
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F]"
)


@dataclass(slots=True)
class RawEntry:
    """One entry as read from a stream: its fields are raw bytes, exactly as the producer wrote them."""

    stream: str
    entry_id: str
    fields: dict[bytes, bytes]
    delivery_count: int = 1


@dataclass(frozen=True, slots=True)
class IntakeLimits:
    """The size rules the daemon enforces before and during validation."""

    max_entry_bytes: int
    max_content_bytes: int

    @property
    def context(self) -> dict[str, int]:
        """The validation context that carries ``max_content_bytes`` to the envelope's validator."""
        return {"max_content_bytes": self.max_content_bytes}


_RECORD_FIELDS = frozenset(Record.model_fields)
_new = object.__new__
_set = object.__setattr__


def _record(values: dict[str, Any]) -> Record:
    """A Record from values this module has just validated, without validating them again.

    Equivalent to ``Record.model_construct(**values)`` (a test checks it) at a quarter of the cost, which
    matters once per message on the ingest path. It sets the three attributes pydantic v2's
    ``model_construct`` sets; pydantic is pinned below 3.
    """
    record = _new(Record)
    _set(record, "__dict__", values)
    _set(record, "__pydantic_fields_set__", set(_RECORD_FIELDS))
    _set(record, "__pydantic_extra__", None)
    _set(record, "__pydantic_private__", None)
    return record


def dead_letter(
    entry: RawEntry,
    reason: RejectReason,
    detail: str,
    received_at: datetime,
    consumer: str | None,
    message_id: str | None = None,
) -> DeadLetter:
    """A dead letter that keeps the entry's original fields byte for byte."""
    return DeadLetter.model_construct(
        stream=entry.stream,
        entry_id=entry.entry_id,
        reason=reason,
        detail=detail[:8192],
        fields=dict(entry.fields),
        message_id=message_id,
        delivery_count=entry.delivery_count,
        received_at=received_at,
        consumer=consumer,
    )


def intake(
    entry: RawEntry,
    keys: StreamKeys,
    limits: IntakeLimits,
    received_at: datetime,
    consumer: str | None = None,
) -> Record | DeadLetter:
    """Validate one entry. A valid envelope becomes an untagged :class:`Record`; anything else becomes a
    :class:`DeadLetter` saying why. Never raises for bad input."""
    fields = entry.fields
    data = fields.get(_DATA)
    if data is not None and len(fields) == 1:  # the usual entry: skip the general sum
        size = len(_DATA) + len(data)
    else:
        size = sum(len(k) + len(v) for k, v in fields.items())
    if size > limits.max_entry_bytes:
        return dead_letter(
            entry,
            RejectReason.OVERSIZED,
            f"entry is {size} bytes, over max_entry_bytes={limits.max_entry_bytes}",
            received_at,
            consumer,
        )
    if data is None:
        names = ", ".join(repr(k.decode("utf-8", "replace")) for k in entry.fields) or "none"
        return dead_letter(
            entry,
            RejectReason.MISSING_DATA,
            f"entry has no {DATA_FIELD!r} field (fields: {names})",
            received_at,
            consumer,
        )
    try:
        message = AgentMessage.model_validate_json(data, context=limits.context)
    except ValidationError as exc:
        reason, detail, message_id = _explain(data, exc)
        return dead_letter(entry, reason, detail, received_at, consumer, message_id)

    expected_agent = keys.agent_of(entry.stream)
    if expected_agent != message.agent:
        return dead_letter(
            entry,
            RejectReason.STREAM_MISMATCH,
            f"agent {message.agent!r} published on stream {entry.stream!r} "
            f"(expected agent {expected_agent!r})",
            received_at,
            consumer,
            message.message_id,
        )
    return _record(
        {
            "envelope": message,
            "stream": entry.stream,
            "entry_id": entry.entry_id,
            "received_at": received_at,
            "committed_at": None,
            "delivery_count": entry.delivery_count,
            "content_sha256": hashlib.sha256(message.content.encode("utf-8")).hexdigest(),
            "tags": None,
        }
    )


def _explain(data: bytes, exc: ValidationError) -> tuple[RejectReason, str, str | None]:
    """Classify a validation failure: which reason code, a readable detail, and the message_id if any."""
    errors = exc.errors(include_url=False, include_input=False)
    if errors and errors[0]["type"] == "json_invalid":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            return RejectReason.INVALID_UTF8, f"data is not valid UTF-8: {err}", None
        if _LONE_SURROGATE.search(data):
            return (
                RejectReason.INVALID_UTF8,
                "data holds a lone UTF-16 surrogate escape, which is not valid Unicode text",
                None,
            )
        return RejectReason.INVALID_JSON, f"data is not valid JSON: {errors[0]['msg']}", None

    try:
        obj: Any = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        # pydantic's parser is more lenient (NaN, Infinity); the record must be standard JSON.
        detail = _format_errors(errors, exc.error_count())
        return RejectReason.INVALID_JSON, f"data is not standard JSON ({err}): {detail}", None
    if not isinstance(obj, dict):
        return RejectReason.INVALID_JSON, f"data must be a JSON object, got {type(obj).__name__}", None

    raw_id = obj.get("message_id")
    message_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= 128 else None
    version = obj.get("schema_version", 1)
    if version != 1 or isinstance(version, bool):
        return (
            RejectReason.UNSUPPORTED_SCHEMA_VERSION,
            f"schema_version {version!r} is not supported (this daemon reads version 1)",
            message_id,
        )
    content_too_big = [
        e for e in errors if e["loc"] == ("content",) and "over the limit" in str(e.get("msg", ""))
    ]
    if content_too_big:
        return RejectReason.OVERSIZED, f"content: {content_too_big[0]['msg']}", message_id
    return RejectReason.VALIDATION, _format_errors(errors, exc.error_count()), message_id


def _format_errors(errors: list[Any], count: int) -> str:
    parts = []
    for err in errors[:10]:
        where = ".".join(str(p) for p in err["loc"]) or "envelope"
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    more = f"; and {count - 10} more" if count > 10 else ""
    return "; ".join(parts) + more
