"""Tagging in a worker process, so the rules tagger runs on its own core beside ingest.

The rules tagger is pure Python: in the daemon's process it would share one interpreter lock with
validation, the store and the Redis I/O. :class:`ProcessTagger` keeps one child process that owns a
:class:`~daemon.tagging.rules.RulesTagger` (and so the conversations' history) and sends it each batch.
It implements the same :class:`~daemon.tagging.base.Tagger` protocol, so the recorder does not know the
difference. One child, used by one thread at a time, keeps the history in message order.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import structlog

from daemon.store.base import TagRow, tags_from_row
from daemon.tagging.rules import MessageFields, message_fields
from schemas import AgentMessage, Tags

log = structlog.get_logger()

#: The child's tagger, built once by the pool initializer.
_CHILD_TAGGER: Any = None


def _init_child(history: int, tier_model: bool = True) -> None:
    global _CHILD_TAGGER
    from daemon.tagging.rules import RulesTagger

    _CHILD_TAGGER = RulesTagger(history=history, tier_model="default" if tier_model else None)
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


class ProcessTagger:
    """The rules tagger in a child process (``spawn``: safe beside threads and an event loop)."""

    def __init__(self, history: int = 20, tier_model: bool = True) -> None:
        """``history``: earlier messages the child remembers per conversation; ``tier_model``: the linear
        tier model decides the tier (else the rules' votes)."""
        from daemon.tagging.rules import RULES_VERSION

        self.version = RULES_VERSION if tier_model else RULES_VERSION + "-votes"
        self._history = history
        self._tier_model = tier_model
        self._pool: ProcessPoolExecutor | None = None
        #: histories to load before the next batch: sent with it, one round trip instead of one each
        self._primes: list[tuple[str, list[MessageFields]]] = []

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_child,
                initargs=(self._history, self._tier_model),
            )
        return self._pool

    def tag_batch(self, messages: Sequence[AgentMessage]) -> list[Tags | None]:
        """Tag in the child and wait; a message it could not tag gets ``None``. A dead child raises
        ``BrokenProcessPool`` and is replaced by the next call (the history it held is lost)."""
        return [None if row is None else tags_from_row(row) for row in self.submit_rows(messages).result()]

    def submit_rows(self, messages: Sequence[AgentMessage]) -> Future[list[TagRow | None]]:
        """Send a batch to the child and return at once; the future holds each message's tags in the
        store's form (:data:`~daemon.store.base.TagRow`), in order, ``None`` where tagging failed. Batches
        are tagged in submission order (one child), so each sees the history of the ones before."""
        done: Future[list[TagRow | None]] = Future()
        if not messages:
            done.set_result([])
            return done
        primes, self._primes = self._primes, []
        try:
            child = self._executor().submit(_child_tag, primes, [message_fields(m) for m in messages])
        except BrokenProcessPool as exc:
            self._died()
            done.set_exception(exc)
            return done

        def finish(child: Future[list[TagRow | str]]) -> None:
            try:
                done.set_result(self._checked(messages, child.result()))
            except BrokenProcessPool as exc:
                self._died()
                done.set_exception(exc)
            except Exception as exc:  # surfaced to whoever waits on the batch
                done.set_exception(exc)

        child.add_done_callback(finish)
        return done

    def _died(self) -> None:
        # A broken pool has already lost its process; the next batch starts a new one. (No shutdown()
        # here: this may run in the pool's own management thread.)
        log.error("tagger_process_died")
        self._pool = None

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
        """Load a conversation's earlier messages into the child's history (sent with the next batch,
        before its messages are tagged)."""
        self._primes.append((conversation_id, [message_fields(m) for m in history]))

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the child process: ask it to exit, wait up to ``timeout_s``, then terminate it."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # Not shutdown(wait=True): it has no timeout, and a stuck child must not hang the daemon's exit.
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout_s)
            if process.is_alive():
                log.warning("tagger_process_terminated", pid=process.pid)
                process.terminate()
                process.join(5)
