"""What the dashboard draws over time: breaker states as bands, and the last requests.

The breaker tells its transitions (through the engine's state listeners) and cooldowns;
the statistics hold each attempt's time, outcome and latency. This module keeps the first
for an hour and turns both into plain JSON-ready series, per provider, for one hour.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ccswitch_addon.core.breaker import State
from ccswitch_addon.core.stats import Stats

__all__ = ["BUCKET_SECONDS", "HOUR", "History", "series"]

HOUR = 3600.0
BUCKET_SECONDS = 60.0
MAX_TICKS = 500  # failure ticks per provider and hour: enough to see a storm, bounded


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))], 1)


class History:
    """Breaker transitions and cooldowns of the last hour, and the last finished requests."""

    def __init__(self, clock: Callable[[], float] = time.time, keep_requests: int = 50) -> None:
        self.clock = clock
        self.started = clock()
        self._states: dict[tuple[str, str], deque[tuple[float, str]]] = {}
        self._cooldowns: dict[tuple[str, str], deque[list[float]]] = {}
        self.requests: deque[dict[str, Any]] = deque(maxlen=keep_requests)

    # --- recording ------------------------------------------------------------------------

    def transition(self, app: str, pid: str, old: State, new: State) -> None:
        """A state listener: the breaker of ``app``/``pid`` went from ``old`` to ``new``."""
        now = self.clock()
        states = self._states.setdefault((app, pid), deque())
        states.append((now, new.value))
        while len(states) > 1 and states[1][0] < now - HOUR:
            states.popleft()  # the oldest kept one still says what held at the hour's start

    def cooldown(self, app: str, pid: str, until: float | None) -> None:
        """The provider cools down until ``until`` (None: no cooldown after all)."""
        if until is None:
            return
        now = self.clock()
        spans = self._cooldowns.setdefault((app, pid), deque())
        if spans and spans[-1][1] >= now:
            spans[-1][1] = max(spans[-1][1], until)  # extended while still cooling
        else:
            spans.append([now, until])
        while spans and spans[0][1] < now - HOUR:
            spans.popleft()

    def reset(self, app: str, pid: str) -> None:
        """A manual reset ends a cooldown now."""
        now = self.clock()
        for span in self._cooldowns.get((app, pid), ()):
            span[1] = min(span[1], now)

    def finished(self, entry: dict[str, Any]) -> None:
        """One client request, done: time, app, served, status, attempts (the chain)."""
        self.requests.append(entry)

    # --- reading ------------------------------------------------------------------------

    def bands(self, app: str, pid: str, since: float, now: float) -> list[dict[str, Any]]:
        """closed / open / half_open / cooldown spans from ``since`` (or the start) to now."""
        start = max(since, self.started)
        if start >= now:
            return []
        states = list(self._states.get((app, pid), ()))
        spans = list(self._cooldowns.get((app, pid), ()))
        cuts = {start, now}
        cuts.update(t for t, _ in states if start < t < now)
        for begin, end in spans:
            cuts.update(t for t in (begin, end) if start < t < now)
        ordered = sorted(cuts)
        bands: list[dict[str, Any]] = []
        for left, right in itertools.pairwise(ordered):
            middle = (left + right) / 2
            if any(begin <= middle < end for begin, end in spans):
                state = "cooldown"
            else:
                state = next((s for t, s in reversed(states) if t <= middle), "closed")
            if bands and bands[-1]["state"] == state:
                bands[-1]["to"] = right
            else:
                bands.append({"from": left, "to": right, "state": state})
        return bands


def series(
    stats: Stats, history: History, providers: Iterable[tuple[str, str, bool]], now: float
) -> dict[str, Any]:
    """The last hour per provider: state bands, failure ticks, and per-minute requests,
    failures and p95 latency. ``providers`` are (app, provider id, disabled)."""
    since = now - HOUR
    count = int(HOUR // BUCKET_SECONDS)
    first = now - now % BUCKET_SECONDS - (count - 1) * BUCKET_SECONDS  # the last holds now
    starts = [first + i * BUCKET_SECONDS for i in range(count)]
    apps: dict[str, dict[str, Any]] = {}
    for app, pid, disabled in providers:
        samples = [s for s in stats.samples(app, pid) if s[0] >= since]
        buckets: list[list[tuple[bool, float]]] = [[] for _ in starts]
        for t, ok, ms in samples:
            index = min(len(starts) - 1, max(0, int((t - first) // BUCKET_SECONDS)))
            buckets[index].append((ok, ms))
        bands = (
            [{"from": max(since, history.started), "to": now, "state": "disabled"}]
            if disabled
            else history.bands(app, pid, since, now)
        )
        apps.setdefault(app, {})[pid] = {
            "bands": bands,
            "failures": [t for t, ok, _ in samples if not ok][-MAX_TICKS:],
            "requests": [len(b) for b in buckets],
            "failed": [sum(1 for ok, _ in b if not ok) for b in buckets],
            "p95_ms": [_percentile([ms for ok, ms in b if ok], 0.95) for b in buckets],
        }
    return {
        "now": now,
        "since": since,
        "started": history.started,
        "bucket_seconds": BUCKET_SECONDS,
        "buckets": starts,
        "apps": apps,
    }
