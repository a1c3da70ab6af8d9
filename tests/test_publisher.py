"""agents.Publisher / SyncPublisher and the adapters, against a real redis-server (no mocks)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.backoff import NoBackoff
from redis.retry import Retry

from agents import (
    ClaudeAdapter,
    GeminiAdapter,
    Publisher,
    PublishError,
    SyncPublisher,
    build_message,
)
from daemon.redis_server import RedisServer, free_port
from schemas import DATA_FIELD, AgentMessage, StreamKeys
from tests.helpers import wait_until


def no_client_retries() -> dict[str, Any]:
    """redis-py retries failed commands itself (seconds per call); these tests exercise our retries."""
    return {"retry": Retry(NoBackoff(), 0), "socket_connect_timeout": 2, "socket_timeout": 5}


class CountingAsyncRedis(aioredis.Redis):
    """A real asyncio client that counts the XADDs it was asked to send (it does not fake them)."""

    xadd_calls = 0

    async def xadd(self, *args: Any, **kwargs: Any) -> Any:
        self.xadd_calls += 1
        return await super().xadd(*args, **kwargs)


class CountingRedis(redis.Redis):
    """The blocking twin of :class:`CountingAsyncRedis`."""

    xadd_calls = 0

    def xadd(self, *args: Any, **kwargs: Any) -> Any:
        self.xadd_calls += 1
        return super().xadd(*args, **kwargs)


@pytest.fixture
async def aclient(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def entries(client: redis.Redis, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    got: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(stream)  # type: ignore[assignment]
    return got


def our_keys(client: redis.Redis, keys: StreamKeys) -> list[bytes]:
    return list(client.scan_iter(match=f"{keys.prefix}:*"))


# ------------------------------------------------------------------------------------------ happy path


async def test_async_publish_lands_on_agent_stream(
    aclient: aioredis.Redis, redis_client: redis.Redis, keys: StreamKeys
) -> None:
    message = build_message("claude", "conv-1", "héllo ✓", metadata={"k": 1})
    entry_id = await Publisher(aclient, keys).publish(message)
    stream = f"{keys.prefix}:agent:claude"
    assert entries(redis_client, stream) == [(entry_id.encode(), {DATA_FIELD.encode(): message.to_wire()})]
    stored = entries(redis_client, stream)[0][1][b"data"]
    assert AgentMessage.model_validate_json(stored) == message


def test_sync_publish_lands_on_agent_stream(redis_client: redis.Redis, keys: StreamKeys) -> None:
    publisher = SyncPublisher(redis_client, keys)
    messages = [build_message("gemini", "conv-2", f"message {i}") for i in range(3)]
    ids = [publisher.publish(m) for m in messages]
    stream = keys.agent_stream("gemini")
    assert stream == f"{keys.prefix}:agent:gemini"
    got = entries(redis_client, stream)
    assert [i.decode() for i, _ in got] == ids
    assert [fields for _, fields in got] == [{b"data": m.to_wire()} for m in messages]


async def test_publish_never_trims(
    aclient: aioredis.Redis, redis_client: redis.Redis, keys: StreamKeys
) -> None:
    stream = keys.agent_stream("claude")
    # A stream already holding many unrecorded entries: a MAXLEN (exact or ~) on publish would drop some.
    pipe = redis_client.pipeline(transaction=False)
    for i in range(5000):
        pipe.xadd(stream, {b"data": b"%d" % i})
    first_id = pipe.execute()[0]
    await Publisher(aclient, keys).publish(build_message("claude", "c", "one more"))
    SyncPublisher(redis_client, keys).publish(build_message("claude", "c", "and another"))
    assert redis_client.xlen(stream) == 5002
    assert redis_client.xrange(stream, count=1)[0][0] == first_id  # type: ignore[index]


# ------------------------------------------------------------------------------------ invalid envelopes


def test_build_message_rejects_invalid_envelope() -> None:
    with pytest.raises(ValidationError):
        build_message("Bad Agent", "c", "text")
    with pytest.raises(ValidationError):
        build_message("claude", "c", "   ")
    with pytest.raises(ValidationError):
        build_message("claude", "c", "x" * 11, max_content_bytes=10)


def unvalidated_messages() -> list[AgentMessage]:
    """Envelopes that exist without having passed validation."""
    good = build_message("claude", "c", "fine")
    return [
        good.model_copy(update={"content": ""}),
        good.model_copy(update={"message_id": "has space"}),
        good.model_copy(update={"metadata": {"x": "y" * 70_000}}),
        AgentMessage.model_construct(**{**good.model_dump(), "agent": "Bad Agent"}),
    ]


@pytest.mark.parametrize("index", range(len(unvalidated_messages())))
async def test_async_publish_rejects_invalid_envelope_before_writing(
    index: int, aclient: aioredis.Redis, redis_client: redis.Redis, keys: StreamKeys
) -> None:
    message = unvalidated_messages()[index]
    with pytest.raises(ValidationError):
        await Publisher(aclient, keys).publish(message)
    assert our_keys(redis_client, keys) == []


@pytest.mark.parametrize("index", range(len(unvalidated_messages())))
def test_sync_publish_rejects_invalid_envelope_before_writing(
    index: int, redis_client: redis.Redis, keys: StreamKeys
) -> None:
    message = unvalidated_messages()[index]
    with pytest.raises(ValidationError):
        SyncPublisher(redis_client, keys).publish(message)
    assert our_keys(redis_client, keys) == []


def test_publisher_content_limit(redis_client: redis.Redis, keys: StreamKeys) -> None:
    big = build_message("claude", "c", "x" * 100)
    with pytest.raises(ValidationError):
        SyncPublisher(redis_client, keys, max_content_bytes=50).publish(big)
    assert our_keys(redis_client, keys) == []
    # Without a limit of its own, the publisher leaves size to the daemon (whose limit is configurable).
    larger = build_message("claude", "c", "x" * 300_000, max_content_bytes=400_000)
    SyncPublisher(redis_client, keys).publish(larger)
    assert redis_client.xlen(keys.agent_stream("claude")) == 1


def test_attempts_must_be_positive(redis_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="attempts"):
        SyncPublisher(redis_client, attempts=0)


# ------------------------------------------------------------------------------------------- retrying


@pytest.fixture
def late_server(tmp_path: Path) -> Iterator[tuple[int, RedisServer]]:
    """A port nobody listens on yet, and the (unstarted) real server that will listen there."""
    port = free_port()
    server = RedisServer(directory=tmp_path / "late", port=port)
    yield port, server
    server.stop()


def start_when(server: RedisServer, condition: Any) -> threading.Thread:
    """Start ``server`` from another thread once ``condition()`` holds (a failed publish attempt)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            wait_until(condition, timeout_s=30, what="a failed publish attempt")
            server.start()
        except BaseException as exc:  # reported by the test through the thread's `errors`
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


