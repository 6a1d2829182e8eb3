"""The engine: router, switch manager, statistics and state file working together.

Everything the addon does that is not about mitmproxy flows lives here, so that it can be
driven and tested without a proxy: what a finished request teaches, what gets persisted,
what the status says, what switch and reset do.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from ccswitch_addon.accounting import Accounting
from ccswitch_addon.core.breaker import Permit, State
from ccswitch_addon.core.budget import Spent
from ccswitch_addon.core.config import AppConfig, Config, ProviderConfig
from ccswitch_addon.core.facts import Facts
from ccswitch_addon.core.record import Attempt, Finished
from ccswitch_addon.core.router import Router, UnknownName
from ccswitch_addon.core.stats import Stats
from ccswitch_addon.core.status import build_status
from ccswitch_addon.core.switch import SwitchEvent, SwitchManager
from ccswitch_addon.state.store import BreakerRow, RequestRow, Store
from ccswitch_addon.web.history import History
from ccswitch_addon.wire.translate import ConversationMemory

__all__ = ["Attempt", "Engine", "Finished", "Gateway"]  # Attempt, Finished: core.record

logger = logging.getLogger(__name__)


class Gateway(Protocol):
    """State shared with other instances (state/shared.py: Redis). Besides these hooks it
    is the router's observer (confirm, record_result, reset)."""

    async def admit(self, app: str, pid: str, permit: Permit) -> Permit | None: ...

    def served(self, app: str, pid: str, reason: Callable[[], str], baseline: str) -> bool: ...

    def rebase(self, app: str, pid: str) -> None: ...

    def probe_ok(self, app: str, pid: str) -> None: ...

    def annotate(self, status: dict[str, Any]) -> None: ...

    def remember_conversation(
        self, app: str, route: str, conversation: str, pid: str, seconds: float
    ) -> None: ...

    async def recall_conversation(
        self, app: str, route: str, conversation: str
    ) -> tuple[str, float] | None: ...
    async def first_read(self) -> None: ...
    def spend(self, rows: list[Spent], usd: float, settle: Callable[[Spent], None]) -> None: ...


