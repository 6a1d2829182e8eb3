"""What requests cost and what that holds back: pricing, budgets, subscription windows and
the metrics, beside the engine (which owns the router, switches and state file they use).

The engine hands each finished request here and asks for the router's gate, the status
fields and the note for a manual switch; everything else about money and windows stays in
this module and in core/ (prices, cost, budget, windows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ccswitch_addon.core.budget import Budgets, Spent
from ccswitch_addon.core.config import Config
from ccswitch_addon.core.cost import Pricer, tokens_of
from ccswitch_addon.core.costconfig import Budget
from ccswitch_addon.core.prices import price_table
from ccswitch_addon.core.record import Finished
from ccswitch_addon.core.router import UnknownName
from ccswitch_addon.core.switch import SwitchEvent
from ccswitch_addon.core.windows import Windows
from ccswitch_addon.web.metrics import Metrics
from ccswitch_addon.wire.usage import Usage

if TYPE_CHECKING:
    from ccswitch_addon.engine import Engine

__all__ = ["SPEND_SAVE_SECONDS", "Accounting"]

Gate = Callable[[str, str, str | None], tuple[str, float] | None]
SPEND_SAVE_SECONDS = 1.0  # a provider's spend is written at most this often (and at close)


class Accounting:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._clock = engine.clock
        price_table()  # read the shipped list now, not on the first request (a few ms)
        self.pricer = Pricer()
        self.budgets = Budgets(engine.clock)
        self.windows = Windows(engine.clock)
        self.metrics = Metrics(self._breaker_states)
        self._spend_saved: dict[tuple[str, str], float] = {}

    # --- a finished request -----------------------------------------------------------------

    def finished(self, done: Finished, now: float) -> float | None:
        """Price it, count it toward its provider's budget and the metrics; its cost."""
        tokens = tokens_of(done.usage)
        cost = None
        if done.served is not None:
            cost = self._spent(done, tokens, now)
            if done.session is not None:
                self.windows.served(done.app, done.session, done.served)
        counts = (tokens.input, tokens.output, tokens.cache_read, tokens.cache_write)
        self.metrics.finished(done, cost, counts)
        return cost

    @staticmethod
    def log_fields(usage: Usage, cost: float | None) -> dict[str, Any]:
        """The request log's columns for cost and cache tokens."""
        total = tokens_of(usage).total_input if usage.input_tokens is not None else None
        return {
            "cost_usd": cost,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "input_total_tokens": total,
        }

    def _spent(self, done: Finished, tokens: Any, now: float) -> float | None:
        assert done.served is not None
        engine = self._engine
        try:
            provider = engine.router.provider(done.app, done.served)
        except UnknownName:  # removed by a reload while the request ran
            return None
        model = done.model_sent or done.model_requested
        cost = self.pricer.cost(provider, model, done.usage, tokens)
        if not cost:
            return cost
        app, pid, budget = done.app, provider.id, provider.cost.budget
        before = self.budgets.blocked(app, pid, budget, now)
        self.budgets.add(app, pid, cost, now)
        store = engine.store
        if store is not None and now - self._spend_saved.get((app, pid), 0.0) >= SPEND_SAVE_SECONDS:
            # a row per request would double the state file's writes
            self._spend_saved[(app, pid)] = now
            for row in self.budgets.rows_of(app, pid):
                store.save_spend(row)
        if budget is not None:
            if engine.gateway is not None:
                engine.gateway.spend(self.budgets.rows_of(app, pid), cost, self._settled)
            if before is None:
                self._budget_event(app, pid, budget, now)
        return cost

    def _settled(self, row: Spent) -> None:
        """The fleet's total for a period (Redis); a limit the fleet reached is an event."""
        try:
            budget = self._engine.router.provider(row.app, row.provider).cost.budget
        except UnknownName:
            return
        before = self.budgets.blocked(row.app, row.provider, budget)
        self.budgets.settle(row)
        if before is None:
            self._budget_event(row.app, row.provider, budget, self._clock())

    def _budget_event(self, app: str, pid: str, budget: Budget | None, now: float) -> None:
        """One event when a budget is reached: the provider is skipped until the period ends."""
        blocked = self.budgets.blocked(app, pid, budget, now)
        if blocked is None:
            return
        engine = self._engine
        if pid != (engine.switches.active(app) or engine.router.current(app)):
            return  # not the provider the app's own queue is on (a route's): traffic stays
        chosen = engine.router.select_providers(app).providers
        to = chosen[0].id if chosen else "none"
        self._engine.switches.announce(SwitchEvent(now, app, pid, to, blocked[0]))

    def save(self) -> None:
        """Write every provider's spend (at close: the last second's is not written yet)."""
        store = self._engine.store
        if store is not None:
            for row in self.budgets.rows():
                store.save_spend(row)

    # --- the router's gate, provider answers -------------------------------------------------

    def gate(self, config: Config) -> Gate | None:
        """The router's gate, when some provider has a budget or a window threshold (else
        none: the router and the exchange skip the work)."""
        for app in config.apps.values():
            for provider in app.providers.values():
                if provider.cost.budget is not None or provider.cost.switch_at_utilization:
                    return self.held_back
        return None

    def held_back(self, app: str, pid: str, session: str | None) -> tuple[str, float] | None:
        """A spent budget, or a subscription window past its threshold for a new
        conversation: (label, until when)."""
        cost = self._engine.router.config.apps[app].providers[pid].cost
        if cost.budget is not None:
            blocked = self.budgets.blocked(app, pid, cost.budget)
            if blocked is not None:
                return "budget", blocked[1]
        if cost.switch_at_utilization is not None:
            until = self.windows.moves_away(app, pid, cost.switch_at_utilization, session)
            if until is not None:
                return "window", until
        return None

    def headers_seen(self, app: str, pid: str, headers: Any) -> None:
        """A provider's response headers: a subscription's unified rate-limit window; a
        ``rejected`` cools the provider until the reset."""
        observed = self.windows.observe(app, pid, headers)
        if observed is None or observed.status != "rejected":
            return
        engine = self._engine
        try:
            breaker = engine.router.breaker(app, pid)
        except UnknownName:
            return
        cap = engine.router.config.apps[app].breaker.max_cooldown_seconds
        now = self._clock()
        until = min(observed.reset or now + 60.0, now + cap)
        if breaker.cool(until, "subscription window rejected"):
            engine.remember_breaker(app, pid)

    def switch_note(self, app: str, pid: str) -> str | None:
        """What a manual switch to a provider over its budget should say."""
        engine = self._engine
        if not engine.router.app(app).failover:
            return None
        spent = self.budgets.blocked(app, pid, engine.router.provider(app, pid).cost.budget)
        if spent is None:
            return None
        return f"{pid}: {spent[0]}; until the period ends the queue's next provider serves"

    # --- status and metrics --------------------------------------------------------------------

    def annotate(self, app: str, entry: dict[str, Any]) -> None:
        """Spend, budget state and subscription windows of one status entry."""
        pid = entry["id"]
        cost = self._engine.router.config.apps[app].providers[pid].cost
        entry["spent_usd"] = {
            "day": round(self.budgets.spent(app, pid, "day"), 6),
            "month": round(self.budgets.spent(app, pid, "month"), 6),
        }
        if cost.budget is not None:
            entry["budget"] = {
                "daily_usd": cost.budget.daily_usd,
                "monthly_usd": cost.budget.monthly_usd,
            }
            blocked = self.budgets.blocked(app, pid, cost.budget)
            if blocked is not None and entry["state"] != "disabled":
                entry["state"] = "budget"
                entry["budget_reason"], entry["reopens_at"] = blocked
        windows = self.windows.status(app, pid)
        if windows is not None:
            entry["windows"] = windows
        if cost.switch_at_utilization is not None:
            entry["switch_at_utilization"] = cost.switch_at_utilization

    def _breaker_states(self) -> list[tuple[str, str, str]]:
        """(app, provider, state) for ccswitch_breaker_state."""
        router = self._engine.router
        states = []
        for name, app in router.config.apps.items():
            for pid, provider in app.providers.items():
                if provider.disabled:
                    label = "disabled"
                elif self.budgets.blocked(name, pid, provider.cost.budget):
                    label = "budget"
                else:
                    label = router.breaker(name, pid).label()
                states.append((name, pid, label))
        return states
