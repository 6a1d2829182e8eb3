"""Budgets: the request that crosses a limit, the period rolling over, a restart."""

from __future__ import annotations

import datetime
from pathlib import Path

from ccswitch_addon.core.budget import Budgets, day_key, period_end
from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.costconfig import Budget
from ccswitch_addon.core.record import Attempt, Finished
from ccswitch_addon.engine import Engine
from ccswitch_addon.state.store import Store
from ccswitch_addon.wire.usage import Usage

NOON = datetime.datetime(2026, 12, 6, 12, 0).timestamp()  # local time
CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    providers:
      primary:
        base_url: http://127.0.0.1:9
        auth: passthrough
        price: {input: 1, output: 1}
        budget: {daily_usd: 5, monthly_usd: 12}
      backup:
        base_url: http://127.0.0.1:10
        auth: passthrough
"""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def served(engine: Engine, usd: float, pid: str = "primary") -> None:
    tokens = int(usd * 1_000_000)  # $1 per million input tokens
    engine.request_done(
        Finished(
            "claude",
            pid,
            [Attempt(pid, 10.0, False, 200)],
            model_sent="m",
            usage=Usage(tokens, 0),
        )
    )


def queue(engine: Engine) -> list[str]:
    return [p.id for p in engine.router.select_providers("claude").providers]


def state(engine: Engine, pid: str = "primary") -> dict:  # type: ignore[type-arg]
    return next(e for e in engine.status()["apps"]["claude"]["queue"] if e["id"] == pid)


def test_the_request_that_crosses_the_limit_finishes_then_the_provider_is_skipped() -> None:
    clock = Clock(NOON)
    engine = Engine(parse_config(CONFIG, "providers.yaml"), clock)
    events: list = []  # type: ignore[type-arg]
    engine.switches.add_listener(events.append)
    served(engine, 4.0)
    assert queue(engine) == ["primary", "backup"]
    served(engine, 1.5)  # crosses $5: it was served and counted, the next ones go elsewhere
    assert queue(engine) == ["backup"]
    entry = state(engine)
    assert entry["state"] == "budget"
    assert entry["budget_reason"] == "daily budget $5.00 spent"
    assert entry["spent_usd"]["day"] == 5.5
    assert entry["reopens_at"] == period_end("day", NOON)
    assert [(e.from_, e.to, e.reason) for e in events] == [
        ("primary", "backup", "daily budget $5.00 spent")
    ]
    served(engine, 0.5)  # a request already running when it was crossed: no second event
    assert len(events) == 1
    served(engine, 0.01, "backup")  # the backup serving makes no switch event of its own
    assert len(events) == 1


def test_the_next_local_day_opens_it_again_until_the_month_is_spent() -> None:
    clock = Clock(NOON)
    engine = Engine(parse_config(CONFIG, "providers.yaml"), clock)
    served(engine, 5.0)
    assert queue(engine) == ["backup"]
    clock.now = period_end("day", NOON) + 1  # just after local midnight
    assert queue(engine) == ["primary", "backup"]
    assert state(engine)["spent_usd"] == {"day": 0.0, "month": 5.0}
    served(engine, 5.0)
    clock.now = period_end("day", clock.now) + 1
    served(engine, 2.0)  # the month: 12 of 12
    assert queue(engine) == ["backup"]
    assert state(engine)["budget_reason"] == "monthly budget $12.00 spent"
    assert state(engine)["reopens_at"] == datetime.datetime(2027, 1, 1).timestamp()


def test_spend_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock(NOON)
    config = parse_config(CONFIG, "providers.yaml")
    engine = Engine(config, clock)
    engine.attach_store(Store(tmp_path / "state.db", clock=clock))
    served(engine, 5.0)
    engine.close()
    again = Engine(config, clock)
    again.attach_store(Store(tmp_path / "state.db", clock=clock))
    assert queue(again) == ["backup"]
    assert state(again)["spent_usd"]["day"] == 5.0
    clock.now += 86400  # a restart on another day: yesterday's spend does not hold it back
    fresh = Engine(config, clock)
    fresh.attach_store(Store(tmp_path / "state.db", clock=clock))
    assert queue(fresh) == ["primary", "backup"]
    again.close()
    fresh.close()


def test_periods_are_local_days_and_months() -> None:
    budgets = Budgets(Clock(NOON))
    budgets.add("a", "p", 1.0)
    assert budgets.spent("a", "p", "day") == 1.0
    assert day_key(NOON) == "2026-12-06"
    end = period_end("month", NOON)
    assert datetime.datetime.fromtimestamp(end) == datetime.datetime(2027, 1, 1)
    assert budgets.blocked("a", "p", Budget(daily_usd=1.0)) == (
        "daily budget $1.00 spent",
        period_end("day", NOON),
    )
    assert budgets.blocked("a", "p", Budget(daily_usd=1.5)) is None
    assert budgets.blocked("a", "p", None) is None


def test_a_manual_switch_to_a_provider_over_budget_says_where_traffic_goes() -> None:
    engine = Engine(parse_config(CONFIG, "providers.yaml"), Clock(NOON))
    served(engine, 5.0)
    engine.switch("claude", "backup")
    note = engine.switch("claude", "primary")
    assert note == (
        "primary: daily budget $5.00 spent; until the period ends the queue's next provider serves"
    )


def test_the_router_gate_is_on_only_when_a_provider_needs_it() -> None:
    plain = CONFIG.replace("        budget: {daily_usd: 5, monthly_usd: 12}\n", "")
    engine = Engine(parse_config(plain, "providers.yaml"), Clock(NOON))
    assert engine.router.gate is None
    engine.reload(parse_config(CONFIG, "providers.yaml"))
    assert engine.router.gate is not None
    served(engine, 5.0)
    assert queue(engine) == ["backup"]
