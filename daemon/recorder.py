"""The recorder: read batches from the agent streams, validate, tag, commit, then ack.

Three cooperating tasks share one bounded queue of batches:

- the *reader* discovers agent streams, drains this consumer's own pending entries, then reads new ones;
- the *janitor* claims entries left idle by dead consumers and trims what was committed long ago;
- the *committer* takes one batch at a time: validate + tag + commit in a worker thread (one store
  transaction per batch), then dead-letter to the stream, then XACK.

The queue's size (``max_in_flight``) bounds the work held in memory. Nothing is acked before the store
transaction holding it has committed; a crash anywhere before the ack means Redis delivers the entry
again, and the store's unique ``message_id`` turns that second delivery into a counted redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions
import structlog

from daemon.aio import cancel_and_wait, first_failure
from daemon.config import Settings
from daemon.intake import IntakeLimits, RawEntry, dead_letter, intake
from daemon.metrics import Counters
from daemon.store.base import CommitResult, Store, StoreUnavailable, TagRow
from daemon.streams import StreamOps
from daemon.tagging.base import NoOpTagger, PendingTags, Tagger
from schemas import DeadLetter, Event, Record, RejectReason, Tags
from schemas._types import utc_now

log = structlog.get_logger()

#: Errors that mean "Redis is unreachable right now": back off and try again, never give up.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError, OSError)

#: Longest wait for a batch's tags from a tagger working in another process.
_TAGS_TIMEOUT_S = 120.0

#: How many conversations the tagger's history has been loaded for, at most (an LRU).
_PRIMED_CONVERSATIONS = 10_000


@dataclass(slots=True)
class Batch:
    """Entries read together; committed in one transaction and acked together."""

    entries: list[RawEntry]
    source: str  # "new", "pending" or "claimed", for logs
    read_at: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Prepared:
    """A batch validated and tagged (or being tagged elsewhere), waiting for its commit."""

    batch: Batch
    records: list[Record]
    letters: list[DeadLetter]
    #: tags a tagger in another process is computing, in the store's form (see ``ProcessTagger``)
    pending_tags: PendingTags | None = None
    #: the collect thread's wait for ``pending_tags`` (``None`` in the result: record untagged)
    collected: asyncio.Future[list[TagRow | None] | None] | None = None


def _with_tags(records: list[Record], tags: Sequence[Tags | None]) -> list[Record]:
    return [r if t is None else r.model_copy(update={"tags": t}) for r, t in zip(records, tags, strict=True)]


class Backoff:
    """Exponential backoff: 0.1 s doubling to ``max_s``; reset after a success."""

    def __init__(self, first_s: float = 0.1, max_s: float = 5.0) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.delay_s = first_s

    def next(self) -> float:
        """The delay to wait now; the next one doubles."""
        delay = self.delay_s
        self.delay_s = min(self.delay_s * 2, self.max_s)
        return delay

    def reset(self) -> None:
        """Back to the first delay."""
        self.delay_s = self.first_s


class Recorder:
    """Consumes the agent streams into the store. Receives built clients; owns no process-wide state."""

    def __init__(
        self,
        settings: Settings,
        ops: StreamOps,
        store: Store,
        tagger: Tagger,
        counters: Counters | None = None,
        on_recorded: Callable[[list[Record]], None] | None = None,
    ) -> None:
        """``on_recorded`` is called on the event loop with the records each batch newly inserted, after
        they are committed and acked (e.g. to queue them for a slow model tagger). It must not block."""
        self.settings = settings
        self.on_recorded = on_recorded
        self.ops = ops
        self.store = store
        self.tagger = tagger
        self.counters = counters or Counters()
        self.streams: list[str] = []
        self._limits = IntakeLimits(settings.max_entry_bytes, settings.max_content_bytes)
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=settings.max_in_flight)
        self._inflight: set[tuple[str, str]] = set()
        self._primed: OrderedDict[str, None] = OrderedDict()
        # Two single-thread stages: batch N+1 is validated and tagged while batch N commits (SQLite releases
        # the GIL while it writes and syncs). One thread each keeps batches in the order they were read.
        self._prepare_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aced-prepare")
        self._commit_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aced-commit")
        # Waits for (and unpickles) the tags of a batch tagged in another process, so that the commit thread
        # commits batch N while batch N+1's tags arrive, instead of waiting for them after the commit.
        self._collect_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aced-tags")
        self._prepared: asyncio.Queue[Prepared | None] = asyncio.Queue(maxsize=1)
        self._stop_reading = asyncio.Event()
        self._need_drain = True
        #: Set when shutdown begins (a stop, or a burst that found nothing left).
        self.stopping = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event, burst: bool = False) -> None:
        """Record until ``stop`` is set (or, with ``burst``, until no entry is left), then finish the
        batches already read, ack them and return."""
        preparer = asyncio.create_task(self._preparer(), name="preparer")
        committer = asyncio.create_task(self._committer(), name="committer")
        janitor = asyncio.create_task(self._janitor(), name="janitor")
        reader = asyncio.create_task(self._reader(burst), name="reader")
        stopper = asyncio.create_task(stop.wait(), name="stop-wait")
        try:
            await asyncio.wait({reader, stopper, preparer, committer}, return_when=asyncio.FIRST_COMPLETED)
            for task in (reader, preparer, committer):
                if task.done() and not task.cancelled():
                    task.result()  # re-raise a bug instead of stopping silently
        finally:
            self.stopping.set()
            # Stop reading, but let a read in progress finish (at most block_ms) and hand over what it
            # got: cancelling it could leave entries delivered to us that nobody processes until restart.
            self._stop_reading.set()
            await asyncio.wait({reader, janitor}, timeout=self.settings.shutdown_timeout_s)
            await cancel_and_wait((reader, janitor, stopper), timeout_s=self.settings.shutdown_timeout_s)
            # Everything read is finished and acked, within the shutdown budget. (A task, not a bare await:
            # if the preparer died, nobody would take the end marker from a full queue.)
            end = asyncio.create_task(self._queue.put(None), name="end-of-batches")
            _, late = await asyncio.wait({preparer, committer}, timeout=self.settings.shutdown_timeout_s)
            if late:
                log.error("shutdown_timeout", unfinished_batches=self._queue.qsize() + self._prepared.qsize())
            await cancel_and_wait((end, preparer, committer), timeout_s=self.settings.shutdown_timeout_s)
            self._prepare_thread.shutdown(wait=True)
            self._commit_thread.shutdown(wait=True)
            # Nothing is committed any more, so no collected tags are needed: a wait for a hung child must
            # not hold up the exit (closing the tagger below ends one in progress).
            self._collect_thread.shutdown(wait=False, cancel_futures=True)
            close = getattr(self.tagger, "close", None)
            if callable(close):
                close()  # a tagger with a child process stops it
            failure = first_failure((reader, janitor, preparer, committer))
            if failure is not None:
                raise failure  # a bug, even one hit while draining, is never swallowed

    # ------------------------------------------------------------------ reading
    async def refresh_streams(self) -> list[str]:
        """Find agent streams (new agents need no configuration) and join our group on each new one."""
        found = await self.ops.discover()
        for stream in found:
            if stream not in self.streams:
                await self.ops.ensure_group(stream)
                self.streams.append(stream)
                log.info("stream_joined", stream=stream)
        return self.streams

    async def _reader(self, burst: bool) -> None:
        backoff = Backoff()
        next_discovery = 0.0
        while not self._stop_reading.is_set():
            try:
                now = time.monotonic()
                if now >= next_discovery:
                    await self.refresh_streams()
                    next_discovery = now + self.settings.discover_interval_s
                if self._need_drain:
                    await self._drain_own_pending()
                    self._need_drain = False
                if not self.streams:
                    if burst:
                        return
                    await self._sleep(min(self.settings.block_ms / 1000, self.settings.discover_interval_s))
                    continue
                entries = await self.ops.read_new(
                    self.streams, self.settings.batch_size, 1 if burst else self.settings.block_ms
                )
                self._redis_recovered(backoff)
                if entries:
                    await self._enqueue(Batch(entries, "new"))
                elif burst and self._queue.empty():
                    await self._queue.join()
                    await self._prepared.join()
                    if await self._idle_everywhere():
                        return
            except REDIS_DOWN as exc:
                await self._redis_down(exc, backoff)
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # Redis lost our group (restarted without persistence, or the stream was deleted).
                    log.warning("group_missing", error=str(exc))
                    self.streams.clear()
                    next_discovery = 0.0
                    self._need_drain = True
                    continue
                raise

    async def _idle_everywhere(self) -> bool:
        for stream in self.streams:
            info = await self.ops.group_info(stream)
            if info is not None and (info.pending > 0 or (info.lag or 0) > 0):
                return False
        return True

    async def _drain_own_pending(self) -> None:
        """Re-read what this consumer was delivered but never acked (it crashed or lost Redis)."""
        for stream in list(self.streams):
            after = "0"
            while True:
                entries, after = await self.ops.read_own_pending(stream, self.settings.batch_size, after)
                fresh = [e for e in entries if (e.stream, e.entry_id) not in self._inflight]
                if fresh:
                    await self._enqueue(Batch(fresh, "pending"))
                if len(entries) < self.settings.batch_size:
                    break

    async def _enqueue(self, batch: Batch) -> None:
        for entry in batch.entries:
            self._inflight.add((entry.stream, entry.entry_id))
        self.counters.entries_read += len(batch.entries)
        await self._queue.put(batch)

    # ------------------------------------------------------------------ janitor
    async def _janitor(self) -> None:
        backoff = Backoff()
        while not self._stop_reading.is_set():
            await self._sleep(self.settings.janitor_interval_s)
            if not (self.counters.store_ok and self.counters.redis_ok):
                continue  # claiming now would only raise delivery counts of entries we cannot commit
            try:
                await self.janitor_pass()
                backoff.reset()
            except REDIS_DOWN as exc:
                log.warning("janitor_redis_error", error=str(exc))
            except redis.exceptions.ResponseError as exc:
                log.warning("janitor_error", error=str(exc))

    async def janitor_pass(self) -> None:
        """Claim entries idle too long (their consumer died), then trim what retention allows."""
        for stream in list(self.streams):
            cursor = "0-0"
            for _ in range(100):  # bounded work per pass
                entries, deleted, cursor = await self.ops.autoclaim(
                    stream, self.settings.claim_idle_ms, self.settings.batch_size, cursor
                )
                if deleted:
                    # Gone from the stream before anyone recorded them: nothing left to record.
                    log.warning(
                        "claimed_deleted_entries", stream=stream, ids=deleted[:20], count=len(deleted)
                    )
                    await self.ops.ack({stream: deleted})
                fresh = [e for e in entries if (e.stream, e.entry_id) not in self._inflight]
                if fresh:
                    log.info("claimed", stream=stream, count=len(fresh))
                    await self._enqueue(Batch(fresh, "claimed"))
                if cursor == "0-0":
                    break
            if self.settings.retention_s > 0:
                removed = await self.ops.trim(stream, int(self.settings.retention_s * 1000))
                if removed:
                    log.info("trimmed", stream=stream, removed=removed)
            gone = await self.ops.forget_idle_consumers(
                stream, int(self.settings.forget_consumer_idle_s * 1000)
            )
            if gone:
                log.info("forgot_idle_consumers", stream=stream, consumers=gone)

    # ------------------------------------------------------------------ committing
    async def _preparer(self) -> None:
        """Stage 1: validate and tag each batch in the prepare thread, in read order."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._queue.get()
            try:
                if batch is None:
                    await self._prepared.put(None)
                    return
                try:
                    prepared = await loop.run_in_executor(
                        self._prepare_thread, self._prepare, batch, utc_now()
                    )
                except Exception as exc:  # the batch boundary: nothing of it is acked
                    self._batch_failed(batch, exc)
                    continue
                if prepared.pending_tags is not None:
                    prepared.collected = loop.run_in_executor(
                        self._collect_thread, self._collect_tags, prepared
                    )
                await self._prepared.put(prepared)
            finally:
                self._queue.task_done()

    async def _committer(self) -> None:
        """Stage 2: commit each prepared batch (commit thread), then dead-letter and ack it."""
        while True:
            prepared = await self._prepared.get()
            try:
                if prepared is None:
                    return
                await self._commit_and_ack(prepared)
            finally:
                self._prepared.task_done()

    def _batch_failed(self, batch: Batch, exc: Exception) -> None:
        # The entries stay pending; the janitor claims them again after claim_idle_ms, and an entry that
        # keeps failing ends in the dead letter once delivered more than max_deliveries times.
        self.counters.batch_errors += 1
        self.counters.last_error = f"{type(exc).__name__}: {exc}"
        log.error("batch_failed", entries=len(batch.entries), source=batch.source, exc_info=exc)
        self._release(batch)

    async def _commit_and_ack(self, prepared: Prepared) -> None:
        batch, records, letters = prepared.batch, prepared.records, prepared.letters
        started = time.perf_counter()
        try:
            tag_rows = None if prepared.collected is None else await prepared.collected
            result = await self._commit_until_done(records, letters, tag_rows)
        except Exception as exc:  # the batch boundary: one broad except, and nothing is acked
            self._batch_failed(batch, exc)
            return
        # Only the dead letters stored just now: a redelivered entry dead-lettered before is not sent again.
        fresh = set(result.new_dead_letters)
        letters = [dl for dl in letters if f"{dl.stream}/{dl.entry_id}" in fresh]
        await self._redis_until_done(self.ops.publish_dead_letters, letters)
        acks: dict[str, list[str]] = defaultdict(list)
        for entry in batch.entries:
            acks[entry.stream].append(entry.entry_id)
        await self._redis_until_done(self.ops.ack, dict(acks))
        self._release(batch)
        self._count(batch, result, started)
        if self.on_recorded is not None and result.inserted:
            inserted = set(result.inserted)
            try:
                self.on_recorded([r for r in records if r.envelope.message_id in inserted])
            except Exception:  # a consumer of new records must never stop recording
                log.exception("on_recorded_failed")
        if letters:
            await self._emit(
                "deadletter",
                {
                    "count": len(letters),
                    "reasons": sorted({dl.reason.value for dl in letters}),
                    "entries": [f"{dl.stream}/{dl.entry_id}" for dl in letters[:20]],
                },
            )

    def _prepare(self, batch: Batch, received_at: Any) -> Prepared:
        """Prepare thread: validate every entry, tag the valid ones (or hand them to a tagger that works
        on its own, collected before the commit). Pure CPU, no I/O but history loads."""
        records: list[Record] = []
        letters: list[DeadLetter] = []
        consumer = self.ops.consumer
        max_deliveries = self.settings.max_deliveries
        for entry in batch.entries:
            if entry.delivery_count > max_deliveries:
                letters.append(
                    dead_letter(
                        entry,
                        RejectReason.POISON,
                        f"delivered {entry.delivery_count} times without being recorded "
                        f"(max_deliveries={max_deliveries}); last seen by {batch.source} read",
                        received_at,
                        consumer,
                    )
                )
                continue
            if not entry.fields:
                letters.append(
                    dead_letter(
                        entry,
                        RejectReason.MISSING_DATA,
                        "entry was deleted from the stream",
                        received_at,
                        consumer,
                    )
                )
                continue
            outcome = intake(entry, self.ops.keys, self._limits, received_at, consumer)
            if isinstance(outcome, Record):
                records.append(outcome)
            else:
                letters.append(outcome)
        if not records or isinstance(self.tagger, NoOpTagger):
            return Prepared(batch, records, letters)
        submit = getattr(self.tagger, "submit_rows", None)
        if submit is None:
            return Prepared(batch, self._tag(records), letters)
        # A tagger in another process tags this batch while this thread validates the next one.
        try:
            self._prime_history(records)
            pending = submit([r.envelope for r in records])
        except Exception:  # a tagger failure must never cost a message: record untagged, retag later
            log.exception("tagger_failed", entries=len(records))
            self.counters.untagged += len(records)
            return Prepared(batch, records, letters)
        return Prepared(batch, records, letters, pending)

    def _tag(self, records: list[Record]) -> list[Record]:
        try:
            self._prime_history(records)
            tags = self.tagger.tag_batch([r.envelope for r in records])
        except Exception:  # a tagger failure must never cost a message: record untagged, retag later
            log.exception("tagger_failed", entries=len(records))
            self.counters.untagged += len(records)
            return records
        return _with_tags(records, tags)

    def _collect_tags(self, prepared: Prepared) -> list[TagRow | None] | None:
        """Collect thread: wait for the tags a separate tagger computed (``None``: record untagged)."""
        assert prepared.pending_tags is not None
        try:
            # Bounded: a batch takes the child well under a second; a child that never answers must not
            # hold the pipeline (its batch is recorded untagged).
            tags = prepared.pending_tags.result(timeout=_TAGS_TIMEOUT_S)
        except Exception:  # e.g. the tagger's process died: record untagged, retag later
            log.exception("tagger_failed", entries=len(prepared.records))
            self.counters.untagged += len(prepared.records)
            return None
        return tags

    def _prime_history(self, records: Sequence[Record]) -> None:
        if self.settings.tag_history <= 0:
            return
        for record in records:
            conversation = record.envelope.conversation_id
            if conversation in self._primed:
                self._primed.move_to_end(conversation)
                continue
            history = self.store.conversation_history(
                conversation, record.envelope.created_at, self.settings.tag_history
            )
            # Nothing stored yet: leave the tagger's memory alone. It may hold messages of this
            # conversation tagged in a batch that is still being committed; priming with nothing would
            # wipe them.
            if history:
                self.tagger.prime(conversation, [r.envelope for r in history])
            self._primed[conversation] = None
            if len(self._primed) > _PRIMED_CONVERSATIONS:
                self._primed.popitem(last=False)

    async def _commit_until_done(
        self, records: list[Record], letters: list[DeadLetter], tag_rows: list[TagRow | None] | None = None
    ) -> CommitResult:
        """Commit in the worker thread; while the store is unwritable, wait and retry (nothing is acked)."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(self.settings.store_retry_s, 30.0)
        while True:
            try:
                result = await loop.run_in_executor(
                    self._commit_thread, self.store.commit_batch, records, letters, tag_rows
                )
            except StoreUnavailable as exc:
                self.counters.store_retries += 1
                if self.counters.store_ok:
                    self.counters.store_ok = False
                    self.counters.store_failures += 1
                    log.error("store_unwritable", error=str(exc), entries=len(records) + len(letters))
                    await self._emit("store.unwritable", {"error": str(exc)})
                else:
                    log.warning("store_still_unwritable", error=str(exc))
                self.counters.last_error = f"store: {exc}"
                await asyncio.sleep(backoff.next())
                continue
            if not self.counters.store_ok:
                self.counters.store_ok = True
                log.warning("store_recovered")
                await self._emit("store.recovered", {})
            return result

    async def _redis_until_done(self, action: Callable[[Any], Awaitable[None]], arg: Any) -> None:
        """Run a Redis write that must happen (dead letters, acks) until it succeeds."""
        backoff = Backoff()
        while True:
            try:
                await action(arg)
                self._redis_recovered(backoff)
                return
            except REDIS_DOWN as exc:
                await self._redis_down(exc, backoff)

    def _release(self, batch: Batch) -> None:
        for entry in batch.entries:
            self._inflight.discard((entry.stream, entry.entry_id))

    def _count(self, batch: Batch, result: CommitResult, started: float) -> None:
        c = self.counters
        c.batches += 1
        c.recorded += len(result.inserted)
        c.duplicates += len(result.duplicates)
        c.redelivered += len(result.redelivered)
        c.dead_letters += result.dead_letters
        c.last_commit_at = result.committed_at or utc_now()
        log.info(
            "batch",
            source=batch.source,
            entries=len(batch.entries),
            recorded=len(result.inserted),
            duplicates=len(result.duplicates),
            redelivered=len(result.redelivered),
            dead_letters=result.dead_letters,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            wait_ms=round((time.monotonic() - batch.read_at) * 1000, 2),
        )

    # ------------------------------------------------------------------ health
    async def _redis_down(self, exc: BaseException, backoff: Backoff) -> None:
        if self.counters.redis_ok:
            self.counters.redis_ok = False
            self.counters.redis_outages += 1
            log.error("redis_unreachable", error=str(exc))
        self.counters.last_error = f"redis: {exc}"
        self._need_drain = True
        await self._sleep(backoff.next())

    def _redis_recovered(self, backoff: Backoff) -> None:
        backoff.reset()
        if not self.counters.redis_ok:
            self.counters.redis_ok = True
            log.warning("redis_recovered")
            asyncio.get_running_loop().create_task(self._emit("redis.recovered", {}))

    async def _emit(self, kind: Any, data: dict[str, Any]) -> None:
        try:
            await self.ops.emit(Event(type=kind, at=utc_now(), source=self.ops.consumer, data=data))
        except (redis.exceptions.RedisError, OSError) as exc:
            log.debug("event_not_emitted", type=kind, error=str(exc))

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when reading should stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_reading.wait(), timeout=seconds)