async def test_async_publish_retries_until_redis_comes_up(
    late_server: tuple[int, RedisServer], keys: StreamKeys
) -> None:
    port, server = late_server
    client = CountingAsyncRedis(host="127.0.0.1", port=port, **no_client_retries())
    publisher = Publisher(client, keys, attempts=200, first_backoff_s=0.02, max_backoff_s=0.1)
    # The server starts only after the first attempt has failed and a second one is under way.
    thread = start_when(server, lambda: client.xadd_calls >= 2)
    message = build_message("claude", "c", "published through an outage")
    try:
        entry_id = await publisher.publish(message)
    finally:
        await client.aclose()
    thread.join(timeout=30)
    assert thread.errors == []  # type: ignore[attr-defined]
    assert client.xadd_calls >= 2
    check = redis.Redis(host="127.0.0.1", port=port)
    try:
        got = check.xrange(keys.agent_stream("claude"))
    finally:
        check.close()
    assert got == [(entry_id.encode(), {b"data": message.to_wire()})]


def test_sync_publish_retries_until_redis_comes_up(
    late_server: tuple[int, RedisServer], keys: StreamKeys
) -> None:
    port, server = late_server
    client = CountingRedis(host="127.0.0.1", port=port, **no_client_retries())
    publisher = SyncPublisher(client, keys, attempts=200, first_backoff_s=0.02, max_backoff_s=0.1)
    thread = start_when(server, lambda: client.xadd_calls >= 2)
    message = build_message("gemini", "c", "published through an outage")
    try:
        entry_id = publisher.publish(message)
        got = client.xrange(keys.agent_stream("gemini"))
    finally:
        client.close()
    thread.join(timeout=30)
    assert thread.errors == []  # type: ignore[attr-defined]
    assert client.xadd_calls >= 2
    assert got == [(entry_id.encode(), {b"data": message.to_wire()})]


