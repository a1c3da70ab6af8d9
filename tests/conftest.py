"""Shared fixtures: a real redis-server on a free port (never the machine's 6379), settings factories."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from daemon.config import Settings
from daemon.redis_server import RedisServer, free_port
from schemas import StreamKeys

# Nothing in the tests may read a developer's own configuration.
for _var in [v for v in os.environ if v.startswith("ACED_")]:
    del os.environ[_var]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real Redis server for the session, on a free TCP port, AOF on, stopped afterwards.

    Tests isolate themselves with a unique key prefix (see ``key_prefix``)."""
    server = RedisServer(directory=tmp_path_factory.mktemp("redis"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server for one test only (tests that restart or kill it)."""
    server = RedisServer(directory=tmp_path / "redis", port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test uses, so tests can share one server."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def keys(key_prefix: str) -> StreamKeys:
    """Stream names under this test's prefix."""
    return StreamKeys(key_prefix)


@pytest.fixture
def make_settings(tmp_path: Path, key_prefix: str, redis_server: RedisServer) -> Callable[..., Settings]:
    """Settings for a daemon or CLI in this test: the session server, this test's prefix and data dir,
    short timeouts. Keyword arguments override."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "redis_url": redis_server.url,
            "key_prefix": key_prefix,
            "block_ms": 100,
            "janitor_interval_s": 0.2,
            "discover_interval_s": 0.1,
            "health_interval_s": 0.2,
            "claim_idle_ms": 2000,
            "log_format": "json",
        }
        values.update(overrides)
        return Settings(**values)

    return factory


@pytest.fixture
def settings_env(make_settings: Callable[..., Settings]) -> Callable[..., dict[str, str]]:
    """Environment variables that make a subprocess (``python -m daemon ...``) use the same settings."""

    def factory(**overrides: Any) -> dict[str, str]:
        settings = make_settings(**overrides)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACED_")}
        for name in Settings.model_fields:
            value = getattr(settings, name)
            if value is None:
                continue
            if hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            env[f"ACED_{name.upper()}"] = str(value)
        return env

    return factory


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain redis-py client on the session server (bytes in, bytes out)."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()
