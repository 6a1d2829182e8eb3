"""Budgets: what each provider spent today and this month (local time), and whether a
configured limit is reached. A provider over its limit is skipped like an open breaker
until the period ends; a request already running still finishes and is counted."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ccswitch_addon.core.costconfig import Budget

__all__ = ["Budgets", "Spent", "day_key", "month_key", "period_end"]


def _local(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now)


def day_key(now: float) -> str:
    return _local(now).strftime("%Y-%m-%d")


def month_key(now: float) -> str:
    return _local(now).strftime("%Y-%m")


def period_end(period: str, now: float) -> float:
    """Epoch seconds of the next local midnight ("day") or first of a month ("month")."""
    today = _local(now).date()
    if period == "day":
        start = today + datetime.timedelta(days=1)
    else:
        start = (today.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
    # naive local midnight; fromtimestamp/timestamp agree on the local zone, DST included
    return datetime.datetime.combine(start, datetime.time()).timestamp()


@dataclass(slots=True)
class Spent:
    """USD spent by one provider in one period (``day`` 2026-12-06, ``month`` 2026-12)."""

    app: str
    provider: str
    period: str  # "day" | "month"
    key: str
    usd: float


class Budgets:
    """Spend per (app, provider) for the current day and month; older periods drop out."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # (app, provider, period) → [key, usd]
        self._spent: dict[tuple[str, str, str], list[str | float]] = {}
        # the current periods' keys, valid until the next local midnight (strftime is slow)
        self._keys: tuple[float, float, str, str] = (0.0, -1.0, "", "")

    def _periods(self, now: float) -> tuple[str, str]:
        start, end, day, month = self._keys
        if not start <= now < end:
            day, month = day_key(now), month_key(now)
            midnight = period_end("day", now)
            self._keys = (
                midnight - 86400 if midnight - now <= 86400 else now,
                midnight,
                day,
                month,
            )
        return day, month

    def _key(self, period: str, now: float) -> str:
        day, month = self._periods(now)
        return day if period == "day" else month

    def restore(self, rows: Iterable[Spent]) -> None:
        """What the state file (or the fleet's Redis) says was spent; the larger figure wins."""
        now = self._clock()
        for row in rows:
            if self._key(row.period, now) != row.key:
                continue
            slot = (row.app, row.provider, row.period)
            if self.spent(row.app, row.provider, row.period, now) < row.usd:
                self._spent[slot] = [row.key, row.usd]

    def spent(self, app: str, pid: str, period: str, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        entry = self._spent.get((app, pid, period))
        if entry is None or entry[0] != self._key(period, now):
            return 0.0
        return float(entry[1])

    def add(self, app: str, pid: str, usd: float, now: float | None = None) -> list[Spent]:
        """Count a request's cost; returns the period totals as they are now (to persist)."""
        now = self._clock() if now is None else now
        rows = []
        for period, key in zip(("day", "month"), self._periods(now), strict=True):
            total = self.spent(app, pid, period, now) + usd
            self._spent[(app, pid, period)] = [key, total]
            rows.append(Spent(app, pid, period, key, total))
        return rows

    def settle(self, row: Spent) -> None:
        """A total the fleet agreed on (Redis's atomic sum), which includes ours."""
        if self._key(row.period, self._clock()) != row.key:
            return
        if self.spent(row.app, row.provider, row.period) < row.usd:
            self._spent[(row.app, row.provider, row.period)] = [row.key, row.usd]

    def blocked(
        self, app: str, pid: str, budget: Budget | None, now: float | None = None
    ) -> tuple[str, float] | None:
        """(reason, until) when a limit is reached: ``daily budget $5.00 spent``."""
        if budget is None:
            return None
        now = self._clock() if now is None else now
        for period, word, limit in (
            ("month", "monthly", budget.monthly_usd),
            ("day", "daily", budget.daily_usd),
        ):
            if limit is not None and self.spent(app, pid, period, now) >= limit:
                return f"{word} budget ${limit:.2f} spent", period_end(period, now)
        return None

    def rows(self) -> list[Spent]:
        """Every provider's spend in the current periods (to persist at shutdown)."""
        now = self._clock()
        return [
            Spent(app, pid, period, str(key), float(usd))
            for (app, pid, period), (key, usd) in self._spent.items()
            if key == self._key(period, now)
        ]

    def forget(self, keep: Callable[[str, str], bool]) -> None:
        """Drop providers a reload removed."""
        for slot in [s for s in self._spent if not keep(s[0], s[1])]:
            del self._spent[slot]
