"""Tagging in worker processes, so the rules tagger runs on its own cores beside ingest.

The rules tagger is pure Python: in the daemon's process it would share one interpreter lock with
validation, the store and the Redis I/O. :class:`ProcessTagger` keeps one or more child processes, each
owning a :class:`~daemon.tagging.rules.RulesTagger`, and sends them each batch. It implements the same
:class:`~daemon.tagging.base.Tagger` protocol, so the recorder does not know the difference.

With several children each conversation belongs to one of them (a stable hash of its id), so every
conversation's history is still built in message order in one place and the tags are exactly those of one
child: a tag depends on its message and its own conversation's history only.
"""

from __future__ import annotations

import gc
import multiprocessing
import threading
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import structlog

from daemon.store.base import TagRow, tags_from_row
from daemon.tagging.rules import CoreChoice, MessageFields, message_fields
from schemas import AgentMessage, Tags

log = structlog.get_logger()

#: The child's tagger, built once by the pool initializer.
_CHILD_TAGGER: Any = None


def _init_child(history: int, tier_model: bool = True, core: CoreChoice = "auto") -> None:
    global _CHILD_TAGGER
    from daemon.tagging.rules import RulesTagger

    _CHILD_TAGGER = RulesTagger(history=history, tier_model="default" if tier_model else None, core=core)
    # The child's heap is mostly the conversations' history (long-lived, acyclic): the default gen-0
    # threshold re-scanned it again and again while tagging. Same settings as the daemon process.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


def _child_tag(
    primes: list[tuple[str, list[MessageFields]]], rows: list[MessageFields]
) -> list[TagRow | str]:
    """In the child: load the queued histories, then tag rows in order. Each result is a row in the
    store's form (plain values and the evidence as JSON text: cheap to pickle, stored as is), or an error
    text for that message."""
    for conversation_id, history in primes:
        _CHILD_TAGGER.prime_fields(conversation_id, history)
    rows_out: list[TagRow | str] = _CHILD_TAGGER.tag_rows(rows)
    return rows_out


class _Shard:
    """One child process (started on first use) and the histories to load into it before its next batch."""

    __slots__ = ("pool", "primes")

    def __init__(self) -> None:
        self.pool: ProcessPoolExecutor | None = None
        #: sent with the next batch: one round trip instead of one per history
        self.primes: list[tuple[str, list[MessageFields]]] = []


class ProcessTagger:
    """The rules tagger in child processes (``spawn``: safe beside threads and an event loop)."""

    def __init__(
        self, history: int = 20, tier_model: bool = True, processes: int = 1, core: CoreChoice = "auto"
    ) -> None:
        """``history``: earlier messages a child remembers per conversation; ``tier_model``: the linear
        tier model decides the tier (else the rules' votes); ``processes``: child processes, the
        conversations divided between them; ``core``: which implementation of the rules' steps the children
        run (checked here, so that a core that was not built fails the start, not every batch)."""
        from daemon.tagging.rules import require_core, rules_version

        if processes < 1:
            raise ValueError("a process tagger needs at least one process")
        self._core = require_core(core)
        self.version = rules_version(tier_model)
        self._history = history
        self._tier_model = tier_model
        self._shards = [_Shard() for _ in range(processes)]

    def _shard_of(self, conversation_id: str) -> int:
        # crc32, not hash(): the same conversation goes to the same child in every run
        n = len(self._shards)
        return zlib.crc32(conversation_id.encode("utf-8", "surrogatepass")) % n if n > 1 else 0

    def _executor(self, shard: int = 0) -> ProcessPoolExecutor:
        state = self._shards[shard]
        if state.pool is None:
            state.pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_child,
                initargs=(self._history, self._tier_model, self._core),
            )
        return state.pool

    def tag_batch(self, messages: Sequence[AgentMessage]) -> list[Tags | None]:
        """Tag in the children and wait; a message that could not be tagged gets ``None``. A dead child
        raises ``BrokenProcessPool`` and is replaced by the next call (the histories it held are lost)."""
        return [None if row is None else tags_from_row(row) for row in self.submit_rows(messages).result()]

    def submit_rows(self, messages: Sequence[AgentMessage]) -> Future[list[TagRow | None]]:
        """Send a batch to the children and return at once; the future holds each message's tags in the
        store's form (:data:`~daemon.store.base.TagRow`), in order, ``None`` where tagging failed. Each
        child tags its part in submission order, so every message sees the history of the ones before."""
        done: Future[list[TagRow | None]] = Future()
        if not messages:
            done.set_result([])
            return done
        by_shard: dict[int, list[int]] = {}
        for i, message in enumerate(messages):
            by_shard.setdefault(self._shard_of(message.conversation_id), []).append(i)
        parts: list[tuple[int, list[int], Future[list[TagRow | str]]]] = []
        for shard, indexes in by_shard.items():
            state = self._shards[shard]
            primes, state.primes = state.primes, []
            try:
                child = self._executor(shard).submit(
                    _child_tag, primes, [message_fields(messages[i]) for i in indexes]
                )
            except BrokenProcessPool as exc:
                self._died(shard)
                done.set_exception(exc)
                return done
            parts.append((shard, indexes, child))
        left = [len(parts)]
        lock = threading.Lock()

        def finish(_: Future[list[TagRow | str]]) -> None:
            with lock:  # the callbacks run in the pools' own threads
                left[0] -= 1
                if left[0]:
                    return
            results: list[TagRow | str] = [""] * len(messages)
            try:
                for shard, indexes, child in parts:
                    try:
                        rows = child.result()
                    except BrokenProcessPool:
                        self._died(shard)
                        raise
                    for i, row in zip(indexes, rows, strict=True):
                        results[i] = row
                done.set_result(self._checked(messages, results))
            except Exception as exc:  # surfaced to whoever waits on the batch
                done.set_exception(exc)

        for _, _, child in parts:
            child.add_done_callback(finish)
        return done

    def _died(self, shard: int) -> None:
        # A broken pool has already lost its process; the next batch starts a new one. (No shutdown()
        # here: this may run in the pool's own management thread.)
        log.error("tagger_process_died", shard=shard)
        self._shards[shard].pool = None

    @staticmethod
    def _checked(messages: Sequence[AgentMessage], results: list[TagRow | str]) -> list[TagRow | None]:
        out: list[TagRow | None] = []
        for message, item in zip(messages, results, strict=True):
            if isinstance(item, str):
                log.warning("tagging_failed", message_id=message.message_id, error=item)
                out.append(None)
            else:
                out.append(item)
        return out

    def prime(self, conversation_id: str, history: Sequence[AgentMessage]) -> None:
        """Load a conversation's earlier messages into its child's history (sent with the next batch,
        before its messages are tagged)."""
        shard = self._shards[self._shard_of(conversation_id)]
        shard.primes.append((conversation_id, [message_fields(m) for m in history]))

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the child processes: ask them to exit, wait up to ``timeout_s`` each, then terminate."""
        for state in self._shards:
            pool, state.pool = state.pool, None
            if pool is None:
                continue
            # Not shutdown(wait=True): it has no timeout, and a stuck child must not hang the daemon's exit.
            processes = list(getattr(pool, "_processes", {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.join(timeout_s)
                if process.is_alive():
                    log.warning("tagger_process_terminated", pid=process.pid)
                    process.terminate()
                    process.join(5)
