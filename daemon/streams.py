"""The Redis side of consuming: consumer groups, reading, claiming, acking, dead-lettering and trimming.

Every method is a thin, typed wrapper over one or two Redis commands, so the recorder reads as the
protocol it implements. Errors propagate: the caller decides about retries.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from daemon.intake import RawEntry
from schemas import CONSUMER_GROUP, DATA_FIELD, DeadLetter, Event, StreamKeys


def as_text(value: Any) -> str:
    """A Redis reply value (bytes with ``decode_responses=False``) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def entry_id_min(ids: Iterable[str]) -> str | None:
    """The smallest stream id among ``ids`` (stream ids compare as (ms, seq), not as text)."""
    best: str | None = None
    for entry_id in ids:
        if best is None or _id_tuple(entry_id) < _id_tuple(best):
            best = entry_id
    return best


def next_id(entry_id: str) -> str:
    """The smallest stream id greater than ``entry_id``."""
    ms, seq = _id_tuple(entry_id)
    return f"{ms}-{seq + 1}"


_FORGET_IF_EMPTY = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
    return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""


@dataclass(frozen=True, slots=True)
class PendingInfo:
    """One pending entry as XPENDING reports it."""

    entry_id: str
    consumer: str
    idle_ms: int
    deliveries: int


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """Our consumer group on one stream, for status and retention."""

    stream: str
    length: int
    pending: int
    last_delivered_id: str
    lag: int | None


