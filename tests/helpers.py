"""Helpers shared by the tests: waiting on conditions with a deadline, publishing, reading the store."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import redis

from agents.publisher import build_message
from daemon.config import Settings
from daemon.store import open_store
from daemon.store.base import StoreCounts
from schemas import DATA_FIELD, AgentMessage, StreamKeys

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent


def wait_until(
    predicate: Callable[[], T], timeout_s: float = 30.0, interval_s: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")
        time.sleep(interval_s)
        last = predicate()
    return last


def make_messages(
    agent: str, n: int, conversation: str = "conv-1", start: datetime | None = None, prefix: str = ""
) -> list[AgentMessage]:
    """``n`` valid, distinct messages from ``agent``; created_at strictly increasing."""
    base = start or datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    return [
        build_message(
            agent,
            conversation,
            f"{prefix}{agent} message {i}: let us check the loss curve and the SDF grid again, héllo ✓",
            created_at=base + timedelta(milliseconds=i),
            metadata={"i": i},
        )
        for i in range(n)
    ]


def publish(client: redis.Redis, keys: StreamKeys, messages: list[AgentMessage]) -> list[str]:
    """XADD every message to its agent's stream in one pipeline; returns the entry ids."""
    pipe = client.pipeline(transaction=False)
    for m in messages:
        pipe.xadd(keys.agent_stream(m.agent), {DATA_FIELD: m.to_wire()})
    return [i.decode() for i in pipe.execute()]


def counts(settings: Settings) -> StoreCounts:
    """The store's totals right now (opens and closes a reader connection)."""
    if not settings.store_path.exists():
        return StoreCounts(0, 0, 0, 0, None)
    store = open_store(settings, create=False)
    try:
        return store.counts()
    finally:
        store.close()


def recorded_ids(settings: Settings) -> list[str]:
    """Every recorded message_id (with repetitions, if the store ever had any)."""
    store = open_store(settings, create=False)
    try:
        return [r.envelope.message_id for r in store.iter_records()]
    finally:
        store.close()


def daemon_command() -> list[str]:
    """argv that runs the daemon as a real subprocess."""
    return [sys.executable, "-m", "daemon", "run"]


@contextmanager
def daemon_process(
    env: dict[str, str], log_path: Path, args: list[str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``aced run`` as a subprocess in its own process group; stop it (by PID) on exit."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            daemon_command() + (args or []), env=env, cwd=REPO, stdout=log, stderr=log, start_new_session=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def group_pending(client: redis.Redis, stream: str) -> int:
    """Entries delivered to the group and not acked."""
    try:
        groups: list[dict[str, Any]] = client.xinfo_groups(stream)  # type: ignore[assignment]
    except redis.ResponseError:
        return 0
    return sum(int(g["pending"]) for g in groups)


def chattr(flag: str, *paths: Path) -> bool:
    """``chattr FLAG PATHS`` (``+i``/``-i``): a real write failure even for root. False if unavailable."""
    import shutil

    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, check=False)
    return done.returncode == 0


REPO = Path(__file__).resolve().parent.parent
TAGGING_DATA = REPO / "tests" / "data" / "tagging"


def load_bench(name: str) -> ModuleType:
    """The script ``bench/<name>.py`` as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def labelled_lines(*names: str) -> list[dict[str, Any]]:
    """Every labelled message (the JSON object of its line) in ``tests/data/tagging/<name>.jsonl`` (all
    the labelled files when no name is given), in file order."""
    paths = (
        [TAGGING_DATA / f"{n}.jsonl" for n in names]
        if names
        else sorted(p for p in TAGGING_DATA.glob("*.jsonl") if p.name != "golden_tags.jsonl")
    )
    return [
        json.loads(line)
        for path in paths
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def labelled_contents(*names: str) -> list[str]:
    """The ``content`` of every labelled message (see :func:`labelled_lines`)."""
    return [line["content"] for line in labelled_lines(*names)]
