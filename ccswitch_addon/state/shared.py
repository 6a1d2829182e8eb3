"""Team gateway: breakers, the active provider and switch events shared through Redis.

Several proxy instances behind one load balancer share one Redis. Redis is the authority:
every breaker transition happens in a Lua script (``state/lua/``) on Redis's clock, and is
published (channel) and kept (capped stream) by the same script. Each instance's local
CircuitBreaker stays the snapshot its router reads: it follows Redis (``follower``), is
refreshed on every event and re-read every second. Without Redis (down, slow, not yet
reached) the local breakers decide alone, as without a gateway, and what they decide is
written back when Redis answers again.

The parts: redis_calls.py (keys, scripts, timeouts), reachability.py (in sync or not, and
the one way back), fleet_view.py (reading and adopting Redis's view, writing back),
leases.py (a probe's lease, an unproven provider's admission), and this module: the
background task and the engine's hooks. The interface to the engine is narrow:
``Engine.gateway`` (admit, served, probe_ok, annotate, first_read) and ``Router.observer``
(confirmed, result, reset). Nothing here blocks the request path except ``admit`` for a
half-open probe or an unproven provider's request, and a fresh instance's first requests
until its first read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ccswitch_addon.core.breaker import Permit, State
from ccswitch_addon.core.budget import Spent
from ccswitch_addon.core.outcome import Effect, Outcome
from ccswitch_addon.core.router import UnknownName
from ccswitch_addon.core.switch import SwitchEvent
from ccswitch_addon.state.fleet_view import KEEP_MS, SWITCH_MIN_INTERVAL_MS, FleetView
from ccswitch_addon.state.leases import SKIPPED, Leases
from ccswitch_addon.state.reachability import Reachability
from ccswitch_addon.state.redis_calls import (
    CALL_ERRORS,
    TIMEOUT_SECONDS,
    RedisCalls,
    instance_id,
    key,
    mask_url,
    script_text,
)
from ccswitch_addon.state.spend import SharedSpend

__all__ = [
    "DOWN_POLICIES",
    "KEEP_MS",
    "SharedState",
    "instance_id",
    "key",
    "mask_url",
    "script_text",
]

logger = logging.getLogger(__name__)

DOWN_POLICIES = ("keep_open", "local")
RECALL_SECONDS = 0.05  # a conversation's provider, read on the request path
CONVERSATION_ID_MAX = 200  # characters of a conversation id in a key
REFRESH_SECONDS = 1.0  # full re-read: pub/sub loses messages across reconnects
# After a failed read the next try comes soon (a stall is usually short), then less often
# while Redis stays away.
RETRY_SECONDS = (0.1, REFRESH_SECONDS)
NOTICE_SECONDS = 0.1  # a call failing elsewhere starts the resync within this
FIRST_READ_SECONDS = 4 * TIMEOUT_SECONDS  # connect, subscribe, read, events: each bounded


class SharedState:
    """One instance's side of the team gateway. ``run()`` is its background task."""

    def __init__(
        self,
        engine: Any,  # ccswitch_addon.engine.Engine (not imported: the engine imports us never)
        url: str,
        prefix: str = "ccsw",
        down: str = "keep_open",
        instance: str | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        if down not in DOWN_POLICIES:
            raise ValueError(f"unreachable-Redis policy must be one of {DOWN_POLICIES}")
        self.engine = engine
        self.url = url
        self.prefix = prefix
        self.down = down
        self.instance = instance or instance_id()
        self.timeout = timeout
        self.calls = RedisCalls(url, timeout)
        self.client = self.calls.client
        self.view = FleetView(engine, self.calls, prefix, self.instance)
        self.link = Reachability(
            mask_url(url), self.instance, self._resync, self._lost, self._back, self._spawn
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self.leases = Leases(engine, self.calls, self.view, self.instance, self._call)
        self._switching: set[str] = set()
        self._tally: dict[tuple[str, str], int] = {}  # a healthy provider's successes
        self.spending = SharedSpend(self.client, prefix, timeout)  # budgets: state/spend.py
        engine.gateway = self
        engine.router.observer = self
        engine.state_listeners.append(self._transition)
        engine.switches.add_listener(self._switched)

    @property
    def reachable(self) -> bool:
        return self.link.reachable

    @property
    def synced_once(self) -> bool:
        return self.link.synced_once

    @property
    def lost_at(self) -> float | None:
        return self.link.lost_at

    # --- calls and reachability ---------------------------------------------------------

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> dict[str, Any] | None:
        """A script's JSON reply, or None when Redis failed (then the instance goes alone)."""
        try:
            reply = await self.calls.script(name, keys, args)
        except CALL_ERRORS as e:
            self.link.failed(e)
            return None
        self.link.succeeded()
        return reply

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lost(self) -> None:
        for app in self.engine.router.config.apps.values():
            for pid in app.providers:
                self.engine.router.breaker(app.name, pid).go_alone()
        if self.down == "local":
            # Trust local state: what another instance opened is not this one's knowledge.
            for (app, pid), known in self.view.breakers.items():
                try:
                    breaker = self.engine.router.breaker(app, pid)
                except UnknownName:
                    continue
                if known.by != self.instance and breaker.state is not State.CLOSED:
                    breaker.reset()

    def _back(self) -> None:
        """In sync: every breaker follows the store again (also ones a reload added)."""
        for app in self.engine.router.config.apps.values():
            for pid in app.providers:
                self.engine.router.breaker(app.name, pid).follower = True

    def _transition(self, app: str, pid: str, old: State, new: State) -> None:
        self.view.transition(app, pid, new, alone=not self.link.reachable)

    def _switched(self, event: SwitchEvent) -> None:
        self.view.switched(event, alone=not self.link.reachable)

    async def _resync(self) -> None:
        """The way back in: leases that may have been taken given up, what this instance
        decided alone written back, then everything read again (Redis's view wins)."""
        await self.leases.release_unsure()
        synced_once = self.link.synced_once
        decided = dict(self.view.decided)
        await self.view.write_back(synced_once)
        await self.view.refresh(force=True, synced_once=synced_once)
        if not synced_once:
            await self.leases.give_up_earlier_life()
        for app, event in decided.items():  # its echo, if any, was in the events just read
            if self.view.decided.get(app) is event:
                del self.view.decided[app]

    async def first_read(self) -> None:
        """Hold a fresh instance's routed requests until its first read of Redis (done or
        failed, FIRST_READ_SECONDS at most), so that they do not go to a provider the fleet
        has open."""
        await self.link.first_sync(FIRST_READ_SECONDS)

    # --- the background task --------------------------------------------------------------

    async def run(self) -> None:
        """Subscribe, sync, then follow: on each message catch up; every second re-read.
        Out of sync (a failed call here or on the request path): resync first."""
        pubsub = None
        retry = RETRY_SECONDS[0]
        try:
            while True:
                try:
                    if pubsub is None:
                        pubsub = self.client.pubsub()
                        await self.calls.read(pubsub.subscribe(key(self.prefix, "channel")))
                    if not self.link.reachable:
                        await self.link.sync()
                    retry = RETRY_SECONDS[0]
                    deadline = time.monotonic() + REFRESH_SECONDS
                    while self.link.reachable and (remaining := deadline - time.monotonic()) > 0:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=min(remaining, NOTICE_SECONDS)
                        )
                        _raise_if_cancelled()
                        if message is not None and self.link.reachable:
                            await self.view.catch_up()
                    if not self.link.reachable:
                        continue  # a call failed meanwhile: resync at once
                    await self.flush()
                    if self.link.reachable:  # else the flush failed: resync, not adopt
                        await self.view.refresh()
                    if self.link.reachable:
                        self._back()
                except CALL_ERRORS as e:
                    _raise_if_cancelled()
                    self.link.failed(e)
                    if pubsub is not None:
                        await _quietly(_closing(pubsub))
                        pubsub = None
                    await asyncio.sleep(retry)  # then try again
                    retry = min(retry * 2, RETRY_SECONDS[1])
        finally:
            if pubsub is not None:
                await _quietly(_closing(pubsub))
            await _quietly(self.leases.give_up())
            await _quietly(self.client.aclose())

    async def refresh(self, force: bool = False) -> None:
        """Re-read everything now (tests, benchmarks)."""
        await self.view.refresh(force, self.link.synced_once)

    # --- Engine.gateway ------------------------------------------------------------------

    async def admit(self, app: str, pid: str, permit: Permit) -> Permit | None:
        """A half-open probe's lease or an unproven provider's admission (leases.py); any
        other permit, or one while Redis is unreachable: the local decision stands."""
        if not self.link.reachable or not (permit.probe or permit.unconfirmed):
            return permit
        return await self.leases.admit(app, pid, permit)

    def served(self, app: str, pid: str, reason: Callable[[], str], baseline: str) -> bool:
        """A request of ``app`` was served by ``pid``: when that is not the shared active
        provider, compare-and-set it. True: the shared store decides (no local event)."""
        if not self.link.reachable:
            return False
        if pid == self.view.active.get(app, baseline) or app in self._switching:
            return True
        if time.time() < self.view.hold_until.get(app, 0.0):
            return True  # held back after the last switch; a request after it tries again
        self._switching.add(app)
        self._spawn(self._served(app, pid, reason(), baseline))
        return True

    async def _served(self, app: str, pid: str, reason: str, baseline: str) -> None:
        try:
            reply = await self._call(
                "served",
                [key(self.prefix, "active", app), key(self.prefix, "events")],
                [
                    *self.view.head(app, pid)[:3],
                    pid,
                    self.view.active_gen.get(app, 0),
                    baseline,
                    reason,
                    SWITCH_MIN_INTERVAL_MS,
                    "cas",
                    0,
                ],
            )
            if reply is not None:
                since = float(reply["active"]["since"])
                self.view.hold_until[app] = self.calls.local(since + SWITCH_MIN_INTERVAL_MS)
            if reply is not None and not reply["switched"]:
                # Read just now, atomically: newer than this instance's view, whatever the
                # generation says (a Redis that restarted empty starts over at 0).
                active = reply["active"]
                self.view.active_gen[app] = -1
                self.view.adopt_active(app, active["provider"], int(float(active["gen"])))
            # a switch comes back through the stream, like everyone else's
        finally:
            self._switching.discard(app)

    def rebase(self, app: str, pid: str) -> None:
        """A reload moved where the app's queue starts: the fleet's active provider goes to
        ``pid`` with no switch event, and this instance's view at once (a request before
        Redis answers must not compare-and-set the old one away: that would be an event)."""
        if not self.link.reachable:
            return  # alone, the local switch manager was rebased; resync takes its view
        self.view.active[app] = pid
        self._spawn(self._rebase(app, pid))

    async def _rebase(self, app: str, pid: str) -> None:
        reply = await self._call(
            "served",
            [key(self.prefix, "active", app), key(self.prefix, "events")],
            [
                *self.view.head(app, pid)[:3],
                pid,
                0,
                pid,
                "configuration changed",
                SWITCH_MIN_INTERVAL_MS,
                "rebase",
                0,
            ],
        )
        if reply is not None:
            active = reply["active"]
            self.view.adopt_active(app, active["provider"], int(float(active["gen"])))

    # --- conversation affinity, shared ------------------------------------------------------

    def remember_conversation(
        self, app: str, route: str, conversation: str, pid: str, seconds: float
    ) -> None:
        """The provider that served a conversation, for every instance; the key's time to
        live is the idle time after which the conversation lets go of it."""
        if self.reachable and seconds > 0:
            name = key(self.prefix, "conv", app, f"{route}|{conversation[:CONVERSATION_ID_MAX]}")
            value = f"{pid}\t{time.time():.3f}"
            self._spawn(_quietly(self.client.set(name, value, px=int(seconds * 1000))))

    async def recall_conversation(
        self, app: str, route: str, conversation: str
    ) -> tuple[str, float] | None:
        """(provider, when it last served) of a conversation, as the fleet knows it; None
        when unknown, idle, or Redis does not answer within RECALL_SECONDS."""
        if not self.reachable:
            return None
        name = key(self.prefix, "conv", app, f"{route}|{conversation[:CONVERSATION_ID_MAX]}")
        try:
            raw = await asyncio.wait_for(self.client.get(name), RECALL_SECONDS)
        except CALL_ERRORS:
            return None  # on the request path: no wait, no lost-Redis alarm for a slow read
        if not raw:
            return None
        pid, _, when = str(raw).partition("\t")
        try:
            return pid, float(when)
        except ValueError:
            return None

    def spend(self, rows: list[Spent], usd: float, settle: Callable[[Spent], None]) -> None:
        """Add a request's cost to the fleet's spend; ``settle`` gets the fleet's totals."""

        async def add() -> None:
            for total in await self.spending.add(rows, usd, time.time()) or ():
                settle(total)

        self._spawn(add())

    def probe_ok(self, app: str, pid: str) -> None:
        if self.link.reachable:
            self._spawn(self._reset(app, pid, "probe_ok"))

    def annotate(self, status: dict[str, Any]) -> None:
        status["instance"] = self.instance
        status["redis"] = {
            "in_use": True,
            "url": mask_url(self.url),
            "prefix": self.prefix,
            "reachable": self.link.reachable,
            "unreachable_since": self.link.lost_at,
            "when_down": self.down,
        }
        for name, app in status["apps"].items():
            for entry in app["queue"]:
                known = self.view.breakers.get((name, entry["id"]))
                entry["changed_by"] = known.by if known is not None and known.by else None

    # --- Router.observer ---------------------------------------------------------------

    def confirmed(self, app: str, pid: str, permit: Permit) -> None:
        args = self.leases.confirm_args(app, permit)
        if args is not None and self.link.reachable:
            self._spawn(self._call("confirm", self.view.keys(app, pid)[:2], args))

    def result(
        self, app: str, pid: str, outcome: Outcome, permit: Permit | None, slow: bool
    ) -> None:
        token = self.leases.done(permit)
        if not self.link.reachable or outcome is SKIPPED:
            return
        config = self.engine.router.app(app).breaker
        slow = slow and config.slow_ms > 0
        if self._healthy_success(app, pid, token, outcome, slow):
            # It changes nothing but the shared window: counted here, added in Redis once
            # a second (flush()).
            self._tally[(app, pid)] = self._tally.get((app, pid), 0) + 1
            return
        cooldown_ms = 0
        if outcome.cooldown_until is not None:
            until = self.engine.router.breaker(app, pid).cooldown_until  # capped already
            cooldown_ms = int(max(0.0, (until or 0.0) - time.time()) * 1000)
        self._spawn(
            self._record(
                app,
                pid,
                [
                    *self.view.head(app, pid),
                    token,
                    outcome.effect.value,
                    1 if outcome.opens_now else 0,
                    1 if slow else 0,
                    config.failure_threshold,
                    config.success_threshold,
                    int(config.open_seconds * 1000),
                    int(config.max_open_seconds * 1000),
                    config.error_rate_threshold,
                    config.min_requests,
                    int(config.window_seconds * 1000),
                    config.slow_rate_threshold if config.slow_ms > 0 else 0,
                    cooldown_ms,
                    outcome.cooldown_reason or "",
                    KEEP_MS,
                    random.random(),
                    key(self.prefix, "w", app, pid),
                ],
            )
        )

    def _healthy_success(
        self, app: str, pid: str, token: str, outcome: Outcome, slow: bool
    ) -> bool:
        if token or slow or outcome.effect is not Effect.SUCCESS or outcome.cooldown_until:
            return False
        breaker = self.engine.router.breaker(app, pid)
        return breaker.state is State.CLOSED and breaker.proven and not breaker.consecutive_failures

    async def flush(self) -> None:
        """Add the successes counted since the last flush to the shared windows."""
        tallies, self._tally = self._tally, {}
        for (app, pid), successes in tallies.items():
            try:
                window = self.engine.router.app(app).breaker.window_seconds
            except UnknownName:
                continue
            args = [key(self.prefix, "w", app, pid), int(window * 1000), successes]
            await self._call("tally", [key(self.prefix, "cb", app, pid)], args)

    async def _record(self, app: str, pid: str, args: list[Any]) -> None:
        reply = await self._call("record", self.view.keys(app, pid), args)
        if reply is not None and self.link.reachable:  # else the resync reads it anyway
            self.view.adopt(app, pid, reply["b"], reply["now"], False)

    def reset(self, app: str, pid: str) -> None:
        if self.link.reachable:
            self._spawn(self._reset(app, pid, "reset"))

    async def _reset(self, app: str, pid: str, mode: str) -> None:
        reply = await self._call(
            "reset", self.view.keys(app, pid), [*self.view.head(app, pid), mode, KEEP_MS]
        )
        if reply is not None and self.link.reachable:
            self.view.adopt(app, pid, reply["b"], reply["now"], False)

    async def drain(self) -> None:
        """Wait for the Redis writes scheduled so far (tests, benchmarks, shutdown)."""
        # Only the unfinished ones: on Python 3.12+ a gather of finished tasks completes
        # without yielding, so their done-callbacks (which empty the set) would never run.
        while pending := [task for task in self._tasks if not task.done()]:
            await asyncio.gather(*pending, return_exceptions=True)


def _raise_if_cancelled() -> None:
    """redis-py can swallow the CancelledError of a read it was in (a cancel that lands inside
    its connection code): a task asked to stop must stop all the same."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _quietly(awaitable: Awaitable[Any]) -> None:
    # closing a broken connection may fail in any way; there is nothing to do about it
    with contextlib.suppress(Exception):
        await asyncio.wait_for(awaitable, TIMEOUT_SECONDS)


def _closing(pubsub: Any) -> Awaitable[Any]:
    """``pubsub.aclose()``: typed in redis 8, untyped before; an ignore would be unused in one."""
    close: Callable[[], Awaitable[Any]] = pubsub.aclose
    return close()
