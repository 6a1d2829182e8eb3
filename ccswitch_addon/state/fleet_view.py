"""What one instance knows of the fleet, as read from Redis: the breakers, each app's active
provider, the events. And the way back after a time alone (state/reachability.py): what the
instance decided without Redis is written back first, then everything is read again.

Reads raise (``redis_calls.CALL_ERRORS``); the caller decides what a failure means.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from ccswitch_addon.core.breaker import Shared, State
from ccswitch_addon.core.router import UnknownName
from ccswitch_addon.core.switch import SwitchEvent
from ccswitch_addon.state.redis_calls import RedisCalls, key

__all__ = ["EVENTS_KEPT", "KEEP_MS", "SWITCH_MIN_INTERVAL_MS", "FleetView"]

KEEP_MS = 3_600_000  # a breaker key lives this long past its last deadline, then expires
SWITCH_MIN_INTERVAL_MS = 5_000  # as SwitchManager.min_interval
EVENTS_KEPT = 50


def _stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


@dataclass(slots=True)
class _Breaker:
    """What this instance knows of a breaker beyond the local snapshot."""

    gen: int = 0
    by: str = ""
    probe_owner: str = ""  # the token holding its half-open probe lease, if any


class FleetView:
    def __init__(self, engine: Any, calls: RedisCalls, prefix: str, instance: str) -> None:
        self.engine = engine
        self.calls = calls
        self.prefix = prefix
        self.instance = instance
        self.breakers: dict[tuple[str, str], _Breaker] = {}
        self.active_gen: dict[str, int] = {}
        self.active: dict[str, str] = {}
        self.hold_until: dict[str, float] = {}  # no switch of the app before (local clock)
        self.last_id = "0-0"
        # Decided alone, while Redis was unreachable: written back when it is reachable again.
        self.tripped: dict[tuple[str, str], float] = {}  # breakers opened, and when
        self.decided: dict[str, SwitchEvent] = {}  # switches announced
        self.adopting = False  # changes made here are the fleet's, not this instance's own
        self.wake = asyncio.Event()  # set on every adopted breaker: held requests look again

    def keys(self, app: str, pid: str) -> list[str]:
        return [
            key(self.prefix, "cb", app, pid),
            key(self.prefix, "inflight", app, pid),
            key(self.prefix, "events"),
        ]

    def head(self, app: str, pid: str) -> list[Any]:
        return [self.instance, key(self.prefix, "channel"), app, pid]

    # --- adopting Redis's view ----------------------------------------------------------

    def adopt(self, app: str, pid: str, b: dict[str, Any], now_ms: float, force: bool) -> None:
        known = self.breakers.setdefault((app, pid), _Breaker())
        gen = int(float(b.get("gen") or 0))
        if gen < known.gen and not force:
            return  # older than what this instance has seen
        try:
            breaker = self.engine.router.breaker(app, pid)
        except UnknownName:
            return
        known.gen, known.by = gen, str(b.get("by") or "")
        known.probe_owner = str(b.get("probe_owner") or "")
        state = State(b.get("state") or "closed")
        open_until = float(b.get("open_until") or 0)
        if state is State.OPEN and open_until <= now_ms:
            state = State.HALF_OPEN  # Redis moves it at the next acquire; the same to us
        probe_until = float(b.get("probe_until") or 0)
        cool_until = float(b.get("cool_until") or 0)
        local = self.calls.local
        shared = Shared(
            state=state,
            open_until=local(open_until),
            cooldown_until=local(cool_until) if cool_until > now_ms else 0.0,
            cooldown_reason=str(b.get("cool_reason") or "") or None,
            consecutive=int(float(b.get("fails") or 0)),
            trips=int(float(b.get("trips") or 0)),
            proven=bool(int(float(b.get("proven") or 0))),
            probe_until=local(probe_until)
            if state is State.HALF_OPEN and b.get("probe_owner") and probe_until > now_ms
            else None,
        )
        self.adopting = True
        try:
            breaker.adopt(shared)
        finally:
            self.adopting = False
        self.wake.set()

    def adopt_active(self, app: str, provider: str, gen: int) -> None:
        if gen < self.active_gen.get(app, 0) or app not in self.engine.router.config.apps:
            return
        self.active_gen[app] = gen
        self.active[app] = provider
        self.engine.switches.adopt(app, provider)

    def event(self, event: dict[str, Any], announce: bool = True) -> None:
        if event.get("type") == "breaker":
            self.adopt(event["app"], event["provider"], event["b"], float(event["ts"]), False)
            return
        if event.get("type") != "switch" or event["app"] not in self.engine.router.config.apps:
            return
        app, gen = event["app"], int(float(event["gen"]))
        if gen >= self.active_gen.get(app, 0):  # else a newer snapshot came first
            self.active_gen[app] = gen
            self.active[app] = event["to"]
            self.hold_until[app] = self.calls.local(float(event["ts"]) + SWITCH_MIN_INTERVAL_MS)
        alone = self.decided.get(app)
        if alone is not None and alone.to == event["to"]:
            # This instance announced the same switch on its own while Redis was out of
            # reach: the fleet's event is the same fact, not a second one.
            del self.decided[app]
            announce = False
        switch = SwitchEvent(
            self.calls.local(float(event["ts"])),
            app,
            event.get("from"),
            event["to"],
            f"{event.get('reason') or 'switch'}; by {event.get('by')}",
        )
        # Announced once: the stream id orders and de-duplicates events.
        self.adopting = True
        try:
            self.engine.switches.adopt(app, self.active[app], switch if announce else None)
        finally:
            self.adopting = False

    async def catch_up(self) -> None:
        """Events since the last one seen, in order, each once: pub/sub only says when."""
        while True:
            stream = key(self.prefix, "events")
            answer: Any = await self.calls.read(
                self.calls.client.xread({stream: self.last_id}, count=100)
            )
            if not answer:
                return
            entries = answer[0][1]
            for entry_id, fields in entries:
                if _stream_id(entry_id) <= _stream_id(self.last_id):
                    continue
                self.last_id = entry_id
                self.event(json.loads(fields["e"]))
            if len(entries) < 100:
                return

    async def refresh(self, force: bool = False, synced_once: bool = True) -> None:
        """Re-read every breaker and active provider of the configuration (one pipeline),
        then the events since the last one seen. ``force``: Redis's view wins whatever its
        generations say (a Redis that restarted empty starts them over)."""
        router = self.engine.router
        names = [(app.name, pid) for app in router.config.apps.values() for pid in app.providers]
        apps = list(router.config.apps)
        pipe = self.calls.client.pipeline(transaction=False)
        pipe.time()
        for app, pid in names:
            pipe.hgetall(key(self.prefix, "cb", app, pid))
        for app in apps:
            pipe.hgetall(key(self.prefix, "active", app))
        replies = await self.calls.read(pipe.execute())
        seconds, micros = replies[0]
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        self.calls.saw(now_ms)
        for (app, pid), b in zip(names, replies[1 : 1 + len(names)], strict=True):
            self.adopt(app, pid, b, now_ms, force)
        seeds = []
        for app, a in zip(apps, replies[1 + len(names) :], strict=True):
            if a:
                self.adopt_active(app, a["provider"], int(float(a["gen"])))
                continue
            # None yet, or a Redis that came back empty: generation 0 again. An instance
            # that was in sync before gives it its view, so that the failback is an event.
            self.active_gen[app] = 0
            self.hold_until.pop(app, None)
            view = self.engine.switches.active(app)
            if synced_once and view is not None and view != router.current(app):
                self.active[app] = view
                seeds.append((app, view))
            else:
                self.active.pop(app, None)
        for app, view in seeds:
            await self._seed(app, view)
        if force and not synced_once:
            await self._late_join()
        await self.catch_up()

    async def _seed(self, app: str, view: str) -> None:
        reply = await self.calls.script(
            "served",
            [key(self.prefix, "active", app), key(self.prefix, "events")],
            [
                *self.head(app, view)[:3],
                view,
                0,
                self.engine.router.current(app),
                "seeded",
                SWITCH_MIN_INTERVAL_MS,
                "seed",
                0,
            ],
        )
        active = reply["active"]
        self.adopt_active(app, active["provider"], int(float(active["gen"])))

    async def _late_join(self) -> None:
        """At start: recent switch events for the dashboard, not announced again."""
        entries: Any = await self.calls.read(
            self.calls.client.xrevrange(key(self.prefix, "events"), count=200)
        )
        if entries:
            self.last_id = entries[0][0]
        events = []
        for _, fields in reversed(entries):
            e = json.loads(fields["e"])
            if e.get("type") == "switch" and e["app"] in self.engine.router.config.apps:
                reason = f"{e.get('reason')}; by {e.get('by')}"
                when = self.calls.local(float(e["ts"]))
                events.append(SwitchEvent(when, e["app"], e["from"], e["to"], reason))
        self.engine.switches.restore({}, events[-EVENTS_KEPT:])

    # --- what this instance decided alone -------------------------------------------------

    def transition(self, app: str, pid: str, new: State, alone: bool) -> None:
        """A local breaker moved; opened by this instance's own outcomes while alone, it is
        written back later."""
        if alone and new is State.OPEN and not self.adopting:
            self.tripped[(app, pid)] = time.time()

    def switched(self, event: SwitchEvent, alone: bool) -> None:
        if alone and not self.adopting and not event.reason.startswith("manual switch"):
            # (a manual switch is this instance's own business: never the fleet's)
            self.decided[event.app] = event

    async def write_back(self, synced_once: bool) -> None:
        """Breakers this instance opened alone (unless the fleet moved on since), the ones
        it holds open that an emptied Redis lost, and the switches it announced alone."""
        router, now = self.engine.router, time.time()
        tripped = dict(self.tripped)
        for app in router.config.apps.values():
            for pid in app.providers:
                breaker = router.breaker(app.name, pid)
                state, open_until, _ = breaker.snapshot()
                at = tripped.get((app.name, pid))
                if state is not State.OPEN or (at is None and not synced_once):
                    continue  # a fresh instance's state file does not speak for the fleet
                args = [
                    *self.head(app.name, pid),
                    int((open_until - now) * 1000),
                    self.calls.redis_ms(at) if at is not None else 0,
                    breaker.trips,
                    KEEP_MS,
                ]
                keys = self.keys(app.name, pid)
                await self.calls.script("writeback", [keys[0], keys[2]], args)
        for done, at in tripped.items():  # kept until written: a failure tries again later
            if self.tripped.get(done) == at:
                del self.tripped[done]
        for app_name, event in list(self.decided.items()):
            if app_name not in router.config.apps:
                continue
            await self.calls.script(
                "served",
                [key(self.prefix, "active", app_name), key(self.prefix, "events")],
                [
                    *self.head(app_name, event.to)[:3],
                    event.to,
                    0,
                    router.current(app_name),
                    event.reason,
                    SWITCH_MIN_INTERVAL_MS,
                    "reconcile",
                    self.calls.redis_ms(event.time),
                ],
            )
