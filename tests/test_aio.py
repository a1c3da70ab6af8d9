"""cancel_and_wait: shutdown must end tasks even when a cancellation is lost on the way (Python 3.11)."""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis

from daemon.aio import cancel_and_wait, first_failure
from daemon.redis_server import RedisServer


async def _loses_first_cancel(started: asyncio.Event) -> None:
    """What a task looks like after asyncio.wait_for dropped its cancellation: it simply goes on."""
    started.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)
    await asyncio.sleep(3600)


async def test_a_task_that_lost_one_cancellation_is_cancelled_again() -> None:
    started = asyncio.Event()
    task = asyncio.create_task(_loses_first_cancel(started))
    await started.wait()
    # One cancel() leaves it running ...
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.2)
    assert not done
    # ... cancel_and_wait keeps cancelling until it has ended.
    assert await cancel_and_wait([task], timeout_s=10) == set()
    assert task.cancelled()


async def test_returns_the_tasks_that_did_not_end_in_time() -> None:
    give_up = asyncio.Event()

    async def refuses_until_told() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if give_up.is_set():
                    raise

    task = asyncio.create_task(refuses_until_told())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], timeout_s=0.3) == {task}
    give_up.set()
    assert await cancel_and_wait([task], timeout_s=10) == set()


async def test_first_failure_reports_an_exception_not_a_cancellation() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    failed = asyncio.create_task(fails())
    cancelled = asyncio.create_task(asyncio.sleep(3600))
    finished = asyncio.create_task(asyncio.sleep(0))
    await asyncio.wait({failed, finished})
    await cancel_and_wait([cancelled], timeout_s=10)
    assert first_failure([cancelled, finished]) is None
    error = first_failure([cancelled, finished, failed])
    assert isinstance(error, ValueError) and str(error) == "broken"


async def test_loops_of_redis_commands_all_end(redis_server: RedisServer) -> None:
    """Tasks cancelled at many different points of sending and reading real Redis commands (with a
    socket timeout, as the daemon's client has: that is where redis-py uses asyncio.wait_for)."""
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=10)
    rounds = asyncio.Event()

    async def health_like(n: int) -> None:
        while True:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(f"aio-test:{n}", mapping={"n": n})
                pipe.pexpire(f"aio-test:{n}", 5000)
                await pipe.execute()
            await client.hget(f"aio-test:{n}", "n")
            rounds.set()

    try:
        tasks = [asyncio.create_task(health_like(n)) for n in range(50)]
        await asyncio.wait_for(rounds.wait(), timeout=10)
        # Stagger the cancellations so they land at different points of the I/O.
        for task in tasks:
            await asyncio.sleep(0)
            task.cancel()
        assert await cancel_and_wait(tasks, timeout_s=20) == set()
        assert all(task.cancelled() for task in tasks)
    finally:
        await client.aclose()
