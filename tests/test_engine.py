"""The engine: what a finished request teaches, persistence across restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.outcome import ErrorKind, classify_error, classify_status
from ccswitch_addon.engine import Attempt, Engine, Finished
from ccswitch_addon.state.store import Store, open_readonly
from ccswitch_addon.web.control import Control, ControlRequest, Reach
from ccswitch_addon.wire.replies import Reply
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
    assert [(e.to, e.reason) for e in again.switches.events] == [
        ("spare", "manual switch by the ccswitch.switch command"),
        ("backup", "after primary: 529"),
    ]
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


CHAIN = """\
apps:
  claude:
    queue: [a, b, c]
    providers:
      a: {base_url: "http://127.0.0.1:1", auth: passthrough}
      b: {base_url: "http://127.0.0.1:2", auth: passthrough}
      c: {base_url: "http://127.0.0.1:3", auth: passthrough}
      later: {base_url: "http://127.0.0.1:4", api_key: "${CCSW_UNSET_FOR_TEST}"}
"""


def act(engine: Engine, path: str, body: bytes) -> Reply:
    """A state-changing control request as the dashboard sends it."""
    control = Control(lambda: engine, token="t")
    headers = {"content-type": "application/json", "x-ccswitch-token": "t"}
    return control.answer(ControlRequest("POST", path, headers, body, True, Reach.HOST))


def serve(engine: Engine, served: str, *failed: str) -> None:
    attempts = [Attempt(pid, 5.0, True, 529) for pid in failed]
    engine.request_done(Finished("claude", served, [*attempts, Attempt(served, 9.0, False, 200)]))


def test_a_manual_switch_and_every_later_failover_are_events(clock: Clock) -> None:
    engine = Engine(parse_config(CHAIN, "p.yaml", env={}), clock)
    serve(engine, "a")
    clock.now += 1
    act(engine, "/switch", b'{"app": "claude", "provider": "b", "by": "ccswitch switch"}')
    clock.now += 1
    serve(engine, "b")  # the chosen provider serves: no second event for the same change
    clock.now += 1
    serve(engine, "c", "b")  # within a second of the switch: a new cause, recorded at once
    clock.now += 1
    engine.switch("claude", "a")
    assert [(e.from_, e.to, e.reason) for e in engine.switches.events] == [
        ("a", "b", "manual switch by ccswitch switch"),
        ("b", "c", "after b: 529"),
        ("b", "a", "manual switch by the ccswitch.switch command"),
    ]
    assert engine.status()["events"][0]["reason"] == (
        "manual switch by the ccswitch.switch command"
    )


def test_a_switch_to_a_disabled_provider_is_refused_with_the_reason(clock: Clock) -> None:
    engine = Engine(parse_config(CHAIN, "p.yaml", env={}), clock)
    answer = act(engine, "/switch", b'{"app": "claude", "provider": "later"}')
    assert answer.status == 409
    error = json.loads(answer.body)["error"]
    assert error.startswith(
        "claude cannot switch to later: it is disabled (${CCSW_UNSET_FOR_TEST} is not set "
        "(apps.claude.providers.later.api_key); add CCSW_UNSET_FOR_TEST to "
    )
    assert error.endswith("or export it and restart); claude keeps routing to a")
    assert engine.router.current("claude") == "a"
    assert not engine.switches.events


def test_a_switch_to_an_open_provider_says_where_traffic_goes(clock: Clock) -> None:
    engine = Engine(parse_config(CONFIG, "p.yaml", env={}), clock)
    open_breaker(engine, "backup")
    answer = json.loads(act(engine, "/switch", b'{"app": "claude", "provider": "backup"}').body)
    assert answer["note"].startswith("backup is open for ")
    assert answer["note"].endswith("; until then the queue's next provider serves")


def test_a_refused_reload_shows_in_the_status_until_a_good_one(clock: Clock) -> None:
    config = parse_config(CONFIG, "p.yaml", env={})
    engine = Engine(config, clock)
    assert engine.status()["config_error"] is None
    engine.config_refused("p.yaml:3: apps.claude.queue: duplicate key")
    since = clock.now
    clock.now += 5
    engine.config_refused("p.yaml:4: apps.claude.queue: duplicate key")
    assert engine.status()["config_error"] == {
        "message": "p.yaml:4: apps.claude.queue: duplicate key",
        "since": since,
    }
    engine.reload(config)
    assert engine.status()["config_error"] is None


ROUTED = """\
apps:
  claude:
    queue: [a_anth, a_chat]
    routes:
      - name: small
        when: {model: "*haiku*"}
        queue: [a_resp, a_gem]
    providers:
      a_anth: {base_url: "http://127.0.0.1:1", auth: passthrough}
      a_chat: {base_url: "http://127.0.0.1:2", auth: passthrough}
      a_resp:
        base_url: http://127.0.0.1:3
        auth: passthrough
        price: {input: 1, output: 1}
        budget: {daily_usd: 5}
      a_gem: {base_url: "http://127.0.0.1:4", auth: passthrough}
"""


def routed(engine: Engine, served: str, *failed: str, route: str | None = "small") -> None:
    attempts = [Attempt(pid, 5.0, True, 529) for pid in failed]
    engine.request_done(
        Finished(
            "claude",
            served,
            [*attempts, Attempt(served, 9.0, False, 200)],
            model_sent="m",
            usage=Usage(3_000_000 if served == "a_resp" else 0, 0),  # $3 at a_resp's price
            route=route,
        )
    )


def test_route_traffic_moves_neither_the_apps_active_provider_nor_its_events(
    clock: Clock,
) -> None:
    engine = Engine(parse_config(ROUTED, "p.yaml", env={}), clock)
    routed(engine, "a_anth", route=None)
    for _ in range(2):  # the second crosses a_resp's $5: the route's next request skips it
        clock.now += 10
        routed(engine, "a_resp")
    clock.now += 10
    routed(engine, "a_gem")
    clock.now += 10
    routed(engine, "a_anth", route=None)
    assert not engine.switches.events
    status = engine.status()["apps"]["claude"]
    assert status["active"] == "a_anth"
    route = status["routes"][0]
    assert route["active"] == "a_gem"
    assert route["current"] == "a_gem"  # a_resp's budget is spent: not where the next goes
    assert [e["state"] for e in status["queue"] if e["id"] == "a_resp"] == ["budget"]
    clock.now += 10
    routed(engine, "a_chat", "a_anth", route=None)  # the app's own failover is still one
    assert [(e.app, e.from_, e.to, e.reason) for e in engine.switches.events] == [
        ("claude", "a_anth", "a_chat", "after a_anth: 529")
    ]


def test_a_reload_that_changes_the_queue_is_no_failover(clock: Clock) -> None:
    engine = Engine(parse_config(ROUTED, "p.yaml", env={}), clock)
    routed(engine, "a_anth", route=None)
    swapped = ROUTED.replace("queue: [a_anth, a_chat]", "queue: [a_chat, a_anth]")
    engine.reload(parse_config(swapped, "p.yaml", env={}))
    clock.now += 10
    routed(engine, "a_chat", route=None)
    assert not engine.switches.events
    assert engine.status()["apps"]["claude"]["active"] == "a_chat"
    clock.now += 10
    routed(engine, "a_anth", "a_chat", route=None)  # a failover after the reload still is one
    assert [(e.from_, e.to, e.reason) for e in engine.switches.events] == [
        ("a_chat", "a_anth", "after a_chat: 529")
    ]
