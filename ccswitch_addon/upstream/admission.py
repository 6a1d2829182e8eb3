"""Waiting at an unproven provider: a burst waits for its first answers instead of piling on."""

from __future__ import annotations

import asyncio
import contextlib
import time

from ccswitch_addon.core.breaker import Permit
from ccswitch_addon.core.router import Router, UnknownName

__all__ = ["HOLD_SECONDS", "Admission"]

# How long a request waits for an unproven provider's first answers (see
# CircuitBreaker.held) before it is sent there anyway.
HOLD_SECONDS = 2.0


class Admission:
    def __init__(self, router: Router) -> None:
        self.router = router
        self._answered: dict[tuple[str, str], asyncio.Event] = {}

    async def acquire(self, app: str, pid: str) -> Permit | None:
        """A permit for the provider, waiting while it is held: unproven, with as many
        requests out as it may have unanswered. One of their answers either proves it or
        trips it (then None: the next provider's turn); after HOLD_SECONDS it gets the
        request anyway."""
        router = self.router
        try:
            permit = router.acquire(app, pid)
            if permit is not None or not router.held(app, pid):
                return permit
            deadline = time.monotonic() + HOLD_SECONDS
            while router.held(app, pid):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return router.acquire(app, pid, hold=False)
                answered = self._answered.setdefault((app, pid), asyncio.Event())
                # Not wait_for: on 3.11 it returns the result when a cancellation lands as the
                # wait completes, and a client that left would get the permit.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await answered.wait()
            return router.acquire(app, pid)
        except UnknownName:  # a reload removed it while the request waited
            return None

    def wake(self, app: str, pid: str) -> None:
        """An answer came from this provider, or its state changed: held requests look again."""
        answered = self._answered.pop((app, pid), None)
        if answered is not None:
            answered.set()
