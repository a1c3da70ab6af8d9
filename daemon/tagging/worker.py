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

import contextlib
import gc
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from typing import Any

import structlog

from daemon.store.base import TagRow, tags_from_row
from daemon.tagging.rules import CoreChoice, MessageFields, message_fields
from schemas import AgentMessage, Tags

log = structlog.get_logger()

#: The child's tagger, built once when the child starts (:func:`_child_main`).
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


def _child_main(conn: Connection, history: int, tier_model: bool, core: CoreChoice) -> None:
    """The child process: build the tagger, then answer each request (``primes, rows``) in order with
    ``(True, rows)`` or ``(False, error text)``, until ``None`` or the parent's end of the pipe closes.

    Two threads move the requests and answers through the pipe while the main thread tags: the parent's
    send of the next batch returns as soon as this child has read it, not when the child is done with the
    previous batch; and the child tags the next batch while the parent has not yet read the last answer.
    """
    # The parent decides when its child stops (close() sends None); a Ctrl-C to the process group must not
    # kill the child under a daemon that is still draining its batches.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The reader thread takes a batch off the pipe a socket buffer at a time, and needs the interpreter
    # lock between buffers; with the default 5 ms switch interval the tagging thread kept it so long that
    # the parent's send of the next batch blocked ~6 ms per batch (py-spy, bench/ingest.py).
    sys.setswitchinterval(0.0005)
    _init_child(history, tier_model, core)
    requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
    answers: queue.SimpleQueue[tuple[bool, Any] | None] = queue.SimpleQueue()

    def read() -> None:
        try:
            while (request := conn.recv()) is not None:
                requests.put(request)
        except (EOFError, OSError):
            pass
        requests.put(None)

    def write() -> None:
        try:
            while (answer := answers.get()) is not None:
                conn.send(answer)
        except OSError:  # the parent is gone
            pass

    reader = threading.Thread(target=read, name="requests", daemon=True)
    writer = threading.Thread(target=write, name="answers")
    reader.start()
    writer.start()
    while (request := requests.get()) is not None:
        try:
            reply: tuple[bool, Any] = (True, _child_tag(*request))
        except Exception as exc:  # reported to the batch's waiter; the child stays up for the next batch
            reply = (False, f"{type(exc).__name__}: {exc}")
        answers.put(reply)
    answers.put(None)
    writer.join()
    # Nothing is left to flush or clean up; tearing down the interpreter would free every conversation's
    # history object by object (~0.6 s after 40,000 messages), which the parent's close() waits for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class _Child:
    """One child process and the pipe to it. Requests are numbered as they are sent; the child answers
    them in that order, and whoever waits for answer ``n`` reads (and keeps) the answers before it."""

    __slots__ = (
        "_abandoned",
        "_answers",
        "_read_lock",
        "_received",
        "_send_lock",
        "_sent",
        "conn",
        "process",
    )

    def __init__(self, history: int, tier_model: bool, core: CoreChoice) -> None:
        ctx = multiprocessing.get_context("spawn")  # safe beside threads and an event loop
        self.conn, child_end = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_child_main, args=(child_end, history, tier_model, core), name="aced-tagger", daemon=True
        )
        self.process.start()
        child_end.close()  # the child holds it now; when the child dies, our reads see the end of the pipe
        self._send_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._sent = 0
        self._received = 0
        self._answers: dict[int, tuple[bool, Any]] = {}
        self._abandoned: set[int] = set()

    def send(self, request: tuple[list[tuple[str, list[MessageFields]]], list[MessageFields]]) -> int:
        """Send one request (pickled here, in the caller's thread) and return its number."""
        with self._send_lock:
            try:
                self.conn.send(request)
            except OSError as exc:  # the child is gone (EPIPE, ECONNRESET)
                raise BrokenProcessPool(f"the tagger process is gone: {exc}") from exc
            self._sent += 1
            return self._sent

    def answer(self, number: int, timeout: float | None) -> tuple[bool, Any]:
        """The answer to request ``number``; reads the answers before it first. ``TimeoutError`` when it
        has not come within ``timeout`` seconds (it is then dropped when it comes); ``BrokenProcessPool``
        when the child died."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._read_lock:
            while number not in self._answers:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    ready = self.conn.poll(left)
                    if ready:
                        answer: tuple[bool, Any] = self.conn.recv()
                except (EOFError, OSError) as exc:
                    raise BrokenProcessPool(
                        f"the tagger process is gone (exit code {self.exitcode()})"
                    ) from exc
                if not ready:  # raised here, not in the try: TimeoutError is an OSError
                    self._abandoned.add(number)
                    raise TimeoutError(f"no tags from the tagger process within {timeout} s")
                self._received += 1
                if self._received in self._abandoned:
                    self._abandoned.discard(self._received)
                else:
                    self._answers[self._received] = answer
            return self._answers.pop(number)

    def abandon(self, number: int) -> None:
        """Nobody will wait for answer ``number``: drop it, now or when it comes."""
        with self._read_lock:
            if self._answers.pop(number, None) is None and number > self._received:
                self._abandoned.add(number)

    def exitcode(self) -> int | None:
        """The child's exit code once it has ended (a negative number: the signal that ended it)."""
        self.process.join(0.5)
        return self.process.exitcode

    def close(self, timeout_s: float) -> None:
        """Ask the child to exit, wait up to ``timeout_s``, then terminate it, and kill it if that fails."""
        with contextlib.suppress(OSError), self._send_lock:
            self.conn.send(None)
        # Closed before the wait: the child still reads the None sent above, and an answer nobody read can
        # no longer hold its sending thread (and so the child) up.
        self.conn.close()
        self.process.join(timeout_s)
        if self.process.is_alive():
            log.warning("tagger_process_terminated", pid=self.process.pid)
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            # A stopped child (SIGSTOP) never acts on SIGTERM; only SIGKILL ends it, and with it a wait for
            # its answer in another thread (the pipe's far end closes).
            log.warning("tagger_process_killed", pid=self.process.pid)
            self.process.kill()
            self.process.join(5)


