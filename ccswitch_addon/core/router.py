"""Which provider serves a request: the app's queue, filtered through each provider's breaker."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ccswitch_addon.core.affinity import Affinity, place
from ccswitch_addon.core.breaker import CircuitBreaker, Permit, State
from ccswitch_addon.core.config import AppConfig, Config, Endpoint, ProviderConfig
from ccswitch_addon.core.facts import Facts
from ccswitch_addon.core.keypool import KeyPools
from ccswitch_addon.core.outcome import Outcome

__all__ = [
    "MISSING_SECONDS",
    "Match",
    "Observer",
    "Router",
    "Selection",
    "SwitchRefused",
    "UnknownName",
]

# How long "this provider has no such endpoint" (learnt from a 404) is believed.
MISSING_SECONDS = 3600.0

StateListener = Callable[[str, str, State, State], None]  # app, provider, old, new


class Observer(Protocol):
    """Told of what the router learns, after its own breakers took it (a shared store:
    state/shared.py). Synchronous, on the request path: schedule, never wait."""

    def confirmed(self, app: str, pid: str, permit: Permit) -> None: ...

    def result(
        self, app: str, pid: str, outcome: Outcome, permit: Permit | None, slow: bool
    ) -> None: ...

    def reset(self, app: str, pid: str) -> None: ...


class UnknownName(KeyError):
    """An app or provider the configuration does not have."""

    def __str__(self) -> str:
        return str(self.args[0])


class SwitchRefused(ValueError):
    """A switch to a provider that cannot take requests (a disabled one)."""


@dataclass(frozen=True, slots=True)
class Selection:
    """The providers to try for one request, in order, or why there are none."""

    app: AppConfig
    providers: tuple[ProviderConfig, ...]
    reason: str | None = None  # "none_configured" | "all_unavailable" when providers is empty
    retry_at: float | None = None  # with all_unavailable: when the first one is allowed again
    route: str | None = None  # the route whose queue this is; None: the app's queue
    why: str | None = None  # what affinity decided, for the log
    conversation: str | None = None  # the request's conversation, if it names one


@dataclass(frozen=True, slots=True)
class Match:
    """A routed request: its app and which of the app's endpoints it asks for."""

    app: AppConfig
    endpoint: Endpoint


def _pattern(path: str) -> re.Pattern[str]:
    """Whole segments: ``/v1/messages`` is not ``/v1/messagesX`` nor ``/v1/messages/x``."""
    pattern = re.escape(path).replace(re.escape("{model}"), r"[^/:]+")
    if path.endswith("/"):
        pattern += r"[^/]+(?:/[^/]+)*"
    return re.compile(pattern)