class Engine:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self._clock = self.clock = clock
        self.router = Router(config, clock, on_state_change=self._state_changed)
        self.switches = SwitchManager(clock)
        self.switches.add_listener(self._switched)
        self.stats = Stats(clock)
        self.store: Store | None = None
        self.state_listeners: list[Callable[[str, str, State, State], None]] = []
        self._last_probe: dict[tuple[str, str], float] = {}
        self._probing: set[tuple[str, str]] = set()
        # A reload the running proxy refused: {"message", "since"}, until a good one.
        self.config_error: dict[str, Any] | None = None
        # what the status shows under "warnings" (the addon's untrusted-CA warnings)
        self.warnings: Callable[[], list[str]] = list
        self.history = History(clock)  # what the dashboard draws over the last hour
        self._failed_with: dict[tuple[str, str], str] = {}  # each provider's last failure
        self.state_listeners.append(self.history.transition)
        self.gateway: Gateway | None = None  # a team gateway's shared state, when configured
        # previous_response_id history of translated Responses requests, kept in the state file
        self.memory = ConversationMemory()
        self.memory.on_remember = self._remembered
        # what requests cost, budgets, subscription windows, metrics: accounting.py
        self.accounts = Accounting(self)
        self.router.gate = self.accounts.gate(config)

    async def admit(self, app: str, pid: str, permit: Permit | None) -> Permit | None:
        """The fleet's leave for a permit the router gave (a half-open probe, an unproven
        provider's request); without a gateway, or for a proven provider, the permit as is."""
        if permit is None or self.gateway is None:
            return permit
        return await self.gateway.admit(app, pid, permit)

    async def recall(self, app: AppConfig, facts: Facts) -> None:
        """With a team gateway: learn where the fleet last served this request's conversation
        (another instance may have served its last turn) before the router places it."""
        if self.gateway is None or not app.routing.affinity_seconds:
            return
        conversation = facts.conversation
        if conversation is None:
            return
        route = app.routing.route_for(facts) if app.routing.routes else None
        name = route.name if route is not None else ""
        found = await self.gateway.recall_conversation(app.name, name, conversation)
        if found is None:
            return
        if not name and found[1] <= self.router.let_go.get(app.name, 0.0):
            return  # served before a manual switch let go of the queue's conversations
        local = self.router.affinity.get(app.name, name, conversation)
        if local is None or local.last < found[1]:
            self.router.affinity.served(app.name, name, conversation, found[0], found[1])

    # --- state file ---------------------------------------------------------------------

    def attach_store(self, store: Store) -> None:
        """Take what a previous run knew, then persist from now on."""
        saved = store.apps()
        active: dict[str, str] = {}
        for app, (current, last_active) in saved.items():
            if app not in self.router.config.apps:
                continue
            providers = self.router.config.apps[app].providers
            if current is not None and current in providers:
                self.router.switch(app, current)
            if last_active is not None and last_active in providers:
                active[app] = last_active
        for row in store.breakers():
            try:
                self.router.breaker(row.app, row.provider).restore(
                    row.state, row.open_until, row.cooldown_until
                )
            except UnknownName:
                continue
        events = [
            SwitchEvent(t, app, from_, to, reason) for t, app, from_, to, reason in store.events()
        ]
        self.switches.restore(active, events)
        self.accounts.budgets.restore(store.spend())
        for rid, previous, items in store.conversations():
            try:
                self.memory.remember(rid, previous, json.loads(items))
            except ValueError:
                continue  # a row this version cannot read: that conversation starts over
        self.store = store

    def close(self) -> None:
        if self.store is not None:
            self.accounts.save()
            self.store.close()
            self.store = None

    # --- learning ------------------------------------------------------------------------

    def reload(self, config: Config) -> None:
        removed = set(self.router.config.apps) - set(config.apps)
        before = {name: self._first_choice(name) for name in self.router.config.apps}
        self.router.reload(config)
        self.router.gate = self.accounts.gate(config)
        self.switches.forget(removed)
        for name, first in before.items():
            now = self._first_choice(name) if name in config.apps else None
            if now is not None and now != first:
                self.switches.rebase(name, now)
                if self.gateway is not None:
                    self.gateway.rebase(name, now)
        self.config_error = None

    def _first_choice(self, app: str) -> str | None:
        """Where the app's own queue sends its next request (no route, no conversation)."""
        chosen = self.router.select_providers(app).providers
        return chosen[0].id if chosen else None

    def config_refused(self, message: str) -> None:
        """A changed providers.yaml was refused; the status shows it until a good reload."""
        since = self.config_error["since"] if self.config_error else self._clock()
        self.config_error = {"message": message, "since": since}

    def request_done(self, done: Finished) -> SwitchEvent | None:
        now = self._clock()
        for attempt in done.attempts:
            self.stats.add(done.app, attempt.provider, not attempt.failed, attempt.ms, now)
            if attempt.failed:  # what the dashboard's "why" names: the status, not a count
                self._failed_with[(done.app, attempt.provider)] = str(
                    attempt.error or attempt.status
                )
        cost = self.accounts.finished(done, now)
        done.cost_usd = cost  # for the console line
        if self.store is not None:
            last = done.attempts[-1] if done.attempts else None
            self.store.add_request(
                RequestRow(
                    time=now,
                    app=done.app,
                    provider=done.served or (last.provider if last else None),
                    model_requested=done.model_requested,
                    model_sent=done.model_sent,
                    status=last.status if last else None,
                    error=last.error if last else None,
                    attempts=len(done.attempts),
                    total_ms=done.total_ms,
                    ttfb_ms=done.ttfb_ms,
                    input_tokens=done.usage.input_tokens,
                    output_tokens=done.usage.output_tokens,
                    streaming=done.streaming,
                    route=done.route,
                    why=done.why,
                    chain=json.dumps([a.to_json() for a in done.attempts]),
                    note=done.note,
                    **self.accounts.log_fields(done.usage, cost),
                )
            )
        self.history.finished(_log_entry(done, now, cost))
        if done.served is None:
            return None
        self.router.served(done.app, done.route, done.conversation, done.served)
        if self.gateway is not None and done.conversation is not None:
            seconds = self.router.app(done.app).routing.affinity_seconds
            self.gateway.remember_conversation(
                done.app, done.route or "", done.conversation, done.served, seconds
            )
        if done.route is not None:
            # A route's queue is its own: its provider is router.route_active, never the
            # app's active provider (locally or the fleet's), and its changes make no events.
            return None
        previous = self.switches.active(done.app)
        current = self.router.current(done.app)

        def reason() -> str:  # worked out only when the active provider changes
            steps = done.before_served()
            if steps:
                return "after " + ", ".join(steps)
            if done.served == current and current != self.router.app(done.app).queue[0]:
                return "manual switch"
            return "recovered"

        if self.gateway is not None and self.gateway.served(done.app, done.served, reason, current):
            return None  # the shared store decides; its event comes back through adopt()
        event = self.switches.served(done.app, done.served, reason, baseline=current)
        if self.store is not None and previous != done.served:
            self.store.save_app(done.app, current, done.served)
        return event

    def remember_breaker(self, app: str, pid: str) -> None:
        """Persist a breaker after a change that is not a transition (a cooldown)."""
        try:
            breaker = self.router.breaker(app, pid)
        except UnknownName:
            return
        self.history.cooldown(app, pid, breaker.cooldown_until)
        if self.store is None:
            return
        state, open_until, cooldown_until = breaker.snapshot()
        self.store.save_breaker(BreakerRow(app, pid, state, open_until, cooldown_until))

    def _state_changed(self, app: str, pid: str, old: State, new: State) -> None:
        logger.info("ccswitch breaker %s:%s %s → %s", app, pid, old.value, new.value)
        for listener in self.state_listeners:
            listener(app, pid, old, new)
        if self.store is not None:
            breaker = self.router.breaker(app, pid)
            _, open_until, cooldown_until = breaker.snapshot()
            self.store.save_breaker(BreakerRow(app, pid, new, open_until, cooldown_until))

    def _remembered(self, rid: str, previous: str | None, items: list[Any]) -> None:
        if self.store is not None:
            self.store.save_turn(rid, previous, json.dumps(items, separators=(",", ":")))

    def _switched(self, event: SwitchEvent) -> None:
        if self.store is not None:
            self.store.add_event(event.time, event.app, event.from_, event.to, event.reason)

    # --- active probes ----------------------------------------------------------------------

    def probes_due(self) -> list[tuple[AppConfig, ProviderConfig]]:
        """Open providers with a probe whose interval has passed; one probe each at a time."""
        now = self._clock()
        due = []
        for app in self.router.config.apps.values():
            for provider in app.providers.values():
                key = (app.name, provider.id)
                if provider.probe is None or provider.disabled or key in self._probing:
                    continue
                breaker = self.router.breaker(app.name, provider.id)
                if breaker.state is not State.OPEN or breaker.cooldown_until is not None:
                    continue
                every = max(provider.probe.interval_seconds, app.breaker.open_seconds)
                if now - self._last_probe.get(key, float("-inf")) < every:
                    continue
                self._last_probe[key] = now
                self._probing.add(key)
                due.append((app, provider))
        return due

    def probe_done(self, app: str, pid: str, ok: bool, detail: str) -> None:
        """A probe came back: success moves an open breaker to half_open for a real request."""
        self._probing.discard((app, pid))
        try:
            breaker = self.router.breaker(app, pid)
        except UnknownName:
            return
        if ok:
            breaker.probe_succeeded()
            if self.gateway is not None:
                self.gateway.probe_ok(app, pid)
        logger.info("ccswitch probe %s:%s %s (%s)", app, pid, "ok" if ok else "failed", detail)

    # --- control ----------------------------------------------------------------------------

    def switch(self, app: str, pid: str, by: str = "the ccswitch.switch command") -> str | None:
        """Make pid the current provider of app, recorded as an event naming ``by``.

        Returns a note when the provider cannot take requests right now (open, cooling down).
        """
        before = self.router.current(app)
        self.router.switch(app, pid)
        if before != pid:
            self.switches.manual(app, before, pid, by)
        if self.store is not None:
            self.store.save_app(app, pid, self.switches.active(app))
        breaker = self.router.breaker(app, pid)
        note = self.accounts.switch_note(app, pid)
        if note is not None:
            return note
        if self.router.app(app).failover and breaker.label() in ("open", "cooldown"):
            reopens = breaker.reopens_at()
            when = f" for {max(0, int((reopens or 0) - self._clock() + 0.999))}s" if reopens else ""
            return f"{pid} is {breaker.label()}{when}; until then the queue's next provider serves"
        return None

    def reset(self, app: str, pid: str) -> None:
        self.router.reset(app, pid)
        self.history.reset(app, pid)
        self.remember_breaker(app, pid)

    def status(self) -> dict[str, Any]:
        status = build_status(self.router, self.switches)
        for name, app in status["apps"].items():
            for entry in app["queue"]:
                entry.update(self.stats.summary(name, entry["id"]))
                self.accounts.annotate(name, entry)
                entry["health"] = _health(entry)
                if entry.get("last_failure"):
                    entry["last_failure_reason"] = self._failed_with.get((name, entry["id"]))
        status["state_file"] = str(self.store.path) if self.store else None
        status["config_error"] = self.config_error
        status["warnings"] = self.warnings()
        if self.gateway is not None:
            self.gateway.annotate(status)
        return status


def _health(entry: dict[str, Any]) -> str:
    """The dashboard badge: red open or cooling, yellow recent failures or probing, else green."""
    state = entry["state"]
    if state == "disabled":
        return "grey"
    if state in ("open", "cooldown", "budget"):
        return "red"
    if state == "half_open" or entry.get("last_failure"):
        return "yellow"
    return "green"


def _log_entry(done: Finished, now: float, cost: float | None = None) -> dict[str, Any]:
    """A finished request as the dashboard's log shows it, with its attempt chain."""
    last = done.attempts[-1] if done.attempts else None
    return {
        "time": now,
        "app": done.app,
        "provider": done.served or (last.provider if last else None),
        "model_requested": done.model_requested,
        "model_sent": done.model_sent,
        "status": last.status if last else None,
        "error": last.error if last else None,
        "attempts": len(done.attempts),
        "total_ms": done.total_ms,
        "input_tokens": done.usage.input_tokens,
        "output_tokens": done.usage.output_tokens,
        "cost_usd": cost,
        "chain": [a.to_json() for a in done.attempts],
        "route": done.route,
        "why": done.why,
        "note": done.note,
    }
