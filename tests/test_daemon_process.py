"""The daemon as a real process: SIGKILL and restart, SIGTERM drain, two daemons, Redis restarted under it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from daemon.config import Settings
from daemon.redis_server import RedisServer
from schemas import CONSUMER_GROUP, StreamKeys
from tests.helpers import (
    REPO,
    counts,
    daemon_command,
    daemon_process,
    make_messages,
    publish,
    recorded_ids,
    wait_until,
)

pytestmark = pytest.mark.slow


def _exit_code(proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> int:
    """Wait for the daemon to exit; if it does not, get its thread stacks into the failure message."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack to the log
        wait_until(lambda: "Thread 0x" in log.read_text(errors="replace"), timeout_s=10, what="stack dump")
        raise AssertionError("daemon did not exit:\n" + log.read_text(errors="replace")[-6000:]) from None


def _burst(env: dict[str, str], log: Path, timeout_s: float = 120) -> None:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*daemon_command(), "--burst"], env=env, cwd=REPO, stdout=out, stderr=out, start_new_session=True
        )
    try:
        assert _exit_code(proc, log, timeout_s) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_sigkill_mid_stream_and_restart_loses_and_duplicates_nothing(
    make_settings: Callable[..., Settings],
    settings_env: Callable[..., dict[str, str]],
    redis_client: redis.Redis,
    keys: StreamKeys,
    tmp_path: Path,
) -> None:
    # Five kills in a row can catch the same entries in flight each time; with the default max_deliveries (5)
    # they would become poison dead letters, which is that setting's job but not what this test is about.
    overrides = {"batch_size": 50, "claim_idle_ms": 300, "max_deliveries": 50}
    settings = make_settings(**overrides)
    env = settings_env(**overrides)
    log = tmp_path / "daemon.log"
    messages = make_messages("claude", 2000) + make_messages("gemini", 2000)
    published = threading.Event()

    def producer() -> None:
        for i in range(0, len(messages), 100):
            publish(redis_client, keys, messages[i : i + 100])
        published.set()

    thread = threading.Thread(target=producer)
    thread.start()
    kills = 0
    for round_no in range(5):
        # Alternate a fixed consumer name (the restart drains its own pending entries) and a fresh one
        # (the janitor claims what the killed consumer held).
        run_env = {**env, "ACED_CONSUMER_NAME": "fixed"} if round_no % 2 else env
        with daemon_process(run_env, log) as proc:
            floor = counts(settings).recorded
            wait_until(
                lambda floor=floor: (
                    counts(settings).recorded > floor + 150
                    or (published.is_set() and counts(settings).recorded >= 3900)
                ),
                timeout_s=60,
                what="progress before the kill",
            )
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
    thread.join(timeout=60)
    assert published.is_set()
    _burst(env, log)

    ids = recorded_ids(settings)
    assert len(ids) == len(set(ids)) == len(messages)
    assert set(ids) == {m.message_id for m in messages}
    assert kills == 5
    for agent in ("claude", "gemini"):
        groups = redis_client.xinfo_groups(keys.agent_stream(agent))
        assert [int(g["pending"]) for g in groups] == [0]


def test_sigterm_drains_acks_what_it_read_and_exits_0(
    make_settings: Callable[..., Settings],
    settings_env: Callable[..., dict[str, str]],
    redis_client: redis.Redis,
    keys: StreamKeys,
    tmp_path: Path,
) -> None:
    settings = make_settings(batch_size=20)
    env = settings_env(batch_size=20, consumer_name="drainer")
    log = tmp_path / "daemon.log"
    messages = make_messages("claude", 5000)
    publish(redis_client, keys, messages)
    with daemon_process(env, log) as proc:
        wait_until(lambda: counts(settings).recorded > 0, timeout_s=30, what="first commit")
        proc.send_signal(signal.SIGTERM)
        assert _exit_code(proc, log, timeout_s=60) == 0
    stream = keys.agent_stream("claude")
    # Everything the daemon read was committed and acked before it left ...
    consumers = {c["name"].decode(): c for c in redis_client.xinfo_consumers(stream, CONSUMER_GROUP)}
    assert consumers["drainer"]["pending"] == 0
    recorded = counts(settings).recorded
    group = redis_client.xinfo_groups(stream)[0]
    assert group["pending"] == 0
    assert "stopped" in log.read_text()
    # ... and the rest is still there for the next run.
    _burst(env, log)
    assert sorted(recorded_ids(settings)) == sorted(m.message_id for m in messages)
    assert recorded <= len(messages)


