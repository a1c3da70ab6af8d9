"""Publishing envelopes to the agent streams.

A publish validates the envelope, then XADDs it (JSON in field ``data``) to ``<prefix>:agent:<agent>``.
There is no MAXLEN on publish: a blind cap could drop entries nobody has recorded yet; retention is the
daemon's job, which trims only what it has committed. Connection errors are retried with backoff; because
the daemon deduplicates on ``message_id``, a retry that reaches Redis twice is recorded once.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict

import redis
import redis.asyncio as aioredis
from typing_extensions import Unpack
from ulid import ULID

from schemas import DATA_FIELD, AgentMessage, Attachment, StreamKeys
from schemas._types import utc_now
from schemas.envelope import DEFAULT_MAX_CONTENT_BYTES, Role

#: Errors after which a publish is retried: the entry may or may not have reached Redis, and the
#: message_id makes a second copy harmless.
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)


class PublishError(Exception):
    """The message could not be published after every retry."""


def new_message_id() -> str:
    """A fresh ULID: unique, and sortable by creation time."""
    return str(ULID())


def build_message(
    agent: str,
    conversation_id: str,
    content: str,
    *,
    role: Role = "agent",
    reply_to: str | None = None,
    message_id: str | None = None,
    created_at: datetime | None = None,
    sender_tags: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    attachments: list[Attachment] | None = None,
    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
) -> AgentMessage:
    """Build and validate an envelope; raises ``pydantic.ValidationError`` if it breaks a rule."""
    return AgentMessage.model_validate(
        {
            "message_id": message_id or new_message_id(),
            "agent": agent,
            "role": role,
            "conversation_id": conversation_id,
            "reply_to": reply_to,
            "content": content,
            "attachments": attachments or [],
            "created_at": created_at or utc_now(),
            "sender_tags": dict(sender_tags) if sender_tags is not None else None,
            "metadata": dict(metadata or {}),
        },
        context={"max_content_bytes": max_content_bytes},
    )


def _entry(
    message: AgentMessage, keys: StreamKeys, max_content_bytes: int | None
) -> tuple[str, dict[str, bytes]]:
    """The stream and fields for ``message``, after validating the wire bytes as the daemon will.

    An ``AgentMessage`` can exist without having passed validation (``model_construct``, or
    ``model_copy(update=...)``); this keeps such a message out of the stream. ``max_content_bytes`` None
    leaves the content size to the daemon's own (configurable) limit. Raises ``pydantic.ValidationError``
    before anything is written.
    """
    wire = message.to_wire()
    limit = sys.maxsize if max_content_bytes is None else max_content_bytes
    AgentMessage.model_validate_json(wire, context={"max_content_bytes": limit})
    return keys.agent_stream(message.agent), {DATA_FIELD: wire}


class _Retry:
    """Backoff schedule shared by both publishers: ``attempts`` tries, delays doubling from ``first_s``."""

    def __init__(self, attempts: int, first_s: float, max_s: float) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.attempts = attempts
        self.first_s = first_s
        self.max_s = max_s

    def delays(self) -> list[float]:
        return [min(self.first_s * 2**i, self.max_s) for i in range(self.attempts - 1)]


class PublisherOptions(TypedDict, total=False):
    """Keyword options of both publishers (see :class:`_PublisherOptions`)."""

    attempts: int
    first_backoff_s: float
    max_backoff_s: float
    max_content_bytes: int | None


class _PublisherOptions:
    """What both publishers share: the stream names, the content limit and the retry schedule."""

    def __init__(
        self,
        keys: StreamKeys | None = None,
        *,
        attempts: int = 6,
        first_backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        max_content_bytes: int | None = None,
    ) -> None:
        """``attempts`` tries with delays doubling from ``first_backoff_s`` up to ``max_backoff_s``;
        ``max_content_bytes`` None leaves the size limit to the daemon's setting."""
        self.keys = keys or StreamKeys()
        self.retry = _Retry(attempts, first_backoff_s, max_backoff_s)
        self.max_content_bytes = max_content_bytes

    def entry(self, message: AgentMessage) -> tuple[str, dict[str, bytes]]:
        """The validated stream and fields to XADD."""
        return _entry(message, self.keys, self.max_content_bytes)

    def delays(self) -> list[float | None]:
        """The wait after each failed attempt; ``None`` after the last one (give up)."""
        return [*self.retry.delays(), None]


class Publisher:
    """Async publisher. Receives an already-built ``redis.asyncio.Redis`` client."""

    def __init__(
        self, client: aioredis.Redis, keys: StreamKeys | None = None, **options: Unpack[PublisherOptions]
    ) -> None:
        """``options``: ``attempts``, ``first_backoff_s``, ``max_backoff_s``, ``max_content_bytes``
        (see :class:`_PublisherOptions`)."""
        self._client = client
        self._options = _PublisherOptions(keys, **options)

    async def publish(self, message: AgentMessage) -> str:
        """Validate the envelope, XADD it to its agent's stream and return the stream entry id.

        Raises ``pydantic.ValidationError`` (nothing written) for an invalid envelope, and
        :class:`PublishError` when every attempt failed to reach Redis.
        """
        stream, fields = self._options.entry(message)
        last: BaseException | None = None
        for delay in self._options.delays():
            try:
                entry_id = await self._client.xadd(stream, fields)  # type: ignore[arg-type]
                return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            except RETRYABLE as exc:
                last = exc
                if delay is None:
                    break
                await asyncio.sleep(delay)
        raise PublishError(f"could not publish {message.message_id} to {stream}: {last}") from last


class SyncPublisher:
    """The blocking twin of :class:`Publisher`, for scripts and the CLI. Receives a ``redis.Redis``."""

    def __init__(
        self, client: redis.Redis, keys: StreamKeys | None = None, **options: Unpack[PublisherOptions]
    ) -> None:
        """``options``: ``attempts``, ``first_backoff_s``, ``max_backoff_s``, ``max_content_bytes``
        (see :class:`_PublisherOptions`)."""
        self._client = client
        self._options = _PublisherOptions(keys, **options)

    def publish(self, message: AgentMessage) -> str:
        """Validate the envelope, XADD it to its agent's stream and return the stream entry id.

        Raises ``pydantic.ValidationError`` (nothing written) for an invalid envelope, and
        :class:`PublishError` when every attempt failed to reach Redis.
        """
        stream, fields = self._options.entry(message)
        last: BaseException | None = None
        for delay in self._options.delays():
            try:
                entry_id = self._client.xadd(stream, fields)  # type: ignore[arg-type]
                return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            except RETRYABLE as exc:
                last = exc
                if delay is None:
                    break
                time.sleep(delay)
        raise PublishError(f"could not publish {message.message_id} to {stream}: {last}") from last
