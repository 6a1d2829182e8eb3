"""Prometheus metrics (``GET /metrics`` on the control host), made with prometheus-client.

Labels stay bounded: app, provider and a few fixed words; never a model or a session.
Each request touches only label children cached per (app, provider), so counting costs a
few dictionary lookups and lock-protected increments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ccswitch_addon.core.record import Finished

__all__ = ["BREAKER_STATES", "CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# ccswitch_breaker_state's values (the README says the same)
BREAKER_STATES = {
    "closed": 0,
    "open": 1,
    "half_open": 2,
    "cooldown": 3,
    "budget": 4,
    "disabled": 5,
}
FIRST_BYTE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")

States = Callable[[], Iterable[tuple[str, str, str]]]  # (app, provider, state label)


class _States:
    """ccswitch_breaker_state, read from the router when scraped (no bookkeeping per request)."""

    def __init__(self, states: States) -> None:
        self._states = states

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "ccswitch_breaker_state",
            "0 closed, 1 open, 2 half-open, 3 cooldown, 4 budget, 5 disabled",
            labels=["app", "provider"],
        )
        for app, pid, label in self._states():
            family.add_metric([app, pid], BREAKER_STATES.get(label, 0))
        yield family


class Metrics:
    def __init__(self, states: States) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self._requests = Counter(
            "ccswitch_requests",
            "Client requests by the provider that answered and how they ended",
            ["app", "provider", "outcome"],
            registry=registry,
        )
        self._attempts = Counter(
            "ccswitch_attempts",
            "Attempts at a provider, by result",
            ["app", "provider", "result"],
            registry=registry,
        )
        self._failovers = Counter(
            "ccswitch_failovers",
            "Requests served by another provider after one failed",
            ["app"],
            registry=registry,
        )
        self._tokens = Counter(
            "ccswitch_tokens",
            "Tokens of served requests (input is uncached input)",
            ["app", "provider", "kind"],
            registry=registry,
        )
        self._cost = Counter(
            "ccswitch_cost_usd",
            "USD spent, for requests whose model has a known price",
            ["app", "provider"],
            registry=registry,
        )
        self._first_byte = Histogram(
            "ccswitch_first_byte_seconds",
            "Time from the client's request to the serving provider's response headers",
            ["app", "provider"],
            buckets=FIRST_BYTE_BUCKETS,
            registry=registry,
        )
        registry.register(_States(states))
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def finished(self, done: Finished, cost: float | None, tokens: tuple[int, ...]) -> None:
        """One client request: its attempts, outcome, tokens (TOKEN_KINDS order), cost."""
        app = done.app
        failed = False
        for attempt in done.attempts:
            failed = failed or attempt.failed
            result = "failure" if attempt.failed else "success"
            self._child(self._attempts, app, attempt.provider, result).inc()
        served = done.served
        if served is None:
            last = done.attempts[-1].provider if done.attempts else "none"
            outcome = "failure" if done.attempts else "unavailable"
            self._child(self._requests, app, last, outcome).inc()
            return
        self._child(self._requests, app, served, "failover" if failed else "success").inc()
        if failed:
            self._child(self._failovers, app).inc()
        for kind, count in zip(TOKEN_KINDS, tokens, strict=True):
            if count:
                self._child(self._tokens, app, served, kind).inc(count)
        if cost:
            self._child(self._cost, app, served).inc(cost)
        if done.ttfb_ms is not None:
            self._child(self._first_byte, app, served).observe(done.ttfb_ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
