"""Building Redis clients from settings, and the embedded server that serves a data dir.

Only entry points (the daemon, CLI commands) build clients; components receive one.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry as SyncRetry

from daemon.config import Settings
from daemon.redis_server import RedisServer, RedisServerError, find_redis_server


class RedisUnavailable(Exception):
    """No Redis to talk to; the message is one readable line and never holds a password."""


def redacted(url: str) -> str:
    """The URL with any password replaced by ``***``, safe for logs: the one before ``@`` and a
    ``password=`` query parameter (the usual form for ``unix://`` URLs)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:***@{hostport}"  # hostport kept verbatim: IPv6 brackets and port intact
    query = parts.query
    if query:
        pairs = [p.partition("=") for p in query.split("&")]
        query = "&".join(
            f"{k}{sep}***" if k.lower() == "password" and sep else f"{k}{sep}{v}" for k, sep, v in pairs
        )
    # Splice the parts back in rather than urlunsplit, which would turn unix:///path into unix:/path.
    head, sep, tail = url.partition("?")
    if netloc != parts.netloc:
        head = head.replace(parts.netloc, netloc, 1)
    if sep:
        tail = query + tail[len(parts.query) :]
    return head + sep + tail


def redis_url(settings: Settings) -> str:
    """The URL to connect to: ``ACED_REDIS_URL``, else the embedded server's unix socket."""
    if settings.redis_url is not None:
        return settings.redis_url.get_secret_value()
    return f"unix://{settings.redis_socket}"


def describe_redis(settings: Settings) -> str:
    """Where Redis is, for logs and status (no secrets)."""
    if settings.redis_url is None:
        return f"embedded ({settings.redis_socket})"
    return redacted(settings.redis_url.get_secret_value())


def _client_kwargs(settings: Settings, socket_timeout_s: float | None) -> dict[str, Any]:
    # No retries inside redis-py (its default is 10, each up to the socket timeout): the daemon's loops
    # own the retry policy, with backoff, status and logs, and a stuck command must not hold a shutdown.
    kwargs: dict[str, Any] = {
        "decode_responses": False,
        "socket_connect_timeout": 5,
        "socket_timeout": socket_timeout_s,
        "health_check_interval": 0,
    }
    if settings.redis_username is not None:
        kwargs["username"] = settings.redis_username
    if settings.redis_password is not None:
        kwargs["password"] = settings.redis_password.get_secret_value()
    if settings.redis_tls_ca_file is not None:
        if not redis_url(settings).startswith("rediss://"):
            raise RedisUnavailable("ACED_REDIS_TLS_CA_FILE is set but ACED_REDIS_URL is not a rediss:// URL")
        kwargs["ssl_ca_certs"] = str(settings.redis_tls_ca_file)
    return kwargs


def _check_embedded_reachable(settings: Settings) -> None:
    if settings.redis_url is None and not settings.redis_socket.exists():
        raise RedisUnavailable(
            f"the embedded Redis for data dir {settings.data_dir} is not running "
            "(it runs while `aced run` does); start the daemon or set ACED_REDIS_URL"
        )


def sync_client(settings: Settings, socket_timeout_s: float | None = 10.0) -> redis.Redis:
    """A blocking client (CLI commands, tests). Raises :class:`RedisUnavailable` if there is no server."""
    _check_embedded_reachable(settings)
    try:
        return redis.Redis.from_url(
            redis_url(settings), retry=SyncRetry(NoBackoff(), 0), **_client_kwargs(settings, socket_timeout_s)
        )
    except ValueError as exc:
        raise RedisUnavailable(f"invalid ACED_REDIS_URL: {exc}") from None


def async_client(settings: Settings, socket_timeout_s: float | None = None) -> aioredis.Redis:
    """An asyncio client for the daemon. ``socket_timeout_s`` must exceed the XREADGROUP block time."""
    try:
        return aioredis.Redis.from_url(
            redis_url(settings),
            retry=AsyncRetry(NoBackoff(), 0),
            **_client_kwargs(settings, socket_timeout_s),
        )
    except ValueError as exc:
        raise RedisUnavailable(f"invalid ACED_REDIS_URL: {exc}") from None


@contextlib.contextmanager
def _dir_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class EmbeddedRedis:
    """The Redis server that belongs to a data dir: AOF (``appendfsync everysec``) and unix socket under
    ``<data_dir>/redis``.

    ``start`` starts it, or adopts the one already serving the socket (left by a daemon that was killed).
    ``stop`` shuts it down, unless another daemon is still using it.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._server: RedisServer | None = None
        self.adopted = False

    @property
    def pidfile(self) -> Path:
        """Where the server's PID is kept, so a restarted daemon can adopt it."""
        return self._settings.redis_dir / "redis-server.pid"

    def start(self) -> None:
        """Start or adopt the data dir's server. Raises :class:`RedisServerError` with one readable line."""
        settings = self._settings
        server = RedisServer(
            directory=settings.redis_dir,
            binary=find_redis_server(settings.redis_server_binary),
            port=0,  # unix socket only: nothing else on the machine can reach it over TCP
            unix_socket=settings.redis_socket,
        )
        with _dir_lock(settings.redis_dir / "start.lock"):
            if settings.redis_socket.exists() and server.ping():
                self.adopted = True
                self._server = server
                return
            with contextlib.suppress(FileNotFoundError):
                settings.redis_socket.unlink()  # stale socket of a server that died
            server.start()
            self.pidfile.write_text(f"{server.pid}\n")
            self._server = server

    def stop(self, other_consumers_alive: bool = False) -> None:
        """Shut the server down (it fsyncs its AOF first) unless other daemons still use it."""
        server = self._server
        if server is None or other_consumers_alive:
            return
        if server.process is not None:
            server.stop()
        else:
            # Adopted: not our child, but this data dir's own server; SHUTDOWN over its private socket.
            with contextlib.suppress(redis.RedisError, OSError):
                client = redis.Redis.from_url(server.url, socket_timeout=5)
                client.shutdown()
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        self._server = None


__all__ = [
    "EmbeddedRedis",
    "RedisServerError",
    "RedisUnavailable",
    "async_client",
    "describe_redis",
    "redacted",
    "redis_url",
    "sync_client",
]