class PendingRows:
    """The tags of one batch that child processes are computing (what ``submit_rows`` returns)."""

    __slots__ = ("_messages", "_owner", "_parts")

    def __init__(
        self,
        owner: ProcessTagger,
        messages: Sequence[AgentMessage],
        parts: list[tuple[int, _Child, list[int], int]],
    ) -> None:
        self._owner = owner
        self._messages = messages
        self._parts = parts  # (shard, child, the batch's indexes it tags, request number)

    def result(self, timeout: float | None = None) -> list[TagRow | None]:
        """Each message's tags in the store's form (:data:`~daemon.store.base.TagRow`), in order, ``None``
        where tagging failed. Raises ``TimeoutError`` after ``timeout`` seconds, ``BrokenProcessPool`` if a
        child died (the next batch starts a new one) and ``RuntimeError`` if a child could not tag the
        batch at all."""
        deadline = None if timeout is None else time.monotonic() + timeout
        results: list[TagRow | str] = [""] * len(self._messages)
        for k, (shard, child, indexes, number) in enumerate(self._parts):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ok, rows = child.answer(number, left)
                if not ok:
                    raise RuntimeError(f"the tagger process failed on a batch: {rows}")
            except BrokenProcessPool:
                self._owner._died(shard, child)
                self._abandon(k + 1)
                raise
            except Exception:
                self._abandon(k + 1)  # the other children's answers to this batch would never be read
                raise
            for i, row in zip(indexes, rows, strict=True):
                results[i] = row
        return ProcessTagger._checked(self._messages, results)

    def _abandon(self, first: int) -> None:
        for _, child, _, number in self._parts[first:]:
            child.abandon(number)


