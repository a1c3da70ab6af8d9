"""The daemon's lifecycle: start Redis (embedded default) and the store, tell systemd READY, record until
a signal, drain, stop.

First SIGTERM/SIGINT: stop reading, finish and ack the batches already read, exit 0. A second one exits
at once (nothing unacked is lost: Redis delivers it again to the next daemon).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
import structlog

from daemon.aio import cancel_and_wait, first_failure
from daemon.config import Settings
from daemon.metrics import Counters
from daemon.recorder import REDIS_DOWN, Recorder
from daemon.redis_conn import EmbeddedRedis, RedisUnavailable, async_client, describe_redis
from daemon.redis_server import RedisServerError
from daemon.store.base import Store, StoreError
from daemon.streams import StreamOps
from daemon.systemd import SystemdNotifier
from daemon.tagging.base import NoOpTagger, Tagger
from daemon.tagging.model import AsyncModelTagger, ModelBackend
from schemas import Event, Record, StreamKeys
from schemas._types import utc_now

log = structlog.get_logger()


class ServiceError(Exception):
    """The daemon cannot start; the message is one readable line."""


def build_tagger(settings: Settings) -> Tagger:
    """The tagging step the settings ask for (rules by default; ``none`` records untagged).

    Raises :class:`ServiceError` (one readable line) when it cannot be built, e.g. ``tag_core`` is
    ``compiled`` on an install whose compiled core was not built."""
    try:
        return _build_tagger(settings)
    except ValueError as exc:
        raise ServiceError(f"cannot build the tagger: {exc}") from None


def _build_tagger(settings: Settings) -> Tagger:
    if settings.tagger == "none":
        return NoOpTagger()
    if not settings.tag_in_process:
        from daemon.tagging.worker import ProcessTagger

        return ProcessTagger(
            settings.tag_history, settings.tier_model, settings.tag_processes, settings.tag_core
        )
    from daemon.tagging import make_tagger

    tagger: Tagger = make_tagger(
        settings.tagger, settings.tag_history, settings.tier_model, settings.tag_core
    )
    return tagger


def start_tagger(tagger: Tagger) -> None:
    """Start a tagger's child processes now, before the daemon reports ready, rather than on the first
    batch. A failure is logged, not raised: the first batch tries again, and a batch the tagger cannot take
    is recorded untagged (``aced retag`` tags it later)."""
    start = getattr(tagger, "start", None)
    if not callable(start):
        return
    try:
        start()
    except Exception:
        log.exception("tagger_start_failed")


async def connect(client: aioredis.Redis, attempts: int = 10, first_delay_s: float = 0.2) -> None:
    """PING until Redis answers, a bounded number of times, logging how many tries remain."""
    delay = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            await client.ping()
            return
        except REDIS_DOWN as exc:
            if attempt == attempts:
                raise RedisUnavailable(f"Redis did not answer after {attempts} tries: {exc}") from None
            log.warning("redis_connect_retry", error=str(exc), tries_left=attempts - attempt)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        except redis.exceptions.AuthenticationError as exc:
            raise RedisUnavailable(f"Redis refused the credentials: {exc}") from None
        except redis.exceptions.ResponseError as exc:
            raise RedisUnavailable(f"Redis refused the connection: {exc}") from None


class Daemon:
    """One daemon process: its resources and tasks. ``run`` is the whole life."""

    def __init__(self, settings: Settings, model_backend: ModelBackend | None = None) -> None:
        """``model_backend``: an optional slow tagger (LLM, local classifier) whose tags are added after
        ingest as a second tag version; ingest never waits for it."""
        self.settings = settings
        self.model_backend = model_backend
        self.keys = StreamKeys(settings.key_prefix)
        self.consumer = settings.consumer
        self.counters = Counters()
        self.notifier = SystemdNotifier()
        self.stop = asyncio.Event()
        self._signals = 0
        self._shutdown_done = False
        self._stuck_timer: threading.Timer | None = None

    async def run(self, burst: bool = False) -> int:
        """Start, record until stopped (or, with ``burst``, until nothing is left), stop. Returns 0."""
        settings = self.settings
        embedded: EmbeddedRedis | None = None
        store: Store | None = None
        client: aioredis.Redis | None = None
        others = False
        try:
            if settings.redis_url is None:
                embedded = EmbeddedRedis(settings)
                try:
                    await asyncio.to_thread(embedded.start)
                except (RedisServerError, OSError) as exc:
                    raise ServiceError(f"cannot start the embedded Redis: {exc}") from None
            store = await asyncio.to_thread(self._open_store)
            client = async_client(settings, socket_timeout_s=settings.block_ms / 1000 + 10)
            await connect(client)
            ops = StreamOps(client, self.keys, self.consumer)
            model_tagger = AsyncModelTagger(self.model_backend, store) if self.model_backend else None
            tagger = build_tagger(settings)
            await asyncio.to_thread(start_tagger, tagger)
            recorder = Recorder(
                settings,
                ops,
                store,
                tagger,
                self.counters,
                on_recorded=_submit_all(model_tagger) if model_tagger else None,
            )
            self._install_signal_handlers()
            log.info(
                "started",
                consumer=self.consumer,
                redis=describe_redis(settings),
                store=str(settings.store_path),
                tagger=recorder.tagger.version,
                pid=os.getpid(),
            )
            self.notifier.notify(READY="1", STATUS=self.counters.status_line())
            await self._emit(ops, "daemon.started", {"pid": os.getpid()})
            health = asyncio.create_task(self._health_loop(client), name="health")
            watchdog = asyncio.create_task(self._watchdog_loop(), name="watchdog")
            model_task = (
                asyncio.create_task(model_tagger.run(), name="model-tagger") if model_tagger else None
            )
            guard = asyncio.create_task(self._guard_shutdown(recorder), name="shutdown-guard")
            try:
                await recorder.run(self.stop, burst=burst)
            finally:
                guard.cancel()
                if model_tagger is not None and model_task is not None:
                    await model_tagger.stop(model_task, timeout_s=settings.shutdown_timeout_s)
                stuck = await cancel_and_wait((health, watchdog), timeout_s=settings.shutdown_timeout_s)
                if stuck:
                    log.error("tasks_not_stopped", tasks=sorted(task.get_name() for task in stuck))
                failure = first_failure((health, watchdog))
                if failure is not None:
                    log.error("task_failed", exc_info=failure)
            self.notifier.notify(STOPPING="1", STATUS="stopping: " + self.counters.status_line())
            await self._emit(ops, "daemon.stopping", self.counters.snapshot())
            with contextlib.suppress(*REDIS_DOWN, redis.exceptions.RedisError):
                await client.delete(self.keys.health(self.consumer))
            others = await self._other_consumers_alive(client)
            log.info("stopped", **self.counters.snapshot())
        finally:
            if client is not None:
                await client.aclose()
            if store is not None:
                store.close()
            if embedded is not None:
                await asyncio.to_thread(embedded.stop, others)
            self._shutdown_done = True
            if self._stuck_timer is not None:
                self._stuck_timer.cancel()
        return 0

    def _open_store(self) -> Store:
        from daemon.store import open_store

        try:
            store: Store = open_store(self.settings, background_checkpoint=True)
            store.check_writable()
        except StoreError as exc:
            raise ServiceError(f"store {self.settings.store_path} is not usable: {exc}") from None
        return store

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1:
            # Second signal: leave now. Anything not yet acked is redelivered to the next daemon.
            log.warning("exit_now", signal=sig.name)
            os._exit(128 + sig.value)
        log.info("stopping", signal=sig.name)
        self.notifier.notify(STOPPING="1")
        self.stop.set()

    async def _guard_shutdown(self, recorder: Recorder) -> None:
        """Draining is bounded by shutdown_timeout_s per stage; past twice that something is stuck: leave
        (unacked entries are redelivered) with every thread's stack in the log, rather than hang."""
        await recorder.stopping.wait()
        deadline = 2 * self.settings.shutdown_timeout_s + 5
        # A thread timer, not the event loop: the loop itself may be what is stuck.
        timer = threading.Timer(deadline, self._stuck, args=(deadline,))
        timer.daemon = True
        timer.start()
        self._stuck_timer = timer

    def _stuck(self, after_s: float) -> None:
        if self._shutdown_done:
            return
        log.error("shutdown_stuck", after_s=after_s)
        faulthandler.dump_traceback(all_threads=True)
        os._exit(1)

    async def _health_loop(self, client: aioredis.Redis) -> None:
        key = self.keys.health(self.consumer)
        ttl_ms = int(max(self.settings.health_interval_s * 3, 5.0) * 1000)
        while True:
            snapshot = self.counters.snapshot()
            fields: dict[str | bytes, str | int | float] = {
                k: ("" if v is None else (int(v) if isinstance(v, bool) else v)) for k, v in snapshot.items()
            }
            fields.update(
                consumer=self.consumer,
                pid=os.getpid(),
                updated_at=utc_now().isoformat(),
                store=str(self.settings.store_path),
            )
            try:
                async with client.pipeline(transaction=True) as pipe:
                    pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                    pipe.pexpire(key, ttl_ms)
                    await pipe.execute()
            except (*REDIS_DOWN, redis.exceptions.RedisError) as exc:
                log.debug("health_not_written", error=str(exc))
            self.notifier.notify(STATUS=self.counters.status_line())
            await asyncio.sleep(self.settings.health_interval_s)

    async def _watchdog_loop(self) -> None:
        # Fed from the event loop itself: if the loop wedges, systemd notices and restarts us.
        interval = self.notifier.watchdog_interval_s
        if interval is None:
            return
        while True:
            self.notifier.notify(WATCHDOG="1")
            await asyncio.sleep(interval)

    async def _other_consumers_alive(self, client: aioredis.Redis) -> bool:
        mine = self.keys.health(self.consumer).encode()
        try:
            async for key in client.scan_iter(match=self.keys.health_pattern, count=100):
                if key != mine:
                    return True
        except (*REDIS_DOWN, redis.exceptions.RedisError):
            return False
        return False

    async def _emit(self, ops: StreamOps, kind: Any, data: dict[str, Any]) -> None:
        with contextlib.suppress(*REDIS_DOWN, redis.exceptions.RedisError):
            await ops.emit(Event(type=kind, at=utc_now(), source=self.consumer, data=data))