class Router:
    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.time,
        on_state_change: StateListener | None = None,
    ) -> None:
        self._clock = clock
        self._on_state_change = on_state_change
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._current: dict[str, str] = {}
        self._by_host: dict[str, tuple[AppConfig, ...]] = {}
        self._exact: dict[tuple[str, str], Match] = {}  # (app, path) of endpoints without {model}
        self._patterns: dict[str, tuple[tuple[re.Pattern[str], Match], ...]] = {}
        self._missing: dict[tuple[str, str, str], float] = {}  # (app, provider, path): until
        self.observer: Observer | None = None
        self.affinity = Affinity()  # in memory only: see core/affinity.py
        self.pools = KeyPools(clock)
        self.route_active: dict[tuple[str, str], str] = {}  # (app, route): last served by
        self.let_go: dict[str, float] = {}  # app: when a manual switch let go of its queue's
        # Providers held back for reasons outside the breaker (a spent budget, a full
        # subscription window): (app, provider, session) → (label, until when) or None.
        self.gate: Callable[[str, str, str | None], tuple[str, float] | None] | None = None
        self.config = config
        self.reload(config)

    # --- configuration ----------------------------------------------------------------

    def reload(self, config: Config) -> None:
        """Swap in a new configuration. Breakers of providers that still exist keep their state."""
        breakers: dict[tuple[str, str], CircuitBreaker] = {}
        for app in config.apps.values():
            for pid in app.providers:
                breaker = self._breakers.get((app.name, pid))
                if breaker is None:
                    breaker = CircuitBreaker(
                        app.breaker, self._clock, self._listener(app.name, pid), f"{app.name}:{pid}"
                    )
                else:
                    breaker.reconfigure(app.breaker)
                breakers[(app.name, pid)] = breaker
        by_host: dict[str, list[AppConfig]] = {}
        for app in config.apps.values():
            for host in app.hosts:
                by_host.setdefault(host, []).append(app)
        current = {
            name: pid
            for name, pid in self._current.items()
            if name in config.apps and pid in config.apps[name].providers
        }
        exact: dict[tuple[str, str], Match] = {}
        patterns: dict[str, tuple[tuple[re.Pattern[str], Match], ...]] = {}
        for app in config.apps.values():
            for endpoint in app.endpoints:
                if "{model}" not in endpoint.path and not endpoint.path.endswith("/"):
                    exact[(app.name, endpoint.path)] = Match(app, endpoint)
            patterns[app.name] = tuple(
                (_pattern(endpoint.path), Match(app, endpoint)) for endpoint in app.endpoints
            )
        missing = {
            key: until
            for key, until in self._missing.items()
            if key[0] in config.apps
            and key[1] in config.apps[key[0]].providers
            and config.apps[key[0]].providers[key[1]].base_url
            == self.config.apps[key[0]].providers[key[1]].base_url
        }
        self.config, self._breakers, self._current = config, breakers, current
        self._by_host = {host: tuple(apps) for host, apps in by_host.items()}
        self._exact, self._patterns, self._missing = exact, patterns, missing
        self.pools.reload(config)
        apps = config.apps
        self.affinity.keep(lambda app, pid: app in apps and pid in apps[app].providers)

    def _listener(self, app: str, pid: str) -> Callable[[CircuitBreaker, State, State], None]:
        def changed(_: CircuitBreaker, old: State, new: State) -> None:
            if self._on_state_change is not None:
                self._on_state_change(app, pid, old, new)

        return changed

    # --- lookups ---------------------------------------------------------------------------

    def app(self, name: str) -> AppConfig:
        try:
            return self.config.apps[name]
        except KeyError:
            known = ", ".join(self.config.apps) or "none"
            raise UnknownName(f"unknown app {name!r}; configured: {known}") from None

    def provider(self, app: str, pid: str) -> ProviderConfig:
        config = self.app(app)
        try:
            return config.providers[pid]
        except KeyError:
            known = ", ".join(config.providers)
            raise UnknownName(f"unknown provider {pid!r} for {app}; configured: {known}") from None

    def breaker(self, app: str, pid: str) -> CircuitBreaker:
        breaker = self._breakers.get((app, pid))
        if breaker is None:
            self.provider(app, pid)  # says which name is unknown
            raise UnknownName(f"no breaker for {app}:{pid}")
        return breaker

    def match(self, host: str, path: str) -> Match | None:
        """The app and endpoint this request's host and path (without the query) ask for."""
        apps = self._by_host.get(host.lower())
        if apps:
            for app in apps:
                found = self._exact.get((app.name, path))
                if found is not None:
                    return found
                for pattern, match in self._patterns[app.name]:
                    if pattern.fullmatch(path):
                        return match
        return None

    def host_app(self, host: str) -> AppConfig | None:
        """The first app routing this host, whatever the path (for the shape of an error)."""
        apps = self._by_host.get(host.lower())
        return apps[0] if apps else None

    # --- endpoints a provider lacks -----------------------------------------------------------

    def mark_missing(self, app: str, pid: str, endpoint: str) -> None:
        """The provider answered 404 for this optional endpoint: leave it out for a while."""
        self._missing[(app, pid, endpoint)] = self._clock() + MISSING_SECONDS

    def lacks(self, app: str, pid: str, endpoint: str) -> bool:
        until = self._missing.get((app, pid, endpoint))
        if until is None:
            return False
        if until <= self._clock():
            del self._missing[(app, pid, endpoint)]
            return False
        return True

    def current(self, app: str) -> str:
        """The manually chosen provider, else the head of the queue."""
        return self.current_of(self.app(app))

    def current_of(self, app: AppConfig) -> str:
        """current() for an app already looked up."""
        return self._current.get(app.name) or app.queue[0]

    # --- routing ------------------------------------------------------------------------------

    def select_providers(
        self,
        app: str,
        endpoint: str | None = None,
        facts: Facts | None = None,
        session: str | None = None,
    ) -> Selection:
        """The providers to try, in order; with ``endpoint``, not those known to lack it.

        With ``facts`` (the request's own answers) a route may take the request, and a
        conversation goes first to the provider that last served it (core/affinity.py);
        ``session`` (the conversation) is asked of the gate (budgets, subscription windows).
        """
        config = self.app(app)
        if session is None and facts is not None:
            session = facts.conversation
        routing = config.routing
        route = routing.route_for(facts) if facts is not None and routing.routes else None
        if route is not None:
            ordered = route.queue  # a manual switch moves the app's queue only
        else:
            current = self.current_of(config)
            ordered = (
                config.queue
                if current == config.queue[0]
                else (current, *(pid for pid in config.queue if pid != current))
            )
        name = route.name if route is not None else None
        if not config.failover:
            head = config.providers[ordered[0]]
            if head.disabled:
                return Selection(config, (), "none_configured", route=name)
            return Selection(config, (head,), route=name)
        chosen: list[ProviderConfig] = []
        waits: list[float] = []
        lacking = 0
        for pid in ordered:
            provider = config.providers[pid]
            if provider.disabled:
                continue
            if endpoint is not None and self._missing and self.lacks(app, pid, endpoint):
                lacking += 1
                continue
            if self.gate is not None and (held := self.gate(app, pid, session)) is not None:
                waits.append(held[1])
                continue
            breaker = self._breakers[(app, pid)]
            if breaker.available():
                chosen.append(provider)
            else:
                # A half-open provider busy with its probe is free again within moments.
                waits.append(breaker.reopens_at() or self._clock() + 1.0)
        if not chosen:
            if not waits:
                reason = "endpoint_missing" if lacking else "none_configured"
                return Selection(config, (), reason, route=name)
            return Selection(config, (), "all_unavailable", min(waits), route=name)
        # Known even with affinity off: a key pool keeps a conversation's key all the same.
        conversation = facts.conversation if facts is not None else None
        why = None
        if conversation is not None and routing.affinity_seconds > 0:
            placement = place(
                [p.id for p in chosen],
                self.affinity.get(app, name or "", conversation),
                conversation,
                routing.affinity_seconds,
                routing.failback,
                self._clock(),
                lambda pid: self._breakers[(app, pid)].label() == "closed",
            )
            why = placement.why
            if placement.first is not None and chosen[0].id != placement.first:
                first = config.providers[placement.first]
                chosen.remove(first)
                chosen.insert(0, first)
        limit = config.max_attempts
        return Selection(
            config, tuple(chosen[:limit]), route=name, why=why, conversation=conversation
        )

    def served(self, app: str, route: str | None, conversation: str | None, pid: str) -> None:
        """A request was served by pid: its route's active provider, and its conversation
        stays there (core/affinity.py)."""
        if route is not None:
            self.route_active[(app, route)] = pid
        if conversation is not None:
            self.affinity.served(app, route or "", conversation, pid, self._clock())

    def live_conversations(self, app: str) -> dict[str, int]:
        """Conversations per provider served within the app's affinity_seconds."""
        seconds = self.app(app).routing.affinity_seconds
        return self.affinity.live(app, seconds, self._clock()) if seconds else {}

    def acquire(self, app: str, pid: str, hold: bool = True) -> Permit | None:
        """A permit to send to this provider now; with failover off the breaker is not consulted.

        None for an unproven provider with its limit of unanswered requests out, unless
        ``hold`` is False: see held().
        """
        breaker = self.breaker(app, pid)
        if not self.config.apps[app].failover:
            # Still take the probe when one is due: a bypass never moves a half-open breaker,
            # so without it the status would say half_open for good after an outage.
            return breaker.acquire() or breaker.bypass()
        return breaker.acquire(hold)

    def held(self, app: str, pid: str) -> bool:
        """The provider may take a request as soon as one of those it has unanswered answers
        (or trips it): wait for that rather than skip to the next provider."""
        breaker = self._breakers.get((app, pid))
        return breaker is not None and self.app(app).failover and breaker.held()

    def confirm(self, app: str, pid: str, permit: Permit | None) -> None:
        """Response headers of a success came from this provider."""
        breaker = self._breakers.get((app, pid))
        if breaker is not None and permit is not None:
            breaker.confirm(permit)
            if self.observer is not None:
                self.observer.confirmed(app, pid, permit)

    def record_result(
        self,
        app: str,
        pid: str,
        outcome: Outcome,
        permit: Permit | None = None,
        slow: bool = False,
    ) -> None:
        breaker = self._breakers.get((app, pid))
        if breaker is None:  # the provider went away in a reload while the request was in flight
            return
        breaker.release(permit or breaker.bypass(), outcome, slow)
        if self.observer is not None:
            self.observer.result(app, pid, outcome, permit, slow)

    # --- control -----------------------------------------------------------------------------

    def switch(self, app: str, pid: str) -> None:
        """Make pid the current provider; the queue stays the fallback order behind it.

        A disabled provider is refused: the router would skip it, so the switch would say one
        thing while traffic goes elsewhere.
        """
        provider = self.provider(app, pid)
        if provider.disabled:
            raise SwitchRefused(
                f"{app} cannot switch to {pid}: it is disabled ({provider.disabled}); "
                f"{app} keeps routing to {self.current(app)}"
            )
        self._current[app] = pid
        # The user expects their next request there: conversations on the app's queue let go
        # of the provider they held; those of a route keep theirs (routes have own queues).
        self.affinity.forget(app, "")
        self.let_go[app] = self._clock()

    def reset(self, app: str, pid: str) -> None:
        self.breaker(app, pid).reset()
        pool = self.pools.get(app, pid)
        if pool is not None:
            pool.reset()
        for key in [key for key in self._missing if key[:2] == (app, pid)]:
            del self._missing[key]
        if self.observer is not None:
            self.observer.reset(app, pid)
