"""Mapping the previous system's JSONL conversation logs onto aced envelopes.

One legacy line is an object like::

    {"Id": "...", "Timestamp": "2025-03-01T12:00:00", "SpeakerName": "Claude Opus",
     "SpeakerRole": "assistant", "Message": "{\\"message\\": \\"text\\", ...}",
     "ConversationType": "design", "ContextId": "ctx-1",
     "Metadata": {"ace_tier": "A", "chain_type": "...", "shl_tags": [...]}}

The mapping (also in docs/store.md):

- ``message_id`` = ``Id`` (numbers become text); ``conversation_id`` = ``ContextId``, else
  ``legacy:<ConversationType>``, else ``legacy``.
- ``created_at`` = ``Timestamp``. **A naive timestamp (no zone) is treated as UTC**; one with a zone is
  converted to UTC. Numbers are Unix seconds (milliseconds if larger than 10^11).
- ``agent`` = ``SpeakerName`` normalised: accents dropped, lower-cased, every run of other characters
  replaced by ``-``, leading/trailing ``-_.`` stripped, at most 64 characters.
- ``role`` from ``SpeakerRole``: assistant/ai/bot/model/llm/agent -> ``agent``; user/human/person/operator
  -> ``human``; system/tool -> ``system``; missing or unknown -> ``agent`` (the original stays in metadata).
- ``content`` = ``Message``: usually a JSON string wrapping ``{"message": text, ...}``, sometimes a plain
  string, sometimes an object. An empty body (``""``, ``"{}"``, a wrapper without text) is rejected.
- ``sender_tags`` = ``ace_tier``, ``chain_type`` and ``shl_tags`` from ``Metadata`` (a top-level key fills
  in what ``Metadata`` lacks); ``None`` if there are none.
- ``metadata`` = ``{"legacy": <the original object>}``. If that is over the 64 KiB metadata cap, its
  ``Message`` is replaced by ``null`` and ``"_message_in_content": true`` is added (the text is the content).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from schemas import MAX_METADATA_BYTES, AgentMessage

#: Keys that mark a JSON object as a legacy log line.
LEGACY_KEYS = frozenset({"Id", "Timestamp", "SpeakerName", "SpeakerRole", "Message", "ContextId"})

#: Legacy tag keys copied into ``sender_tags``.
LEGACY_TAG_KEYS = ("ace_tier", "chain_type", "shl_tags")

_ROLES: dict[str, str] = {
    **dict.fromkeys(("agent", "assistant", "ai", "bot", "model", "llm"), "agent"),
    **dict.fromkeys(("human", "user", "person", "operator"), "human"),
    **dict.fromkeys(("system", "tool"), "system"),
}
_NOT_AGENT_CHARS = re.compile(r"[^a-z0-9_.-]+")
_AGENT_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_WRAPPER_TEXT_KEYS = ("message", "content", "text")


class LegacyLineError(ValueError):
    """A legacy line that cannot be mapped; the message says why, in one line."""


def is_legacy(obj: dict[str, Any]) -> bool:
    """Whether a JSON object looks like a legacy log line (has ``Id``, ``SpeakerName``, ``Message`` ...)."""
    return not LEGACY_KEYS.isdisjoint(obj)


def normalise_agent(name: Any) -> str:
    """A legacy ``SpeakerName`` as an aced agent name (``[a-z0-9][a-z0-9_.-]{0,63}``).

    Raises :class:`LegacyLineError` if nothing usable is left (e.g. an empty or all-symbol name).
    """
    if not isinstance(name, str):
        raise LegacyLineError("SpeakerName is missing or not text")
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = _NOT_AGENT_CHARS.sub("-", ascii_text.lower()).strip("-_.")[:64]
    if not _AGENT_RE.match(text):
        raise LegacyLineError(f"SpeakerName {name!r} cannot be made an agent name")
    return text


def parse_timestamp(value: Any) -> datetime:
    """A legacy ``Timestamp`` as an aware UTC datetime; naive values are taken to be UTC."""
    if isinstance(value, bool) or value is None:
        raise LegacyLineError("Timestamp is missing")
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise LegacyLineError(f"Timestamp {value!r} is out of range") from None
    if not isinstance(value, str):
        raise LegacyLineError("Timestamp is not text or a number")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise LegacyLineError(f"Timestamp {value!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        # The old system wrote local wall-clock time without a zone on a UTC host: UTC is the only
        # reading that is not a guess about some other zone.
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def extract_text(message: Any) -> str:
    """The text of a legacy ``Message``: a JSON-wrapped ``{"message": ...}``, a plain string or an object.

    Raises :class:`LegacyLineError` when the body is empty.
    """
    wrapper: dict[str, Any] | None = None
    text: str | None = None
    if isinstance(message, dict):
        wrapper = message
    elif isinstance(message, str):
        stripped = message.strip()
        if stripped[:1] in ("{", '"'):
            try:
                decoded = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                decoded = None  # text that merely starts with a brace
            if isinstance(decoded, dict):
                wrapper = decoded
            elif isinstance(decoded, str):
                text = decoded
            else:
                text = message
        else:
            text = message
    elif message is not None:
        raise LegacyLineError(f"Message is a {type(message).__name__}, not text")
    if wrapper is not None:
        for key in _WRAPPER_TEXT_KEYS:
            value = wrapper.get(key)
            if isinstance(value, str):
                text = value
                break
    if text is None or not text.strip():
        raise LegacyLineError("empty body (Message has no text)")
    return text


def _legacy_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("Metadata")
    if isinstance(meta, str) and meta.strip():
        try:
            meta = orjson.loads(meta)
        except orjson.JSONDecodeError:
            meta = None
    return meta if isinstance(meta, dict) else {}


def _sender_tags(obj: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any] | None:
    tags = {key: meta[key] for key in LEGACY_TAG_KEYS if meta.get(key) is not None}
    for key in LEGACY_TAG_KEYS:
        if key not in tags and obj.get(key) is not None:
            tags[key] = obj[key]
    return tags or None


def _conversation(obj: dict[str, Any]) -> str:
    context = obj.get("ContextId")
    if isinstance(context, int | str) and not isinstance(context, bool) and str(context).strip():
        return str(context)
    kind = obj.get("ConversationType")
    if isinstance(kind, str) and kind.strip():
        return f"legacy:{kind}"
    return "legacy"


def _kept_original(obj: dict[str, Any]) -> dict[str, Any]:
    if len(orjson.dumps({"legacy": obj})) <= MAX_METADATA_BYTES:
        return obj
    return {**obj, "Message": None, "_message_in_content": True}


def legacy_to_envelope(obj: dict[str, Any], max_content_bytes: int | None = None) -> AgentMessage:
    """Map one legacy log object to a validated :class:`AgentMessage` (see the module docstring).

    Args:
        obj: The decoded JSON object of one line.
        max_content_bytes: Content cap to validate against (default: the envelope's default).

    Raises:
        LegacyLineError: The line cannot be mapped (missing id, empty body, bad timestamp ...).
    """
    raw_id = obj.get("Id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, int | str) or not str(raw_id).strip():
        raise LegacyLineError("Id is missing")
    meta = _legacy_metadata(obj)
    role_name = obj.get("SpeakerRole")
    role = _ROLES.get(role_name.strip().lower(), "agent") if isinstance(role_name, str) else "agent"
    data = {
        "message_id": str(raw_id),
        "agent": normalise_agent(obj.get("SpeakerName")),
        "role": role,
        "conversation_id": _conversation(obj),
        "content": extract_text(obj.get("Message")),
        "created_at": parse_timestamp(obj.get("Timestamp")),
        "sender_tags": _sender_tags(obj, meta),
        "metadata": {"legacy": _kept_original(obj)},
    }
    context = {"max_content_bytes": max_content_bytes} if max_content_bytes else None
    try:
        return AgentMessage.model_validate(data, strict=False, context=context)
    except ValidationError as exc:
        raise LegacyLineError(first_error(exc)) from None


def first_error(exc: ValidationError) -> str:
    """One readable line for a pydantic error: ``field: message`` (plus how many more there were)."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "value"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"
