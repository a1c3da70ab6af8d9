"""A small process pool where every job has a deadline: an overdue worker is killed and replaced.

``multiprocessing.Pool`` and ``ProcessPoolExecutor`` cannot kill a worker stuck inside C code (a pathological
mesh in a geometry kernel), so one bad mesh could hang a whole build. Here each worker has its own task queue,
the parent knows which job each worker holds and since when, and kills the worker past the deadline.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

_POLL_S = 0.2


@dataclass
class JobResult:
    """Outcome of one job: ``ok`` with ``value``, or not ok with ``error`` (``"timeout ..."`` on a kill)."""

    key: str
    ok: bool
    value: Any = None
    error: str = ""


def _worker_main(fn: Callable[..., Any], tasks: Any, results: Any, worker_idx: int) -> None:
    parent = os.getppid()
    while True:
        try:
            item = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the builder died (killed): do not linger as an orphan
                return
            continue
        if item is None:
            return
        key, args = item
        try:
            results.put((worker_idx, JobResult(key, True, fn(*args))))
        except Exception as exc:  # the job boundary: any failure becomes a recorded result
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            results.put((worker_idx, JobResult(key, False, error=detail)))


class _Worker:
    def __init__(self, ctx: Any, fn: Callable[..., Any], results: Any, idx: int) -> None:
        self.tasks = ctx.Queue()
        self.process = ctx.Process(target=_worker_main, args=(fn, self.tasks, results, idx), daemon=True)
        self.process.start()
        self.job: str | None = None
        self.started = 0.0


def run_jobs(
    fn: Callable[..., Any], jobs: list[tuple[str, tuple[Any, ...]]], workers: int, timeout_s: float
) -> Iterator[JobResult]:
    """Run ``fn(*args)`` for each ``(key, args)`` in ``jobs`` across ``workers`` processes.

    Args:
        fn: a module-level function (it is pickled by name into spawned processes).
        jobs: keyed argument tuples; keys must be unique.
        workers: number of worker processes (at least 1).
        timeout_s: per-job deadline; an overdue job's worker is killed and the job fails with a timeout.

    Yields:
        One :class:`JobResult` per job, in completion order.
    """
    ctx = mp.get_context("spawn")  # no fork: parent state (threads, GL, torch) must not leak into workers
    results = ctx.Queue()
    pending = list(reversed(jobs))
    pool = [_Worker(ctx, fn, results, i) for i in range(max(1, min(workers, len(jobs))))]
    outstanding = len(jobs)
    try:
        while outstanding:
            for w in pool:
                if w.job is None and pending:
                    key, args = pending.pop()
                    w.job, w.started = key, time.monotonic()
                    w.tasks.put((key, args))
            try:
                idx, result = results.get(timeout=_POLL_S)
            except queue.Empty:
                idx, result = None, None
            # A result from a worker killed just after finishing names a job already reported: drop it.
            if result is not None and pool[idx].job == result.key:
                pool[idx].job = None
                outstanding -= 1
                yield result
            now = time.monotonic()
            for i, w in enumerate(pool):
                dead = not w.process.is_alive()
                if w.job is not None and (dead or now - w.started > timeout_s):
                    key = w.job
                    w.process.kill()
                    w.process.join()
                    pool[i] = _Worker(ctx, fn, results, i)
                    outstanding -= 1
                    reason = f"timeout after {timeout_s:g} s" if not dead else "worker process died"
                    yield JobResult(key, False, error=reason)
    finally:
        for w in pool:
            if w.process.is_alive():
                w.tasks.put(None)
        deadline = time.monotonic() + 5.0
        for w in pool:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