class ProcessTagger:
    """The rules tagger in child processes (``spawn``: safe beside threads and an event loop).

    Each child is a plain process with one pipe: a batch is pickled and sent by the thread that submits it,
    and its answer is read by the thread that waits for it. (A ``ProcessPoolExecutor`` moved both through
    two threads of its own, whose hand-offs of the interpreter lock added latency to every batch.)
    """

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
        self._children: list[_Child | None] = [None] * processes
        #: per child: the histories to load before its next batch (sent with it: one round trip, not two)
        self._primes: list[list[tuple[str, list[MessageFields]]]] = [[] for _ in range(processes)]
        self._lock = threading.Lock()

    def _shard_of(self, conversation_id: str) -> int:
        # crc32, not hash(): the same conversation goes to the same child in every run
        n = len(self._children)
        return zlib.crc32(conversation_id.encode("utf-8", "surrogatepass")) % n if n > 1 else 0

    def _child(self, shard: int) -> _Child:
        """The shard's child process, started on first use (and again after it died)."""
        with self._lock:
            child = self._children[shard]
            if child is None:
                child = _Child(self._history, self._tier_model, self._core)
                self._children[shard] = child
            return child

    def start(self, timeout_s: float = 60.0) -> None:
        """Start every child now and wait until each has built its tagger, so that the first batch does
        not wait for it (about half a second). Raises ``BrokenProcessPool`` or ``TimeoutError`` when a
        child cannot start (the next batch tries again)."""
        for shard in range(len(self._children)):
            child = self._child(shard)
            try:
                ok, detail = child.answer(child.send(([], [])), timeout_s)
            except BrokenProcessPool:
                self._died(shard, child)
                raise
            if not ok:
                raise RuntimeError(f"the tagger process failed to start: {detail}")

    def pids(self) -> list[int | None]:
        """The process ids of the children started so far (``None``: not started, or died)."""
        return [None if c is None else c.process.pid for c in self._children]

    def tag_batch(self, messages: Sequence[AgentMessage]) -> list[Tags | None]:
        """Tag in the children and wait; a message that could not be tagged gets ``None``. A dead child
        raises ``BrokenProcessPool`` and is replaced by the next call (the histories it held are lost)."""
        return [None if row is None else tags_from_row(row) for row in self.submit_rows(messages).result()]

    def submit_rows(self, messages: Sequence[AgentMessage]) -> PendingRows:
        """Send a batch to the children and return at once; ``result()`` of what is returned gives each
        message's tags in the store's form, in order. Each child tags its part in submission order, so every
        message sees the history of the ones before."""
        by_shard: dict[int, list[int]] = {}
        for i, message in enumerate(messages):
            by_shard.setdefault(self._shard_of(message.conversation_id), []).append(i)
        parts: list[tuple[int, _Child, list[int], int]] = []
        for shard, indexes in by_shard.items():
            child = self._child(shard)
            primes, self._primes[shard] = self._primes[shard], []
            try:
                number = child.send((primes, [message_fields(messages[i]) for i in indexes]))
            except BrokenProcessPool:
                self._died(shard, child)
                raise
            parts.append((shard, child, indexes, number))
        return PendingRows(self, messages, parts)

    def _died(self, shard: int, child: _Child) -> None:
        # The next batch starts a new child; the histories this one held are lost.
        with self._lock:
            if self._children[shard] is child:
                log.error("tagger_process_died", shard=shard, exitcode=child.exitcode())
                self._children[shard] = None
        with contextlib.suppress(OSError):
            child.conn.close()

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
        self._primes[self._shard_of(conversation_id)].append(
            (conversation_id, [message_fields(m) for m in history])
        )

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the child processes: ask them to exit, wait up to ``timeout_s`` each, then terminate (and
        kill one that does not end)."""
        for shard, child in enumerate(self._children):
            self._children[shard] = None
            if child is not None:
                child.close(timeout_s)
