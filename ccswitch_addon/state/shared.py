"""Team gateway: breakers, the active provider and switch events shared through Redis.

Several proxy instances behind one load balancer share one Redis. Redis is the authority:
every breaker transition happens in a Lua script (``state/lua/``) on Redis's clock, and is
published (channel) and kept (capped stream) by the same script. Each instance's local
CircuitBreaker stays the snapshot its router reads: it follows Redis (``follower``), is
refreshed on every event and re-read every second. Without Redis (down, slow, not yet
reached) the local breakers decide alone, as without a gateway.

The interface to the engine is narrow: ``Engine.gateway`` (admit, served, probe_ok,
annotate) and ``Router.observer`` (confirmed, result, reset). Nothing here blocks the
request path except ``admit`` for a half-open probe or an unproven provider's request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ccswitch_addon.core.breaker import Permit, Shared, State
from ccswitch_addon.core.budget import Spent
from ccswitch_addon.core.outcome import Effect, Outcome
from ccswitch_addon.core.router import UnknownName
from ccswitch_addon.core.switch import SwitchEvent
from ccswitch_addon.state.spend import SharedSpend

__all__ = [
    "DOWN_POLICIES",
    "SharedState",
    "instance_id",
    "key",
    "mask_url",
]

logger = logging.getLogger(__name__)

DOWN_POLICIES = ("keep_open", "local")
TIMEOUT_SECONDS = 0.25  # every Redis call; past it the instance goes on alone
REFRESH_SECONDS = 1.0  # full re-read: pub/sub loses messages across reconnects
KEEP_MS = 3_600_000  # a breaker key lives this long past its last deadline, then expires
PROBE_LEASE_MS = 120_000  # a half-open probe's lease: taken over only after this
INFLIGHT_MS = 120_000  # an unproven provider's unanswered request counts this long at most
HOLD_SECONDS = 2.0  # as attempts.HOLD_SECONDS: wait for an unproven provider's answers
HOLD_POLL_SECONDS = 0.05
SWITCH_MIN_INTERVAL_MS = 5_000  # as SwitchManager.min_interval
EVENTS_KEPT = 50

_SKIPPED = Outcome(Effect.NEUTRAL, retry=True, reason="probe held by another instance")
_RetryErrors = (RedisError, OSError, TimeoutError)


def key(prefix: str, kind: str, app: str = "", pid: str = "") -> str:
    """Every key and the channel, built here. ``{…}`` is a hash tag: one breaker's keys
    share a cluster slot.

    ``cb`` breaker hash, ``inflight`` an unproven provider's unanswered requests (sorted
    set), ``w`` the prefix of its error-rate buckets, ``active`` an app's active provider,
    ``events`` the event stream, ``channel`` the pub/sub channel.
    """
    if kind in ("cb", "inflight", "w"):
        return f"{prefix}:{{{app}:{pid}}}:{kind}" + (":" if kind == "w" else "")
    if kind == "active":
        return f"{prefix}:{{{app}}}:active"
    if kind in ("events", "channel"):
        return f"{prefix}:{kind}"
    raise ValueError(f"no such key kind: {kind}")


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def mask_url(url: str) -> str:
    """The Redis URL without its password, for logs and the status."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _script(name: str) -> str:
    lua = resources.files("ccswitch_addon.state") / "lua"
    return (lua / "common.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


def _stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


@dataclass(slots=True)
class _Breaker:
    """What this instance knows of a breaker beyond the local snapshot."""

    gen: int = 0
    by: str = ""


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
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self.scripts = {
            name: self.client.register_script(_script(name))
            for name in ("acquire", "confirm", "record", "reset", "served", "tally")
        }
        self.reachable = False
        self.synced_once = False
        self.lost_at: float | None = None
        self._breakers: dict[tuple[str, str], _Breaker] = {}
        self._active_gen: dict[str, int] = {}
        self._active: dict[str, str] = {}
        self._last_id = "0-0"
        self._tokens: dict[int, str] = {}  # id(permit) → its token in Redis
        self._serial = 0
        self._skew = 0.0  # local clock − Redis clock, seconds
        self._tasks: set[asyncio.Task[Any]] = set()
        self._switching: set[str] = set()
        self._hold_until: dict[str, float] = {}  # no switch of the app before (local clock)
        self._tally: dict[tuple[str, str], int] = {}  # a healthy provider's successes
        self._wake = asyncio.Event()
        self.spending = SharedSpend(self.client, prefix, timeout)  # budgets: state/spend.py
        engine.gateway = self
        engine.router.observer = self

    # --- time and calls ---------------------------------------------------------------

    def _local(self, redis_ms: float) -> float:
        """A Redis-clock time (ms) on this instance's clock (s)."""
        return redis_ms / 1000.0 + self._skew

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> dict[str, Any] | None:
        """A script's JSON reply, or None when Redis failed (then the instance goes alone)."""
        try:
            raw = await asyncio.wait_for(self.scripts[name](keys=keys, args=args), self.timeout)
        except _RetryErrors as e:
            self._lost(e)
            return None
        reply: dict[str, Any] = json.loads(raw)
        self._skew = time.time() - reply["now"] / 1000.0
        return reply

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lost(self, error: BaseException) -> None:
        if not self.reachable:
            return
        self.reachable = False
        self.lost_at = time.time()
        logger.warning(
            "ccswitch: Redis %s unreachable (%s); routing on this instance's breakers until "
            "it is back",
            mask_url(self.url),
            type(error).__name__,
        )
        self._follow(False)
        if self.down == "local":
            # Trust local state: what another instance opened is not this one's knowledge.
            for (app, pid), known in self._breakers.items():
                try:
                    breaker = self.engine.router.breaker(app, pid)
                except UnknownName:
                    continue
                if known.by != self.instance and breaker.state is not State.CLOSED:
                    breaker.reset()

    def _follow(self, on: bool) -> None:
        for app in self.engine.router.config.apps.values():
            for pid in app.providers:
                self.engine.router.breaker(app.name, pid).follower = on

    def _keys(self, app: str, pid: str) -> list[str]:
        return [
            key(self.prefix, "cb", app, pid),
            key(self.prefix, "inflight", app, pid),
            key(self.prefix, "events"),
        ]

    def _head(self, app: str, pid: str) -> list[Any]:
        return [self.instance, key(self.prefix, "channel"), app, pid]

    # --- adopting Redis's view ----------------------------------------------------------

    def _adopt(self, app: str, pid: str, b: dict[str, Any], now_ms: float, force: bool) -> None:
        known = self._breakers.setdefault((app, pid), _Breaker())
        gen = int(float(b.get("gen") or 0))
        if gen < known.gen and not force:
            return  # older than what this instance has seen
        try:
            breaker = self.engine.router.breaker(app, pid)
        except UnknownName:
            return
        known.gen, known.by = gen, str(b.get("by") or "")
        state = State(b.get("state") or "closed")
        open_until = float(b.get("open_until") or 0)
        if state is State.OPEN and open_until <= now_ms:
            state = State.HALF_OPEN  # Redis moves it at the next acquire; the same to us
        probe_until = float(b.get("probe_until") or 0)
        cool_until = float(b.get("cool_until") or 0)
        breaker.adopt(
            Shared(
                state=state,
                open_until=self._local(open_until),
                cooldown_until=self._local(cool_until) if cool_until > now_ms else 0.0,
                cooldown_reason=str(b.get("cool_reason") or "") or None,
                consecutive=int(float(b.get("fails") or 0)),
                trips=int(float(b.get("trips") or 0)),
                proven=bool(int(float(b.get("proven") or 0))),
                probe_until=self._local(probe_until)
                if state is State.HALF_OPEN and b.get("probe_owner") and probe_until > now_ms
                else None,
            )
        )
        self._wake.set()

    def _adopt_active(self, app: str, provider: str, gen: int) -> None:
        if gen < self._active_gen.get(app, 0) or app not in self.engine.router.config.apps:
            return
        self._active_gen[app] = gen
        self._active[app] = provider
        self.engine.switches.adopt(app, provider)

    def _event(self, event: dict[str, Any], announce: bool = True) -> None:
        if event.get("type") == "breaker":
            self._adopt(event["app"], event["provider"], event["b"], float(event["ts"]), False)
            return
        if event.get("type") != "switch" or event["app"] not in self.engine.router.config.apps:
            return
        app, gen = event["app"], int(float(event["gen"]))
        if gen >= self._active_gen.get(app, 0):  # else a newer snapshot came first
            self._active_gen[app] = gen
            self._active[app] = event["to"]
            self._hold_until[app] = self._local(float(event["ts"]) + SWITCH_MIN_INTERVAL_MS)
        switch = SwitchEvent(
            self._local(float(event["ts"])),
            app,
            event.get("from"),
            event["to"],
            f"{event.get('reason') or 'switch'}; by {event.get('by')}",
        )
        # Announced once: the stream id orders and de-duplicates events.
        self.engine.switches.adopt(app, self._active[app], switch if announce else None)

    async def _catch_up(self) -> None:
        """Events since the last one seen, in order, each once: pub/sub only says when."""
        while True:
            answer: Any = await asyncio.wait_for(
                self.client.xread({key(self.prefix, "events"): self._last_id}, count=100),
                self.timeout,
            )
            if not answer:
                return
            entries = answer[0][1]
            for entry_id, fields in entries:
                if _stream_id(entry_id) <= _stream_id(self._last_id):
                    continue
                self._last_id = entry_id
                self._event(json.loads(fields["e"]))
            if len(entries) < 100:
                return

    async def refresh(self, force: bool = False) -> None:
        """Re-read every breaker and active provider of the configuration (one pipeline),
        then the events since the last one seen."""
        router = self.engine.router
        names = [(app.name, pid) for app in router.config.apps.values() for pid in app.providers]
        apps = list(router.config.apps)
        pipe = self.client.pipeline(transaction=False)
        pipe.time()
        for app, pid in names:
            pipe.hgetall(key(self.prefix, "cb", app, pid))
        for app in apps:
            pipe.hgetall(key(self.prefix, "active", app))
        replies = await asyncio.wait_for(pipe.execute(), self.timeout)
        seconds, micros = replies[0]
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        self._skew = time.time() - now_ms / 1000.0
        for (app, pid), b in zip(names, replies[1 : 1 + len(names)], strict=True):
            self._adopt(app, pid, b, now_ms, force)
        for app, a in zip(apps, replies[1 + len(names) :], strict=True):
            if a:
                self._adopt_active(app, a["provider"], int(float(a["gen"])))
            else:  # none yet, or a Redis that came back empty: the baseline, generation 0
                self._active_gen[app] = 0
                self._active.pop(app, None)
                self._hold_until.pop(app, None)
        if force and not self.synced_once:
            await self._late_join()
        await self._catch_up()
        if self.reachable:
            self._follow(True)  # breakers a reload added

    async def _late_join(self) -> None:
        """At start: recent switch events for the dashboard, not announced again."""
        entries: Any = await asyncio.wait_for(
            self.client.xrevrange(key(self.prefix, "events"), count=200), self.timeout
        )
        if entries:
            self._last_id = entries[0][0]
        events = []
        for _, fields in reversed(entries):
            e = json.loads(fields["e"])
            if e.get("type") == "switch" and e["app"] in self.engine.router.config.apps:
                reason = f"{e.get('reason')}; by {e.get('by')}"
                events.append(
                    SwitchEvent(self._local(float(e["ts"])), e["app"], e["from"], e["to"], reason)
                )
        self.engine.switches.restore({}, events[-EVENTS_KEPT:])

    # --- the background task --------------------------------------------------------------

    async def run(self) -> None:
        """Subscribe, sync, then follow: on each message catch up; every second re-read.
        Reconnects (and re-syncs in full) after any failure."""
        pubsub = None
        try:
            while True:
                try:
                    if pubsub is None:
                        pubsub = self.client.pubsub()
                        await asyncio.wait_for(
                            pubsub.subscribe(key(self.prefix, "channel")), self.timeout
                        )
                        await self.refresh(force=True)
                        if not self.reachable:
                            self._back()
                    deadline = time.monotonic() + REFRESH_SECONDS
                    while (remaining := deadline - time.monotonic()) > 0:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=remaining
                        )
                        _raise_if_cancelled()
                        if message is not None:
                            await self._catch_up()
                    await self.flush()
                    await self.refresh()
                except _RetryErrors as e:
                    _raise_if_cancelled()
                    self._lost(e)
                    if pubsub is not None:
                        await _quietly(pubsub.aclose())  # type: ignore[no-untyped-call]
                        pubsub = None
                    await asyncio.sleep(REFRESH_SECONDS)  # then try again
        finally:
            if pubsub is not None:
                await _quietly(pubsub.aclose())  # type: ignore[no-untyped-call]
            await _quietly(self.client.aclose())

    def _back(self) -> None:
        if self.synced_once:
            logger.warning("ccswitch: Redis %s reachable again; in sync", mask_url(self.url))
        else:
            logger.info(
                "ccswitch: team gateway on Redis %s as instance %s",
                mask_url(self.url),
                self.instance,
            )
        self.synced_once = True
        self.reachable = True
        self.lost_at = None
        self._follow(True)

    # --- Engine.gateway ------------------------------------------------------------------

    async def admit(self, app: str, pid: str, permit: Permit) -> Permit | None:
        """Ask Redis for a half-open probe's lease or an unproven provider's admission.
        Refused probe: the permit is handed back and None returned (next provider). Refused
        admission: wait for the provider's answers elsewhere, then go anyway after
        HOLD_SECONDS. Redis unreachable: the local decision stands."""
        if not self.reachable or not (permit.probe or permit.unconfirmed):
            return permit
        self._serial += 1
        token = f"{self.instance}:{self._serial}"
        self._tokens[id(permit)] = token
        config = self.engine.router.app(app).breaker
        deadline = time.monotonic() + HOLD_SECONDS
        hold = True
        while True:
            reply = await self._call(
                "acquire",
                self._keys(app, pid),
                [
                    *self._head(app, pid),
                    token,
                    PROBE_LEASE_MS,
                    1 if hold else 0,
                    config.failure_threshold,
                    KEEP_MS,
                    INFLIGHT_MS,
                ],
            )
            if reply is None:
                return permit
            if reply["ok"]:
                self._adopt(app, pid, reply["b"], reply["now"], False)
                return permit
            if permit.probe or reply["b"].get("state") != "closed":
                self.engine.router.record_result(app, pid, _SKIPPED, permit)
                self._adopt(app, pid, reply["b"], reply["now"], False)
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                hold = False
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(remaining, HOLD_POLL_SECONDS))

    def served(self, app: str, pid: str, reason: Callable[[], str], baseline: str) -> bool:
        """A request of ``app`` was served by ``pid``: when that is not the shared active
        provider, compare-and-set it. True: the shared store decides (no local event)."""
        if not self.reachable:
            return False
        if pid == self._active.get(app, baseline) or app in self._switching:
            return True
        if time.time() < self._hold_until.get(app, 0.0):
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
                    self.instance,
                    key(self.prefix, "channel"),
                    app,
                    pid,
                    self._active_gen.get(app, 0),
                    baseline,
                    reason,
                    SWITCH_MIN_INTERVAL_MS,
                ],
            )
            if reply is not None:
                since = float(reply["active"]["since"])
                self._hold_until[app] = self._local(since + SWITCH_MIN_INTERVAL_MS)
            if reply is not None and not reply["switched"]:
                # Read just now, atomically: newer than this instance's view, whatever the
                # generation says (a Redis that restarted empty starts over at 0).
                active = reply["active"]
                self._active_gen[app] = -1
                self._adopt_active(app, active["provider"], int(float(active["gen"])))
            # a switch comes back through the stream, like everyone else's
        finally:
            self._switching.discard(app)

    def spend(self, rows: list[Spent], usd: float, settle: Callable[[Spent], None]) -> None:
        """Add a request's cost to the fleet's spend; ``settle`` gets the fleet's totals."""

        async def add() -> None:
            for total in await self.spending.add(rows, usd, time.time()) or ():
                settle(total)

        self._spawn(add())

    def probe_ok(self, app: str, pid: str) -> None:
        if self.reachable:
            self._spawn(self._reset(app, pid, "probe_ok"))

    def annotate(self, status: dict[str, Any]) -> None:
        status["instance"] = self.instance
        status["redis"] = {
            "in_use": True,
            "url": mask_url(self.url),
            "prefix": self.prefix,
            "reachable": self.reachable,
            "unreachable_since": self.lost_at,
            "when_down": self.down,
        }
        for name, app in status["apps"].items():
            for entry in app["queue"]:
                known = self._breakers.get((name, entry["id"]))
                entry["changed_by"] = known.by if known is not None and known.by else None

    # --- Router.observer ---------------------------------------------------------------

    def confirmed(self, app: str, pid: str, permit: Permit) -> None:
        token = self._tokens.get(id(permit))
        if token is not None and self.reachable:
            self._spawn(self._call("confirm", self._keys(app, pid)[:2], [token, KEEP_MS]))

    def result(
        self, app: str, pid: str, outcome: Outcome, permit: Permit | None, slow: bool
    ) -> None:
        token = self._tokens.pop(id(permit), "") if permit is not None else ""
        if not self.reachable or outcome is _SKIPPED:
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
                    *self._head(app, pid),
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
        reply = await self._call("record", self._keys(app, pid), args)
        if reply is not None:
            self._adopt(app, pid, reply["b"], reply["now"], False)

    def reset(self, app: str, pid: str) -> None:
        if self.reachable:
            self._spawn(self._reset(app, pid, "reset"))

    async def _reset(self, app: str, pid: str, mode: str) -> None:
        reply = await self._call(
            "reset", self._keys(app, pid), [*self._head(app, pid), mode, KEEP_MS]
        )
        if reply is not None:
            self._adopt(app, pid, reply["b"], reply["now"], False)

    async def drain(self) -> None:
        """Wait for the Redis writes scheduled so far (tests, benchmarks, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


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
