"""Budgets: what each provider spent today and this month (local time), and whether a
configured limit is reached. A provider over its limit is skipped like an open breaker
until the period ends; a request already running still finishes and is counted."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

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
        # (app, provider) → [day key, day USD, month key, month USD]
        self._spent: dict[tuple[str, str], list[Any]] = {}
        # the current periods' keys, valid until the next local midnight (strftime is slow)
        self._keys: tuple[float, float, str, str] = (0.0, -1.0, "", "")

    def _periods(self, now: float) -> tuple[str, str]:
        start, end, day, month = self._keys
        if not start <= now < end:
            day, month = day_key(now), month_key(now)
            self._keys = (now, period_end("day", now), day, month)
        return day, month

    def _totals(self, app: str, pid: str, now: float) -> tuple[float, float]:
        entry = self._spent.get((app, pid))
        if entry is None:
            return 0.0, 0.0
        day, month = self._periods(now)
        return (entry[1] if entry[0] == day else 0.0, entry[3] if entry[2] == month else 0.0)

    def restore(self, rows: Iterable[Spent]) -> None:
        """What the state file (or the fleet's Redis) says was spent; the larger figure wins."""
        for row in rows:
            self.settle(row)

    def spent(self, app: str, pid: str, period: str, now: float | None = None) -> float:
        day, month = self._totals(app, pid, self._clock() if now is None else now)
        return day if period == "day" else month

    def add(self, app: str, pid: str, usd: float, now: float | None = None) -> None:
        """Count a request's cost toward the current day and month."""
        now = self._clock() if now is None else now
        spent_day, spent_month = self._totals(app, pid, now)
        day, month = self._periods(now)
        self._spent[(app, pid)] = [day, spent_day + usd, month, spent_month + usd]

    def rows_of(self, app: str, pid: str) -> list[Spent]:
        """The provider's current day and month, to persist or share."""
        now = self._clock()
        spent_day, spent_month = self._totals(app, pid, now)
        day, month = self._periods(now)
        return [
            Spent(app, pid, "day", day, spent_day),
            Spent(app, pid, "month", month, spent_month),
        ]

    def rows(self) -> list[Spent]:
        """Every provider's spend in the current periods (to persist at shutdown)."""
        return [row for app, pid in list(self._spent) for row in self.rows_of(app, pid)]

    def settle(self, row: Spent) -> None:
        """A total from the state file or the fleet (Redis's atomic sum, which includes
        ours): taken when it is for the current period and larger than what we know."""
        now = self._clock()
        day, month = self._periods(now)
        if row.key != (day if row.period == "day" else month):
            return
        spent_day, spent_month = self._totals(row.app, row.provider, now)
        if row.period == "day":
            spent_day = max(spent_day, row.usd)
        else:
            spent_month = max(spent_month, row.usd)
        self._spent[(row.app, row.provider)] = [day, spent_day, month, spent_month]

    def blocked(
        self, app: str, pid: str, budget: Budget | None, now: float | None = None
    ) -> tuple[str, float] | None:
        """(reason, until) when a limit is reached: ``daily budget $5.00 spent``."""
        if budget is None:
            return None
        now = self._clock() if now is None else now
        spent_day, spent_month = self._totals(app, pid, now)
        if budget.monthly_usd is not None and spent_month >= budget.monthly_usd:
            return f"monthly budget ${budget.monthly_usd:.2f} spent", period_end("month", now)
        if budget.daily_usd is not None and spent_day >= budget.daily_usd:
            return f"daily budget ${budget.daily_usd:.2f} spent", period_end("day", now)
        return None
