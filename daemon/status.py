"""What ``aced status`` reports: the store's totals, the streams' pending and lag, the live daemons."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis

from daemon.config import Settings
from daemon.redis_conn import RedisUnavailable, describe_redis, sync_client
from daemon.streams import as_text
from schemas import CONSUMER_GROUP, StreamKeys


@dataclass
class StatusReport:
    """Everything ``aced status`` prints. ``healthy`` decides the exit code."""

    recorded: int = 0
    duplicates: int = 0
    redelivered: int = 0
    dead_letters: int = 0
    pending: int = 0
    lag: int = 0
    last_commit_at: datetime | None = None
    store_ok: bool = False
    store_error: str | None = None
    redis_ok: bool = False
    redis_error: str | None = None
    redis: str = ""
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    daemons: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """Store readable, Redis reachable, at least one daemon alive and none reporting trouble."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object."""
        return {
            "healthy": self.healthy,
            "recorded": self.recorded,
            "duplicates": self.duplicates,
            "redelivered": self.redelivered,
            "dead_letters": self.dead_letters,
            "pending": self.pending,
            "lag": self.lag,
            "last_commit_at": self.last_commit_at.isoformat() if self.last_commit_at else None,
            "store": {"ok": self.store_ok, "error": self.store_error},
            "redis": {"ok": self.redis_ok, "at": self.redis, "error": self.redis_error},
            "streams": self.streams,
            "daemons": self.daemons,
            "problems": self.problems,
        }


def collect_status(settings: Settings) -> StatusReport:
    """Gather the report. Never raises for an unhealthy system: it says so in ``problems``."""
    report = StatusReport(redis=describe_redis(settings))
    _store_part(settings, report)
    _redis_part(settings, report)
    return report


def _store_part(settings: Settings, report: StatusReport) -> None:
    from daemon.store import StoreError, open_store

    if not settings.store_path.exists():
        report.store_ok = True  # nothing recorded yet is not a fault
        return
    try:
        store = open_store(settings, create=False)
    except StoreError as exc:
        report.store_error = str(exc)
        report.problems.append(f"store: {exc}")
        return
    try:
        counts = store.counts()
        report.recorded = counts.recorded
        report.duplicates = counts.duplicates
        report.redelivered = counts.redelivered
        report.dead_letters = counts.dead_letters
        report.last_commit_at = counts.last_commit_at
        report.store_ok = True
    except StoreError as exc:
        report.store_error = str(exc)
        report.problems.append(f"store: {exc}")
    finally:
        store.close()


def _redis_part(settings: Settings, report: StatusReport) -> None:
    keys = StreamKeys(settings.key_prefix)
    try:
        client = sync_client(settings, socket_timeout_s=5)
        client.ping()
    except (RedisUnavailable, redis.RedisError, OSError) as exc:
        report.redis_error = str(exc)
        report.problems.append(f"redis: {exc}")
        return
    try:
        report.redis_ok = True
        for key in sorted(
            as_text(k) for k in client.scan_iter(match=keys.agent_stream_pattern, _type="STREAM")
        ):
            report.streams[key] = _stream_status(client, key)
            report.pending += report.streams[key]["pending"]
            report.lag += report.streams[key]["lag"] or 0
        for key in client.scan_iter(match=keys.health_pattern):
            raw = client.hgetall(key)
            if not raw:
                continue
            daemon = {as_text(k): as_text(v) for k, v in raw.items()}
            report.daemons.append(daemon)
            if daemon.get("redis_ok") == "0":
                report.problems.append(f"daemon {daemon.get('consumer')}: Redis unreachable")
            if daemon.get("store_ok") == "0":
                report.problems.append(f"daemon {daemon.get('consumer')}: store not writable")
        if not report.daemons:
            report.problems.append("no daemon is running (no live health key)")
    except (redis.RedisError, OSError) as exc:
        report.redis_error = str(exc)
        report.problems.append(f"redis: {exc}")
    finally:
        client.close()


def _stream_status(client: redis.Redis, stream: str) -> dict[str, Any]:
    length = int(client.xlen(stream))
    out: dict[str, Any] = {"length": length, "pending": 0, "lag": None, "last_delivered_id": None}
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:
        return out
    for group in groups:
        if as_text(group["name"]) != CONSUMER_GROUP:
            continue
        out["pending"] = int(group["pending"])
        last = as_text(group["last-delivered-id"])
        out["last_delivered_id"] = last
        lag = group.get("lag")
        if lag is None:  # Redis < 7 does not report lag: count the entries after the read position
            lag = len(client.xrange(stream, min=f"({last}", count=100_000) or []) if length else 0
        out["lag"] = int(lag)
    if out["last_delivered_id"] is None:
        out["lag"] = length  # no group yet: the daemon has not seen this stream
    return out
