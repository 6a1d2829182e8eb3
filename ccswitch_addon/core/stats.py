"""Per-provider figures over the last hour, kept in memory for the status and dashboard."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["ProviderStats", "Stats"]

HOUR = 3600.0


def _percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return round(ordered[index], 1)


class ProviderStats:
    """Outcomes of one provider: (time, ok, ms), the last hour, at most ``keep`` of them."""

    def __init__(self, keep: int = 20000) -> None:
        self._samples: deque[tuple[float, bool, float]] = deque(maxlen=keep)
        self.last_failure: float | None = None

    def add(self, now: float, ok: bool, ms: float) -> None:
        self._samples.append((now, ok, ms))
        if not ok:
            self.last_failure = now

    def samples(self, now: float) -> list[tuple[float, bool, float]]:
        """(time, ok, ms) of the last hour, oldest first."""
        cutoff = now - HOUR
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()
        return list(self._samples)

    def summary(self, now: float) -> dict[str, Any]:
        cutoff = now - HOUR
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()
        requests = len(self._samples)
        failures = sum(1 for _, ok, _ in self._samples if not ok)
        latencies = sorted(ms for _, ok, ms in self._samples if ok)
        recent = self.last_failure is not None and self.last_failure >= cutoff
        return {
            "requests": requests,
            "failures": failures,
            "success_rate": round((requests - failures) / requests, 4) if requests else None,
            "p50_ms": _percentile(latencies, 0.5),
            "p95_ms": _percentile(latencies, 0.95),
            "last_failure": self.last_failure if recent else None,
        }


class Stats:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._by_provider: dict[tuple[str, str], ProviderStats] = {}

    def add(self, app: str, provider: str, ok: bool, ms: float, now: float | None = None) -> None:
        key = (app, provider)
        stats = self._by_provider.get(key)
        if stats is None:
            stats = self._by_provider[key] = ProviderStats()
        stats.add(self._clock() if now is None else now, ok, ms)

    def samples(self, app: str, provider: str) -> list[tuple[float, bool, float]]:
        stats = self._by_provider.get((app, provider))
        return stats.samples(self._clock()) if stats is not None else []

    def summary(self, app: str, provider: str) -> dict[str, Any]:
        stats = self._by_provider.get((app, provider)) or ProviderStats()
        return stats.summary(self._clock())
