"""asyncio helpers the daemon's shutdown relies on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

#: How long to wait after each cancel() before cancelling again.
_RECANCEL_S = 0.05


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], timeout_s: float) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait until they have finished, cancelling again while any still runs.

    One ``cancel()`` is not enough on Python 3.11: ``asyncio.wait_for`` drops a cancellation that arrives
    in the loop iteration in which its inner future completes (CPython gh-86296, fixed in 3.12), and
    redis-py wraps every socket write in ``wait_for`` when a socket timeout is set. A task cancelled
    while it sends a Redis command then goes on as if nothing happened, e.g. a health loop that never
    ends and a shutdown that waits for it for ever. Returns the tasks still running after ``timeout_s``
    (empty when all finished); see :func:`first_failure` for the ones that failed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(_RECANCEL_S, remaining))
    return pending


def first_failure(tasks: Iterable[asyncio.Task[Any]]) -> BaseException | None:
    """The exception the first of ``tasks`` that failed ended with (finished, not cancelled), or None."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            return task.exception()
    return None
