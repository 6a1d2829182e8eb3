"""Reachability alone (no Redis): one way in (a failure, logged once), one way out (any
answered call resyncs, one at a time; a failed resync stays degraded)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from ccswitch_addon.state.reachability import Reachability


class Harness:
    def __init__(self) -> None:
        self.resyncs = 0
        self.fail_next = False
        self.lost = 0
        self.back = 0
        self.tasks: list[asyncio.Task[Any]] = []
        self.link = Reachability(
            "redis://r", "me", self.resync, self.on_lost, self.on_back, self.spawn
        )

    async def resync(self) -> None:
        self.resyncs += 1
        await asyncio.sleep(0)
        if self.fail_next:
            self.fail_next = False
            raise TimeoutError

    def on_lost(self) -> None:
        self.lost += 1

    def on_back(self) -> None:
        self.back += 1

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(coro))

    async def settle(self) -> None:
        await asyncio.gather(*self.tasks)
        self.tasks.clear()


async def test_one_way_in_and_one_way_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    h = Harness()
    await h.link.sync()  # the first sync
    assert h.link.reachable
    assert "team gateway on Redis redis://r as instance me" in caplog.text
    h.link.failed(TimeoutError())
    h.link.failed(ConnectionError())  # already degraded: no second warning
    assert not h.link.reachable
    assert h.link.lost_at is not None
    assert (h.lost, caplog.text.count("unreachable (TimeoutError)")) == (1, 1)
    h.link.succeeded()  # an answered call: the resync starts
    h.link.succeeded()  # one at a time
    await h.settle()
    assert h.link.reachable
    assert h.resyncs == 2  # the first sync and this one
    assert caplog.text.count("reachable again; in sync") == 1
    assert h.link.lost_at is None
    h.link.succeeded()  # in sync: nothing to do
    await h.settle()
    assert h.resyncs == 2


async def test_a_failed_resync_stays_degraded_and_is_tried_again() -> None:
    h = Harness()
    await h.link.sync()
    h.link.failed(TimeoutError())
    h.fail_next = True
    h.link.succeeded()
    await h.settle()
    assert not h.link.reachable
    assert h.back == 1  # only the first sync
    h.fail_next = True
    with pytest.raises(TimeoutError):  # the background task's own try raises
        await h.link.sync()
    await h.link.sync()
    assert h.link.reachable
    assert h.back == 2


async def test_first_sync_is_waited_for_a_bounded_time() -> None:
    h = Harness()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await h.link.first_sync(0.05)  # nothing tried yet: gives up after the bound
    assert loop.time() - started >= 0.05
    h.link.failed(ConnectionError())  # the first try failed: no one waits any more
    started = loop.time()
    await h.link.first_sync(10)
    assert loop.time() - started < 1
