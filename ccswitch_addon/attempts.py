"""The attempts of a routed request: a permit (waiting at an unproven provider), the outcome
told to the breaker, and retries on the next providers through mitmproxy's replay.

With addon.py and flows.py, the part that touches mitmproxy; the decisions stay in the core.
"""

import asyncio
import contextlib
import logging
import time

from mitmproxy import ctx, http
from mitmproxy.addons.clientplayback import ReplayHandler

from ccswitch_addon.core.breaker import Permit
from ccswitch_addon.core.config import ProviderConfig
from ccswitch_addon.core.outcome import Effect, ErrorKind, Outcome, classify_error
from ccswitch_addon.core.router import UnknownName
from ccswitch_addon.engine import Attempt, Engine
from ccswitch_addon.flows import (
    Routed,
    attempt_flow,
    error_outcome,
    response_outcome,
    watch_body,
)

__all__ = ["HOLD_SECONDS", "Attempts"]

logger = logging.getLogger(__name__)

# How long a request waits for an unproven provider's first answers (see
# CircuitBreaker.held) before it is sent there anyway.
HOLD_SECONDS = 2.0


class Attempts:
    """Permits, outcomes and retries of the requests the addon routes, for one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._answered: dict[tuple[str, str], asyncio.Event] = {}  # wakes held requests
        engine.state_listeners.append(lambda app, pid, old, new: self.wake(app, pid))

    async def acquire(self, routed: Routed, provider: ProviderConfig) -> Permit | None:
        """A permit for ``provider``, waiting while it is held: unproven, with as many
        requests out as it may have unanswered. One of their answers either proves it or
        trips it (then None: the next provider's turn); after HOLD_SECONDS it gets the
        request anyway."""
        router = self.engine.router
        key = (routed.app.name, provider.id)
        try:
            permit = router.acquire(*key)
            if permit is not None or not router.held(*key):
                return permit
            deadline = time.monotonic() + HOLD_SECONDS
            while router.held(*key):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return router.acquire(*key, hold=False)
                answered = self._answered.setdefault(key, asyncio.Event())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answered.wait(), remaining)
            return router.acquire(*key)
        except UnknownName:  # a reload removed it while the request waited
            return None

    def wake(self, app: str, pid: str) -> None:
        """An answer came from this provider, or its state changed: held requests look again."""
        answered = self._answered.pop((app, pid), None)
        if answered is not None:
            answered.set()

    def record(
        self, routed: Routed, outcome: Outcome, permit: Permit | None, slow: bool = False
    ) -> None:
        assert routed.provider is not None
        app, pid = routed.app.name, routed.provider.id
        self.engine.router.record_result(app, pid, outcome, permit, slow)
        self.wake(app, pid)

    def finish(self, routed: Routed, outcome: Outcome, response: http.Response | None) -> None:
        assert routed.provider is not None
        status = response.status_code if response is not None else None
        error = (
            outcome.reason if status is None or outcome.reason not in ("ok", str(status)) else None
        )
        first_byte_ms = (
            (response.timestamp_start - routed.attempt_wall) * 1000
            if response is not None and response.timestamp_start
            else None
        )
        slow_ms = routed.app.breaker.slow_ms
        slow = bool(slow_ms and first_byte_ms is not None and first_byte_ms > slow_ms)
        routed.attempts.append(
            Attempt(
                provider=routed.provider.id,
                ms=round((time.monotonic() - routed.attempt_started) * 1000, 1),
                failed=outcome.effect is Effect.FAILURE or routed.late,
                status=status,
                error=error
                if not routed.late
                else f"first byte after "
                f"{routed.app.breaker.first_byte_seconds:g}s; {error or status}",
            )
        )
        permit, routed.permit = routed.permit, None
        if not routed.late:  # a late attempt was recorded as a timeout already
            self.record(routed, outcome, permit, slow)
        routed.late = False
        if outcome.cooldown_until is not None:
            self.engine.remember_breaker(routed.app.name, routed.provider.id)

    @staticmethod
    def start(routed: Routed) -> None:
        routed.attempt_started = time.monotonic()
        routed.attempt_wall = time.time()
        routed.late = False
        routed.awaiting = True  # until response headers or an error; _tick watches

    def first_byte_late(self, routed: Routed) -> None:
        """No response headers within first_byte_seconds: a failure, though mitmproxy waits on."""
        routed.awaiting = False
        if routed.permit is None or routed.provider is None:
            return
        permit, routed.permit = routed.permit, None
        routed.late = True
        outcome = classify_error(
            ErrorKind.TIMEOUT, f"no first byte in {routed.app.breaker.first_byte_seconds:g}s"
        )
        self.record(routed, outcome, permit)
        logger.warning("ccswitch: %s:%s %s", routed.app.name, routed.provider.id, outcome.reason)

    async def fail_over(self, flow: http.HTTPFlow, routed: Routed) -> ProviderConfig | None:
        """Send the request on to the next providers until one answers without a retryable error."""
        router = self.engine.router
        tried = {a.provider for a in routed.attempts}
        for provider in routed.candidates:
            limit = routed.app.max_attempts
            if limit is not None and len(routed.attempts) >= limit:
                break
            if provider.id in tried:
                continue
            permit = await self.acquire(routed, provider)
            if permit is None:
                label = router.breaker(routed.app.name, provider.id).label()
                routed.skipped.append(f"{provider.id}: {label}")
                continue
            routed.provider, routed.permit = provider, permit
            attempt = attempt_flow(flow, routed, provider)
            self.start(routed)
            try:
                await ReplayHandler(attempt, ctx.options).replay()
            finally:
                routed.awaiting = False
            if attempt.response is None:
                self.finish(routed, error_outcome(attempt), None)
                continue
            routed.watch = watch_body(routed.app.api, attempt.response)
            outcome = response_outcome(attempt.response, routed)
            self.finish(routed, outcome, attempt.response)
            flow.response = attempt.response  # the success, or the last error so far
            if not outcome.retry:
                return provider
        return None

    def release(self, routed: Routed) -> None:
        """Hand back a permit still held (an exception or abort on the way): never leak one."""
        permit, routed.permit = routed.permit, None
        if permit is not None and routed.provider is not None:
            self.record(routed, classify_error(ErrorKind.CLIENT_GONE), permit)
