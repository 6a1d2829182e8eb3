"""idle: a stream's silence limit and an attempt's deadlines, by one timer each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ccswitch_addon.upstream.idle import Deadline, Silence

LIMIT = 0.2


async def chunk_after(seconds: float) -> bytes:
    await asyncio.sleep(seconds)  # the provider's pause before its next chunk
    return b"data"


async def test_chunks_within_the_limit_outlive_it_together() -> None:
    silence = Silence(LIMIT)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(6):
        assert await silence.read(chunk_after(LIMIT / 3)) == b"data"
    silence.close()
    assert loop.time() - started > LIMIT  # longer than the limit in all, never silent that long


async def test_a_read_that_waits_the_whole_limit_times_out() -> None:
    silence = Silence(LIMIT)
    loop = asyncio.get_running_loop()
    assert await silence.read(chunk_after(0.01)) == b"data"
    started = loop.time()
    with pytest.raises(TimeoutError):
        await silence.read(chunk_after(10))
    assert LIMIT * 0.9 <= loop.time() - started < LIMIT * 3
    silence.close()
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # the cancel it used is taken back


async def test_time_spent_writing_to_the_client_does_not_count() -> None:
    silence = Silence(LIMIT)
    await asyncio.sleep(LIMIT * 1.5)  # a slow client: the answer's write waits
    assert await silence.read(chunk_after(LIMIT / 2)) == b"data"
    silence.close()


async def silence_waits() -> None:
    silence = Silence(LIMIT)
    try:
        await silence.read(chunk_after(10))
    finally:
        silence.close()


async def deadline_waits() -> None:
    deadline = Deadline()
    try:
        await deadline.wait(chunk_after(10), LIMIT)
    finally:
        deadline.close()


@pytest.mark.parametrize("waits", [silence_waits, deadline_waits])
async def test_a_cancel_from_elsewhere_stays_a_cancel(
    waits: Callable[[], Coroutine[Any, Any, None]],
) -> None:
    task = asyncio.get_running_loop().create_task(waits())
    await asyncio.sleep(LIMIT / 4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_no_limit_no_timer() -> None:
    silence = Silence(None)
    assert await silence.read(chunk_after(0.01)) == b"data"
    silence.close()


async def test_each_wait_has_its_own_limit_on_one_timer() -> None:
    deadline = Deadline()
    loop = asyncio.get_running_loop()
    assert await deadline.wait(chunk_after(0.01), LIMIT) == b"data"
    armed = deadline._handle
    # a later limit keeps the timer; it fires early, finds the wait's limit moved, waits on
    assert await deadline.wait(chunk_after(LIMIT * 1.5), LIMIT * 3) == b"data"
    assert armed is not None
    assert deadline._handle is not None  # moved on when it fired: the wait had longer
    assert deadline._handle is not armed
    started = loop.time()
    with pytest.raises(TimeoutError):
        await deadline.wait(chunk_after(10), LIMIT / 2)  # an earlier one moves it
    assert LIMIT * 0.45 <= loop.time() - started < LIMIT * 2
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # the cancel it used is taken back
    assert await deadline.wait(chunk_after(0.01), None) == b"data"  # no limit
    assert await deadline.wait(chunk_after(0.01), LIMIT) == b"data"  # usable after a timeout
    deadline.close()
    assert deadline._handle is None


async def test_a_fired_timer_between_waits_cancels_nothing() -> None:
    deadline = Deadline()
    assert await deadline.wait(chunk_after(0.01), 0.05) == b"data"
    await asyncio.sleep(0.15)  # the timer fires while nothing waits
    assert await deadline.wait(chunk_after(0.01), LIMIT) == b"data"
    deadline.close()
