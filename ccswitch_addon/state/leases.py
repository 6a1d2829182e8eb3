"""The fleet's leave for one request: a half-open probe's lease, or a place among an unproven
provider's unanswered requests, each held by the request's token in Redis.

A lease must not outlive its request. It is taken with the request's own deadline; an
acquire that Redis runs after its caller gave up (a stall) takes nothing; one that timed out
here is released once Redis answers again (the release is idempotent); a stopping instance
gives its leases back, and a restarted one those of its earlier run.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ccswitch_addon.core.breaker import Permit
from ccswitch_addon.core.outcome import Effect, Outcome
from ccswitch_addon.state.fleet_view import KEEP_MS, FleetView
from ccswitch_addon.state.redis_calls import RedisCalls

__all__ = ["HOLD_SECONDS", "INFLIGHT_MS", "PROBE_MARGIN_SECONDS", "SKIPPED", "Leases"]

PROBE_MARGIN_SECONDS = 5.0  # a probe's lease: its request's own deadline plus this
INFLIGHT_MS = 120_000  # an unproven provider's unanswered request counts this long at most
HOLD_SECONDS = 2.0  # as attempts.HOLD_SECONDS: wait for an unproven provider's answers
HOLD_POLL_SECONDS = 0.05

SKIPPED = Outcome(Effect.NEUTRAL, retry=True, reason="probe held by another instance")

Call = Callable[[str, list[str], list[Any]], Awaitable[dict[str, Any] | None]]


class Leases:
    def __init__(
        self, engine: Any, calls: RedisCalls, view: FleetView, instance: str, call: Call
    ) -> None:
        self.engine = engine
        self.calls = calls
        self.view = view
        self.instance = instance
        self._call = call  # a script call that answers None when Redis failed
        # Tokens name this process's life too: a restarted instance (the same host:pid, as
        # in a container) knows its earlier life's leases and gives them up.
        self.life = f"{instance}:{secrets.token_hex(4)}"
        self._serial = 0
        self._tokens: dict[int, tuple[str, str, str]] = {}  # id(permit) → app, provider, token
        # Acquires that failed here: they may have run in Redis all the same (after a
        # stall), so they are released once it answers.
        self._unsure: list[tuple[str, str, str]] = []

    def token(self, permit: Permit) -> str:
        held = self._tokens.get(id(permit))
        return held[2] if held is not None else ""

    def done(self, permit: Permit | None) -> str:
        """The permit's outcome is reported: its token, forgotten here."""
        held = self._tokens.pop(id(permit), None) if permit is not None else None
        return held[2] if held is not None else ""

    async def admit(self, app: str, pid: str, permit: Permit) -> Permit | None:
        """Ask Redis. Refused probe: the permit is handed back and None returned (next
        provider). Refused admission: wait for the provider's answers elsewhere, then go
        anyway after HOLD_SECONDS. Redis unreachable: the local decision stands."""
        self._serial += 1
        token = f"{self.life}:{self._serial}"
        self._tokens[id(permit)] = (app, pid, token)
        config = self.engine.router.app(app).breaker
        lease = (config.first_byte_seconds or config.request_seconds) + PROBE_MARGIN_SECONDS
        deadline = time.monotonic() + HOLD_SECONDS
        hold = True
        while True:
            reply = await self._call(
                "acquire",
                self.view.keys(app, pid),
                [
                    *self.view.head(app, pid),
                    token,
                    int(lease * 1000),
                    1 if hold else 0,
                    config.failure_threshold,
                    KEEP_MS,
                    INFLIGHT_MS,
                    # past this (Redis's clock, as far as known) no one waits for the answer
                    self.calls.redis_ms(time.time() + self.calls.timeout),
                ],
            )
            if reply is None:
                self._unsure.append((app, pid, token))  # it may run when a stall ends
                return permit
            if reply.get("late"):  # the clocks disagreed: nothing taken, go alone
                return permit
            if reply["ok"]:
                self.view.adopt(app, pid, reply["b"], reply["now"], False)
                return permit
            if permit.probe or reply["b"].get("state") != "closed":
                self.engine.router.record_result(app, pid, SKIPPED, permit)
                self.view.adopt(app, pid, reply["b"], reply["now"], False)
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                hold = False
                continue
            self.view.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.view.wake.wait(), min(remaining, HOLD_POLL_SECONDS))

    def confirm_args(self, app: str, permit: Permit) -> list[Any] | None:
        """The confirm script's arguments for a permit holding a token: its lease now runs
        to the end of its request."""
        token = self.token(permit)
        if not token:
            return None
        config = self.engine.router.app(app).breaker
        return [token, KEEP_MS, int((config.request_seconds + PROBE_MARGIN_SECONDS) * 1000)]

    async def release_unsure(self) -> None:
        """Raises on failure (the rest are tried again next time)."""
        while self._unsure:
            app, pid, token = self._unsure[0]
            await self.calls.script("release", self.view.keys(app, pid)[:2], [token, KEEP_MS])
            self._unsure.pop(0)

    async def give_up(self) -> None:
        """At shutdown: the leases this instance's requests hold go back to the fleet."""
        held = list(self._tokens.values())
        self._tokens.clear()
        await asyncio.gather(
            *(
                self.calls.script("release", self.view.keys(app, pid)[:2], [token, KEEP_MS])
                for app, pid, token in held
            ),
            return_exceptions=True,
        )

    async def give_up_earlier_life(self) -> None:
        """Probe leases and admissions an earlier run of this instance held when it stopped
        (a crash): its tokens start with this instance's id, not with this life's."""
        mine, now = f"{self.instance}:", f"{self.life}:"

        def earlier(token: str) -> bool:
            return token.startswith(mine) and not token.startswith(now)

        names = list(self.view.breakers)
        pipe = self.calls.client.pipeline(transaction=False)
        for app, pid in names:
            pipe.zrange(self.view.keys(app, pid)[1], 0, -1)
        inflight = await self.calls.read(pipe.execute())
        for (app, pid), tokens in zip(names, inflight, strict=True):
            known = self.view.breakers[(app, pid)]
            stale = [t for t in tokens if earlier(t)]
            if earlier(known.probe_owner):
                stale.append(known.probe_owner)
            for token in stale:
                reply = await self.calls.script(
                    "release", self.view.keys(app, pid)[:2], [token, KEEP_MS]
                )
                self.view.adopt(app, pid, reply["b"], reply["now"], False)
