"""Whether an instance is in sync with the team gateway's Redis: one state, one way in, one
way out.

In: any failed call (a script on the request path, the background read) marks the instance
degraded, once, with one warning. Out: any successful call starts a resync (one at a time):
what the instance decided alone is written back, everything is re-read, and only then is it
in sync again, with one line saying so. Before this, only the background task's reconnect
could bring an instance back, so an instance whose own calls kept working after a short
stall stayed degraded for good.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["Reachability"]

logger = logging.getLogger("ccswitch_addon.state.shared")  # one logger for the gateway


class Reachability:
    def __init__(
        self,
        where: str,  # the Redis URL without its password
        instance: str,
        resync: Callable[[], Awaitable[None]],
        on_lost: Callable[[], None],
        on_back: Callable[[], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.where = where
        self.instance = instance
        self.reachable = False
        self.synced_once = False
        self.lost_at: float | None = None
        self._resync = resync
        self._on_lost = on_lost
        self._on_back = on_back
        self._spawn = spawn
        self._lock = asyncio.Lock()
        self._first = asyncio.Event()  # the first sync was tried (done or failed)

    def failed(self, error: BaseException) -> None:
        self._first.set()
        if not self.reachable:
            return
        self.reachable = False
        self.lost_at = time.time()
        logger.warning(
            "ccswitch: Redis %s unreachable (%s); routing on this instance's breakers until "
            "it is back",
            self.where,
            type(error).__name__,
        )
        self._on_lost()

    def succeeded(self) -> None:
        """A call answered: when degraded, resync in the background."""
        if not self.reachable and not self._lock.locked():
            self._spawn(self._quiet_sync())

    async def _quiet_sync(self) -> None:
        try:
            await self.sync()
        except Exception as e:  # any failure: still degraded, tried again on the next call
            self.failed(e)

    async def sync(self) -> None:
        """Resync unless in sync already; raises what the resync raised (still degraded)."""
        async with self._lock:
            if self.reachable:
                return
            try:
                await self._resync()
            finally:
                self._first.set()
            if self.synced_once:
                logger.warning("ccswitch: Redis %s reachable again; in sync", self.where)
            else:
                logger.info(
                    "ccswitch: team gateway on Redis %s as instance %s", self.where, self.instance
                )
            self.synced_once = True
            self.reachable = True
            self.lost_at = None
            self._on_back()

    async def first_sync(self, limit: float) -> None:
        """Until the first sync was tried, at most ``limit`` seconds."""
        if self._first.is_set():
            return
        try:
            await asyncio.wait_for(self._first.wait(), limit)
        except TimeoutError:
            return