async def test_async_publish_gives_up_after_configured_attempts(keys: StreamKeys) -> None:
    client = CountingAsyncRedis(host="127.0.0.1", port=free_port(), **no_client_retries())
    publisher = Publisher(client, keys, attempts=3, first_backoff_s=0.01, max_backoff_s=0.02)
    message = build_message("claude", "c", "nobody listens")
    try:
        with pytest.raises(PublishError, match=message.message_id) as exc:
            await publisher.publish(message)
    finally:
        await client.aclose()
    assert client.xadd_calls == 3
    assert isinstance(exc.value.__cause__, redis.ConnectionError)
    assert keys.agent_stream("claude") in str(exc.value)


def test_sync_publish_gives_up_after_configured_attempts(keys: StreamKeys) -> None:
    client = CountingRedis(host="127.0.0.1", port=free_port(), **no_client_retries())
    publisher = SyncPublisher(client, keys, attempts=4, first_backoff_s=0.01, max_backoff_s=0.02)
    message = build_message("claude", "c", "nobody listens")
    try:
        with pytest.raises(PublishError, match=message.message_id) as exc:
            publisher.publish(message)
    finally:
        client.close()
    assert client.xadd_calls == 4
    assert isinstance(exc.value.__cause__, redis.ConnectionError)


def test_one_attempt_means_no_retry(keys: StreamKeys) -> None:
    client = CountingRedis(host="127.0.0.1", port=free_port(), **no_client_retries())
    try:
        with pytest.raises(PublishError):
            SyncPublisher(client, keys, attempts=1).publish(build_message("claude", "c", "x"))
    finally:
        client.close()
    assert client.xadd_calls == 1


def test_redis_errors_that_are_not_connection_errors_are_not_retried(
    redis_client: redis.Redis, keys: StreamKeys
) -> None:
    # The agent's stream key already holds a string: XADD fails with WRONGTYPE; retrying cannot help.
    redis_client.set(keys.agent_stream("claude"), b"not a stream")
    counting = CountingRedis(connection_pool=redis_client.connection_pool)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        SyncPublisher(counting, keys, attempts=5, first_backoff_s=0.01).publish(
            build_message("claude", "c", "x")
        )
    assert counting.xadd_calls == 1


# -------------------------------------------------------------------------------------------- adapters


@pytest.mark.parametrize(("adapter_cls", "agent"), [(ClaudeAdapter, "claude"), (GeminiAdapter, "gemini")])
async def test_adapter_publishes_to_its_stream(
    adapter_cls: type[ClaudeAdapter] | type[GeminiAdapter],
    agent: str,
    aclient: aioredis.Redis,
    redis_client: redis.Redis,
    keys: StreamKeys,
) -> None:
    adapter = adapter_cls(Publisher(aclient, keys), keys)
    assert adapter.agent_name == agent
    assert adapter.stream == f"{keys.prefix}:agent:{agent}"
    first = await adapter.say("conv-9", "first thought", metadata={"model": agent})
    second = await adapter.say("conv-9", "second", reply_to=first.message_id, sender_tags={"tier": "A"})
    assert first.agent == second.agent == agent
    assert first.role == "agent"
    assert second.reply_to == first.message_id
    assert second.sender_tags == {"tier": "A"}
    got = entries(redis_client, adapter.stream)
    assert [AgentMessage.model_validate_json(fields[b"data"]) for _, fields in got] == [first, second]
    assert [k.decode() for k in our_keys(redis_client, keys)] == [adapter.stream]


async def test_adapter_rejects_invalid_message_without_writing(
    aclient: aioredis.Redis, redis_client: redis.Redis, keys: StreamKeys
) -> None:
    adapter = ClaudeAdapter(Publisher(aclient, keys), keys)
    with pytest.raises(ValidationError):
        await adapter.say("conv", "")
    assert our_keys(redis_client, keys) == []


def test_adapter_default_keys_use_default_prefix() -> None:
    adapter = GeminiAdapter(Publisher(aioredis.Redis()))
    assert adapter.stream == "aced:agent:gemini"
