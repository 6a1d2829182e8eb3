"""Prometheus metrics (``GET /metrics`` on the control host), made with prometheus-client.

Labels stay bounded: app, provider and a few fixed words; never a model or a session.
Each request adds to plain dictionaries; a scrape turns them into prometheus-client's metric
families, which it renders in the text format.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
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
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, float("inf"))
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")

REQUESTS_HELP = "Client requests by the provider that answered and how they ended"
ATTEMPTS_HELP = "Attempts at a provider, by result"
FAILOVERS_HELP = "Requests served by another provider after one failed"
TOKENS_HELP = "Tokens of served requests (input is uncached input)"
COST_HELP = "USD spent, for requests whose model has a known price"
STATES_HELP = "0 closed, 1 open, 2 half-open, 3 cooldown, 4 budget, 5 disabled"
FIRST_BYTE_HELP = "Time from the client's request to the serving provider's response headers"

States = Callable[[], Iterable[tuple[str, str, str]]]  # (app, provider, state label)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Metrics:
    """Counts kept in plain dictionaries on the event loop; prometheus-client's metric
    families and exposition turn them into the text format when scraped. (Its Counter and
    Histogram objects take a lock per increment: some 2 µs each, eight per request.)"""

    def __init__(self, states: States) -> None:
        self._states = states
        self._requests: dict[tuple[str, str, str], float] = {}
        self._attempts: dict[tuple[str, str, str], float] = {}
        self._failovers: dict[str, float] = {}
        self._tokens: dict[tuple[str, str, str], float] = {}
        self._cost: dict[tuple[str, str], float] = {}
        # (app, provider) → [count per bucket (not cumulative), sum]
        self._first_byte: dict[tuple[str, str], list[Any]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def finished(self, done: Finished, cost: float | None, tokens: tuple[int, ...]) -> None:
        """One client request: its attempts, outcome, tokens (TOKEN_KINDS order), cost."""
        app = done.app
        failed = False
        attempts = self._attempts
        for attempt in done.attempts:
            failed = failed or attempt.failed
            key = (app, attempt.provider, "failure" if attempt.failed else "success")
            attempts[key] = attempts.get(key, 0) + 1
        served = done.served
        if served is None:
            tried = done.attempts[-1].provider if done.attempts else "none"
            key = (app, tried, "failure" if done.attempts else "unavailable")
            self._requests[key] = self._requests.get(key, 0) + 1
            return
        status = done.attempts[-1].status if done.attempts else None
        if status is not None and status >= 400:  # the request's own error, passed on as it came
            outcome = "error"
        else:
            outcome = "failover" if failed else "success"
        key = (app, served, outcome)
        self._requests[key] = self._requests.get(key, 0) + 1
        if failed:
            self._failovers[app] = self._failovers.get(app, 0) + 1
        counts = self._tokens
        for kind, count in zip(TOKEN_KINDS, tokens, strict=True):
            if count:
                key = (app, served, kind)
                counts[key] = counts.get(key, 0) + count
        if cost:
            pair = (app, served)
            self._cost[pair] = self._cost.get(pair, 0.0) + cost
        if done.ttfb_ms is not None:
            seconds = done.ttfb_ms / 1000
            histogram = self._first_byte.get((app, served))
            if histogram is None:
                histogram = self._first_byte[(app, served)] = [[0] * (len(BUCKETS)), 0.0]
            histogram[0][bisect_left(BUCKETS, seconds)] += 1
            histogram[1] += seconds

    # --- prometheus-client's collector protocol ------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        for name, help_text, labels, values in (
            ("ccswitch_requests", REQUESTS_HELP, ["app", "provider", "outcome"], self._requests),
            ("ccswitch_attempts", ATTEMPTS_HELP, ["app", "provider", "result"], self._attempts),
            ("ccswitch_tokens", TOKENS_HELP, ["app", "provider", "kind"], self._tokens),
            ("ccswitch_cost_usd", COST_HELP, ["app", "provider"], self._cost),
        ):
            family = CounterMetricFamily(name, help_text, labels=labels)
            for key, value in values.items():
                family.add_metric(list(key), value)
            yield family
        failovers = CounterMetricFamily("ccswitch_failovers", FAILOVERS_HELP, labels=["app"])
        for app, value in self._failovers.items():
            failovers.add_metric([app], value)
        yield failovers
        states = GaugeMetricFamily(
            "ccswitch_breaker_state", STATES_HELP, labels=["app", "provider"]
        )
        for app, pid, label in self._states():
            states.add_metric([app, pid], BREAKER_STATES.get(label, 0))
        yield states
        first_byte = HistogramMetricFamily(
            "ccswitch_first_byte_seconds", FIRST_BYTE_HELP, labels=["app", "provider"]
        )
        for (app, pid), (counts, total) in self._first_byte.items():
            running, buckets = 0, []
            for bound, count in zip(BUCKETS, counts, strict=True):
                running += count
                buckets.append((_le(bound), running))
            first_byte.add_metric([app, pid], buckets, total)
        yield first_byte

    def render(self) -> bytes:
        return generate_latest(self.registry)