def test_two_daemons_in_one_group_record_every_message_once(
    make_settings: Callable[..., Settings],
    settings_env: Callable[..., dict[str, str]],
    redis_client: redis.Redis,
    keys: StreamKeys,
    tmp_path: Path,
) -> None:
    settings = make_settings(batch_size=25)
    log = tmp_path / "daemons.log"
    messages = [m for agent in ("claude", "gemini", "third") for m in make_messages(agent, 1000)]
    for agent in ("claude", "gemini", "third"):  # the streams exist before the daemons start
        redis_client.xgroup_create(keys.agent_stream(agent), CONSUMER_GROUP, id="0", mkstream=True)
    with (
        daemon_process(settings_env(batch_size=25, consumer_name="one"), log) as one,
        daemon_process(settings_env(batch_size=25, consumer_name="two"), log) as two,
    ):
        # Publish once both read all three streams (each logs stream_joined per stream; Redis lists a
        # consumer only once it was delivered something): on a loaded machine one daemon could otherwise
        # record everything before the other started, and the test would say nothing about sharing.
        wait_until(lambda: log.read_text().count('"stream_joined"') >= 6, timeout_s=60, what="both reading")
        for i in range(0, len(messages), 100):
            publish(redis_client, keys, messages[i : i + 100])
        wait_until(lambda: counts(settings).recorded >= len(messages), timeout_s=90, what="all recorded")
        readers = set()
        for agent in ("claude", "gemini", "third"):
            for consumer in redis_client.xinfo_consumers(keys.agent_stream(agent), CONSUMER_GROUP):
                readers.add(consumer["name"].decode())
        for proc in (one, two):
            proc.send_signal(signal.SIGTERM)
        assert _exit_code(one, log, 60) == 0 and _exit_code(two, log, 60) == 0
    assert readers == {"one", "two"}
    ids = recorded_ids(settings)
    assert len(ids) == len(set(ids)) == len(messages)
    totals = counts(settings)
    assert totals.duplicates == 0


def test_redis_restarted_under_a_running_daemon_loses_nothing(
    own_redis: RedisServer,
    make_settings: Callable[..., Settings],
    settings_env: Callable[..., dict[str, str]],
    keys: StreamKeys,
    tmp_path: Path,
) -> None:
    settings = make_settings(redis_url=own_redis.url)
    env = settings_env(redis_url=own_redis.url)
    log = tmp_path / "daemon.log"
    first = make_messages("claude", 300, prefix="first ")
    second = make_messages("claude", 300, prefix="second ")
    with daemon_process(env, log) as proc:
        client = redis.Redis.from_url(own_redis.url)
        publish(client, keys, first)
        client.close()
        wait_until(lambda: counts(settings).recorded >= 150, timeout_s=30, what="first commits")
        own_redis.stop()  # graceful: AOF flushed; the daemon sees connection errors now
        assert proc.poll() is None
        own_redis.start()
        client = redis.Redis.from_url(own_redis.url)
        publish(client, keys, second)
        wait_until(lambda: counts(settings).recorded >= 600, timeout_s=60, what="all recorded after restart")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert _exit_code(proc, log, timeout_s=60) == 0
        assert client.xinfo_groups(keys.agent_stream("claude"))[0]["pending"] == 0
        client.close()
    assert sorted(recorded_ids(settings)) == sorted(m.message_id for m in first + second)
    text = log.read_text()
    assert "redis_unreachable" in text and "redis_recovered" in text


@contextlib.contextmanager
def _stop_embedded_redis_on_failure(data: Path) -> Iterator[None]:
    """If the test fails after the daemon started its Redis, the daemon is SIGKILLed and cannot stop it:
    stop that server ourselves, by the PID the daemon recorded, so a failed run leaves nothing behind."""
    try:
        yield
    except BaseException:
        pidfile = data / "redis" / "redis-server.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline")
            if cmdline.exists() and str(data) in cmdline.read_bytes().decode(errors="replace"):
                os.kill(pid, signal.SIGTERM)
        raise


def test_embedded_default_runs_its_own_redis_and_stops_it(tmp_path: Path) -> None:
    """No ACED_REDIS_URL, no config: the daemon starts a Redis under the data dir; the CLI finds it."""
    data = tmp_path / "d"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACED_")}
    env.update(ACED_DATA_DIR=str(data), ACED_HEALTH_INTERVAL_S="0.2")
    log = tmp_path / "daemon.log"

    def aced(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "daemon", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            input=stdin,
            timeout=60,
            check=False,
        )

    cleanup = _stop_embedded_redis_on_failure(data)
    with cleanup, daemon_process(env, log) as proc:
        wait_until(
            lambda: (data / "redis" / "redis.sock").exists(), timeout_s=30, what="embedded redis socket"
        )
        published = aced(
            "publish", "--agent", "claude", "--conversation", "c1", "Should we use Redis or Kafka?"
        )
        assert published.returncode == 0, published.stderr
        message_id = published.stdout.strip()
        assert len(message_id) == 26  # a ULID
        from_stdin = aced(
            "publish", "--agent", "gemini", "--conversation", "c1", "-", stdin="Redis: we run it already.\n"
        )
        assert from_stdin.returncode == 0, from_stdin.stderr

        def status() -> dict[str, object] | None:
            import json

            done = aced("status", "--json")
            report: dict[str, object] = json.loads(done.stdout)
            return report if done.returncode == 0 and report["recorded"] == 2 else None

        report = wait_until(status, timeout_s=30, what="status shows two records")
        for key in ("recorded", "duplicates", "dead_letters", "pending"):
            assert isinstance(report[key], int)
        exported = aced("export", "--out", "-")
        assert exported.returncode == 0, exported.stderr
        assert message_id in exported.stdout
        pid = int((data / "redis" / "redis-server.pid").read_text())
        proc.send_signal(signal.SIGTERM)
        assert _exit_code(proc, log, timeout_s=60) == 0
    wait_until(
        lambda: (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        ),
        timeout_s=10,
        what="embedded redis stopped",
    )
    assert not (data / "redis" / "redis.sock").exists()
    down = aced("status", "--json")
    assert down.returncode == 1
    assert aced("publish", "--agent", "claude", "--conversation", "c", "x").stderr.count("\n") == 1
