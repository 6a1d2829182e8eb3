"""The dashboard's hour: breaker states as bands, failures as ticks, per-minute series."""

from __future__ import annotations

from ccswitch_addon.core.breaker import State
from ccswitch_addon.core.stats import Stats
from ccswitch_addon.web.history import History, series


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_045.0  # 25 s into a minute

    def __call__(self) -> float:
        return self.now


def test_bands_follow_transitions_and_cooldowns() -> None:
    clock = Clock()
    history = History(clock)
    start = clock.now
    clock.now += 100
    history.transition("claude", "p", State.CLOSED, State.OPEN)
    clock.now += 60
    history.transition("claude", "p", State.OPEN, State.HALF_OPEN)
    clock.now += 10
    history.transition("claude", "p", State.HALF_OPEN, State.CLOSED)
    clock.now += 30
    history.cooldown("claude", "p", clock.now + 300)
    clock.now += 100
    history.reset("claude", "p")  # ends the cooldown early
    clock.now += 50
    bands = history.bands("claude", "p", clock.now - 3600, clock.now)
    assert [(b["state"], b["to"] - b["from"]) for b in bands] == [
        ("closed", 100),
        ("open", 60),
        ("half_open", 10),
        ("closed", 30),
        ("cooldown", 100),
        ("closed", 50),
    ]
    assert bands[0]["from"] == start  # nothing drawn from before the process started
    assert history.bands("claude", "other", clock.now - 3600, clock.now) == [
        {"from": start, "to": clock.now, "state": "closed"}
    ]


def test_series_counts_per_minute_and_ticks_failures() -> None:
    clock = Clock()
    history = History(clock)
    stats = Stats(clock)
    clock.now += 3 * 3600  # the samples below lie in the last hour
    stats.add("claude", "p", True, 100.0, clock.now - 10)
    stats.add("claude", "p", True, 300.0, clock.now - 8)
    stats.add("claude", "p", False, 5.0, clock.now - 5)
    stats.add("claude", "p", True, 50.0, clock.now - 2000)
    stats.add("claude", "p", False, 5.0, clock.now - 4000)  # older than the hour
    doc = series(stats, history, [("claude", "p", False), ("claude", "d", True)], clock.now)
    p = doc["apps"]["claude"]["p"]
    assert sum(p["requests"]) == 4
    assert sum(p["failed"]) == 1
    assert p["requests"][-1] == 3
    assert p["failed"][-1] == 1
    assert p["p95_ms"][-1] == 300.0
    assert p["failures"] == [clock.now - 5]
    assert len(doc["buckets"]) == len(p["requests"]) == 60
    disabled = doc["apps"]["claude"]["d"]["bands"]
    assert [b["state"] for b in disabled] == ["disabled"]


def test_finished_requests_keep_the_last_fifty() -> None:
    history = History(Clock())
    for i in range(60):
        history.finished({"time": float(i), "app": "claude"})
    assert [r["time"] for r in history.requests][:2] == [10.0, 11.0]
    assert len(history.requests) == 50
