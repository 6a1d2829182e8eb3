"""The engine: what a finished request teaches, persistence across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.outcome import ErrorKind, classify_error, classify_status
from ccswitch_addon.engine import Attempt, Engine, Finished
from ccswitch_addon.state.store import Store, open_readonly
from ccswitch_addon.wire.usage import Usage

CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    breaker: {failure_threshold: 2, open_seconds: 60}
    providers:
      primary: {base_url: "http://127.0.0.1:1", auth: passthrough}
      backup: {base_url: "http://127.0.0.1:2", auth: passthrough}
      spare: {base_url: "http://127.0.0.1:3", auth: passthrough}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def engine_with_store(path: Path, clock: Clock) -> Engine:
    engine = Engine(parse_config(CONFIG, "p.yaml", env={}), clock)
    engine.attach_store(Store(path, clock=clock))
    return engine


def open_breaker(engine: Engine, pid: str) -> None:
    permit = engine.router.acquire("claude", pid)
    assert permit is not None
    engine.router.record_result("claude", pid, classify_error(ErrorKind.CONNECT), permit)


def served_by_backup(engine: Engine) -> None:
    engine.request_done(
        Finished(
            "claude",
            "backup",
            [Attempt("primary", 5.0, True, 529), Attempt("backup", 9.0, False, 200)],
            model_requested="a",
            model_sent="b",
            total_ms=15.0,
            ttfb_ms=4.0,
            usage=Usage(100, 20),
            streaming=True,
        )
    )


def test_restart_keeps_open_breakers_and_manual_switch(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "state.db"
    engine = engine_with_store(path, clock)
    open_breaker(engine, "primary")
    engine.switch("claude", "spare")
    served_by_backup(engine)
    assert engine.store is not None
    engine.store.flush()
    engine.close()

    clock.now += 30  # still within open_seconds
    again = engine_with_store(path, clock)
    assert again.router.breaker("claude", "primary").label() == "open"
    assert again.router.current("claude") == "spare"
    assert again.switches.active("claude") == "backup"
    assert [e.to for e in again.switches.events] == ["backup"]
    assert "primary" not in [p.id for p in again.router.select_providers("claude").providers]
    again.close()

    clock.now += 60  # past the deadline: comes back closed
    third = engine_with_store(path, clock)
    assert third.router.breaker("claude", "primary").label() == "closed"
    third.close()


def test_cooldown_survives_a_restart(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "state.db"
    engine = engine_with_store(path, clock)
    permit = engine.router.acquire("claude", "backup")
    engine.router.record_result("claude", "backup", classify_status(429, "120", clock.now), permit)
    engine.remember_breaker("claude", "backup")
    engine.close()
    again = engine_with_store(path, clock)
    assert again.router.breaker("claude", "backup").label() == "cooldown"
    again.close()


def test_request_log_row(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "state.db"
    engine = engine_with_store(path, clock)
    served_by_backup(engine)
    engine.close()
    with open_readonly(path) as db:
        rows = db.execute(
            "SELECT app, provider, model_requested, model_sent, status, attempts, total_ms,"
            " ttfb_ms, input_tokens, output_tokens, streaming FROM requests"
        ).fetchall()
    assert rows == [("claude", "backup", "a", "b", 200, 2, 15.0, 4.0, 100, 20, 1)]


def test_status_has_stats_health_and_events(clock: Clock) -> None:
    engine = Engine(parse_config(CONFIG, "p.yaml", env={}), clock)
    served_by_backup(engine)
    status = engine.status()
    queue = {e["id"]: e for e in status["apps"]["claude"]["queue"]}
    assert queue["primary"]["requests"] == 1
    assert queue["primary"]["failures"] == 1
    assert queue["primary"]["health"] == "yellow"
    assert queue["backup"]["success_rate"] == 1.0
    assert queue["backup"]["p50_ms"] == 9.0
    assert queue["backup"]["health"] == "green"
    assert status["events"][0]["from"] == "primary"
    assert status["events"][0]["to"] == "backup"
    open_breaker(engine, "backup")
    assert engine.status()["apps"]["claude"]["queue"][1]["health"] == "red"


def test_one_event_for_many_failovers(clock: Clock) -> None:
    engine = Engine(parse_config(CONFIG, "p.yaml", env={}), clock)
    announced = []
    engine.switches.add_listener(announced.append)
    for _ in range(50):
        served_by_backup(engine)
    assert len(announced) == 1
    assert announced[0].reason == "after primary: 529"