class StreamOps:
    """Consumer-group operations for one daemon consumer."""

    def __init__(self, client: aioredis.Redis, keys: StreamKeys, consumer: str) -> None:
        self.client = client
        self.keys = keys
        self.consumer = consumer

    async def discover(self) -> list[str]:
        """Every agent stream that exists now (a new agent needs no configuration)."""
        found = []
        async for key in self.client.scan_iter(
            match=self.keys.agent_stream_pattern, count=1000, _type="STREAM"
        ):
            name = as_text(key)
            if self.keys.agent_of(name) is not None:
                found.append(name)
        return sorted(found)

    async def ensure_group(self, stream: str) -> None:
        """Create the group at id 0 (so nothing published before the daemon's first run is skipped)."""
        try:
            await self.client.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_new(self, streams: Sequence[str], count: int, block_ms: int) -> list[RawEntry]:
        """XREADGROUP ``>``: entries never delivered to anyone (delivery count 1)."""
        if not streams:
            return []
        reply = await self.client.xreadgroup(
            CONSUMER_GROUP, self.consumer, {s: ">" for s in streams}, count=count, block=block_ms
        )
        return self._entries(reply, {})

    async def read_own_pending(self, stream: str, count: int, after: str = "0") -> tuple[list[RawEntry], str]:
        """Our own pending entries (delivered to us, never acked), oldest first, after id ``after``.

        Returns the entries (with delivery counts, this read included) and the id to continue from.
        Entries deleted from the stream since come back with empty fields."""
        pending = await self.pending(
            stream, count=count, consumer=self.consumer, start=f"({after}" if after != "0" else "-"
        )
        if not pending:
            return [], after
        counts = {p.entry_id: p.deliveries + 1 for p in pending}  # reading history delivers again
        reply = await self.client.xreadgroup(CONSUMER_GROUP, self.consumer, {stream: after}, count=count)
        entries = self._entries(reply, counts)
        last = pending[-1].entry_id
        return entries, last

    async def pending(
        self,
        stream: str,
        count: int,
        consumer: str | None = None,
        start: str = "-",
        min_idle_ms: int | None = None,
    ) -> list[PendingInfo]:
        """XPENDING (extended form): pending entries with owner, idle time and delivery count."""
        rows = await self.client.xpending_range(
            stream, CONSUMER_GROUP, min=start, max="+", count=count, consumername=consumer, idle=min_idle_ms
        )
        return [
            PendingInfo(
                as_text(r["message_id"]),
                as_text(r["consumer"]),
                int(r["time_since_delivered"]),
                int(r["times_delivered"]),
            )
            for r in rows or []
        ]

    async def autoclaim(
        self, stream: str, min_idle_ms: int, count: int, start: str = "0-0"
    ) -> tuple[list[RawEntry], list[str], str]:
        """XAUTOCLAIM entries idle longer than ``min_idle_ms`` from any consumer.

        Returns (claimed entries with their new delivery counts, ids deleted from the stream, next cursor)."""
        reply = await self.client.xautoclaim(
            stream, CONSUMER_GROUP, self.consumer, min_idle_ms, start_id=start, count=count
        )
        cursor = as_text(reply[0])
        raw_entries = reply[1] or []
        deleted = [as_text(x) for x in reply[2]] if len(reply) > 2 and reply[2] else []
        entries: list[RawEntry] = []
        for item in raw_entries:
            if item is None:
                continue  # Redis 6.2 reports deleted entries as nil
            entry_id, fields = as_text(item[0]), item[1]
            if fields is None:
                deleted.append(entry_id)
                continue
            entries.append(RawEntry(stream, entry_id, _fields(fields), 1))
        if entries:
            ids = [e.entry_id for e in entries]
            lo = entry_id_min(ids) or ids[0]
            infos = await self.pending(stream, count=len(entries) * 4 + 10, consumer=self.consumer, start=lo)
            counts = {p.entry_id: p.deliveries for p in infos}
            for e in entries:
                e.delivery_count = counts.get(e.entry_id, 1)
        return entries, deleted, cursor

    async def forget_idle_consumers(self, stream: str, idle_ms: int) -> list[str]:
        """XGROUP DELCONSUMER every other consumer that holds nothing and was idle longer than ``idle_ms``
        (daemons that exited; each restart with a new name leaves one behind). Returns their names."""
        removed = []
        for consumer in await self.client.xinfo_consumers(stream, CONSUMER_GROUP):
            name = as_text(consumer["name"])
            if name == self.consumer or int(consumer["pending"]) > 0 or int(consumer["idle"]) <= idle_ms:
                continue
            # DELCONSUMER drops a consumer's pending entries from the PEL, so the check that it has none
            # and the delete happen atomically, in one script.
            result = await self.client.eval(_FORGET_IF_EMPTY, 1, stream, CONSUMER_GROUP, name)
            if int(result) == 0:
                removed.append(name)
        return removed

    async def ack(self, acks: dict[str, list[str]]) -> None:
        """XACK many ids on many streams in one round trip."""
        if not acks:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for stream, ids in acks.items():
                if ids:
                    pipe.xack(stream, CONSUMER_GROUP, *ids)
            await pipe.execute()

    async def publish_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """XADD each dead letter to the dead-letter stream: its reason plus the original fields."""
        if not letters:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for dl in letters:
                fields: dict[Any, Any] = {
                    "reason": dl.reason.value,
                    "detail": dl.detail,
                    "stream": dl.stream,
                    "entry_id": dl.entry_id,
                    "delivery_count": dl.delivery_count,
                    "received_at": dl.received_at.isoformat(),
                    "message_id": dl.message_id or "",
                }
                for name, value in dl.fields.items():
                    fields[b"orig:" + name] = value
                pipe.xadd(self.keys.deadletter, fields)
            await pipe.execute()

    async def emit(self, event: Event) -> None:
        """XADD an event to the events stream, capped: events are notifications, not the record."""
        await self.client.xadd(
            self.keys.events,
            {DATA_FIELD: orjson.dumps(event.model_dump(mode="json"))},
            maxlen=100_000,
            approximate=True,
        )

    async def group_info(self, stream: str) -> GroupInfo | None:
        """Length, pending count, last delivered id and lag of our group on ``stream``."""
        try:
            groups = await self.client.xinfo_groups(stream)
            length = int(await self.client.xlen(stream))
        except ResponseError:
            return None
        for group in groups:
            if as_text(group["name"]) == CONSUMER_GROUP:
                lag = group.get("lag")
                return GroupInfo(
                    stream=stream,
                    length=length,
                    pending=int(group["pending"]),
                    last_delivered_id=as_text(group["last-delivered-id"]),
                    lag=int(lag) if lag is not None else None,
                )
        return None

    async def trim(self, stream: str, retention_ms: int, now_ms: int | None = None) -> int:
        """Trim entries below every group's oldest pending entry, below every group's read position, and
        older than the retention window: exactly the entries that were committed and acked long ago.

        Returns the number of entries removed."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        bounds = [f"{max(now_ms - retention_ms, 0)}-0"]
        try:
            groups = await self.client.xinfo_groups(stream)
        except ResponseError:
            return 0
        if not any(as_text(g["name"]) == CONSUMER_GROUP for g in groups):
            return 0  # we have not recorded anything from it yet
        for group in groups:
            name = as_text(group["name"])
            bounds.append(next_id(as_text(group["last-delivered-id"])))
            if int(group["pending"]) > 0:
                summary = await self.client.xpending(stream, name)
                if summary and summary.get("min") is not None:
                    bounds.append(as_text(summary["min"]))
        minid = entry_id_min(bounds)
        if minid is None or minid == "0-0":
            return 0
        removed = await _command(self.client, "XTRIM", stream, "MINID", minid)
        return int(removed)

    def _entries(self, reply: Any, counts: dict[str, int]) -> list[RawEntry]:
        out: list[RawEntry] = []
        if not reply:
            return out
        items = reply.items() if isinstance(reply, dict) else reply
        for stream_name, entries in items:
            stream = as_text(stream_name)
            for entry_id_raw, fields in entries:
                entry_id = as_text(entry_id_raw)
                out.append(RawEntry(stream, entry_id, _fields(fields), counts.get(entry_id, 1)))
        return out


async def _command(client: aioredis.Redis, *args: Any) -> Any:
    """A raw command (XPENDING extended form, XAUTOCLAIM, XTRIM MINID) that redis-py types loosely."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def _fields(fields: Any) -> dict[bytes, bytes]:
    if fields is None:
        return {}
    if isinstance(fields, dict):
        return fields
    it = iter(fields)
    return dict(zip(it, it, strict=False))