def _submit_all(model_tagger: AsyncModelTagger) -> Callable[[list[Record]], None]:
    def submit(records: list[Record]) -> None:
        for record in records:
            model_tagger.submit(record)

    return submit


def tune_process_for_ingest() -> None:
    """Process-wide interpreter settings for a daemon process (``aced run`` calls this).

    - Ingest allocates many short-lived, acyclic objects that reference counting frees; with the default
      gen-0 threshold (700) the cyclic collector re-scanned the heap several times per batch. Cycles are
      still collected, less often; what is alive after start-up is frozen out of the scans.
    - The commit thread gives up the GIL around every SQLite step; with the default 5 ms switch interval
      it then waited up to 5 ms each time behind the tagging thread. 1 ms bounds that wait."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)
    sys.setswitchinterval(0.001)


def run_daemon(settings: Settings, burst: bool = False) -> int:
    """Run the daemon in this process until it stops; returns the exit code."""
    if not structlog.is_configured():
        # Logs go to stderr, never stdout, where CLI commands print their results.
        from daemon.logs import configure_logging

        configure_logging(settings.log_level, settings.log_format)
    return asyncio.run(Daemon(settings, model_backend=configured_model_backend(settings)).run(burst=burst))


def configured_model_backend(settings: Settings) -> ModelBackend | None:
    """The model backend the settings ask for (``classifier_dir``), or ``None``.

    Raises :class:`ServiceError` with a readable reason when the classifier extra or the trained model is
    missing: the daemon does not start without what it was told to run."""
    if settings.classifier_dir is None:
        return None
    from daemon.tagging.finetuned import ClassifierUnavailable, FineTunedTagger

    try:
        return FineTunedTagger(settings.classifier_dir, history=settings.tag_history)
    except ClassifierUnavailable as exc:
        raise ServiceError(f"classifier_dir: {exc}") from None
