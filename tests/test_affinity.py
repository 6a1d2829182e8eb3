"""Affinity through the router: a conversation keeps its provider, failback idle and at_once,
routes with their own queues, manual switches, and the bounded table."""

from __future__ import annotations

import json

from conftest import FakeClock

from ccswitch_addon.core.affinity import Affinity, Failback, Stay, place
from ccswitch_addon.core.breaker import State
from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.facts import Facts
from ccswitch_addon.core.outcome import ErrorKind, classify_error, classify_status
from ccswitch_addon.core.router import Router
from ccswitch_addon.wire.api import Api

CONFIG = """\
apps:
  claude:
    queue: [official, relay, deepseek]
    affinity_seconds: 300
    failback: {failback}
    breaker: {{failure_threshold: 1, success_threshold: 1, open_seconds: 30}}
    routes:
      - name: small
        when: {{model: "*haiku*"}}
        queue: [deepseek, relay]
    providers:
      official: {{base_url: "https://o.example", auth: passthrough}}
      relay: {{base_url: "https://r.example", auth: passthrough}}
      deepseek: {{base_url: "https://d.example", auth: passthrough}}
"""


def router(clock: FakeClock, failback: str = "idle") -> Router:
    return Router(parse_config(CONFIG.format(failback=failback), "p.yaml", env={}), clock)


def request(conversation: str | None, model: str = "claude-opus-4-8") -> Facts:
    headers = ((b"x-claude-code-session-id", conversation.encode()),) if conversation else ()
    return Facts(Api.ANTHROPIC, "/v1/messages", headers, json.dumps({"model": model}).encode())


def serve(r: Router, facts: Facts) -> tuple[str, str | None]:
    """Route one request and let its first provider serve it."""
    selection = r.select_providers("claude", None, facts)
    pid = selection.providers[0].id
    r.served("claude", selection.route, selection.conversation, pid)
    return pid, selection.why


def trip(r: Router, pid: str) -> None:
    permit = r.acquire("claude", pid)
    r.record_result("claude", pid, classify_error(ErrorKind.CONNECT), permit)
    assert r.breaker("claude", pid).state is State.OPEN


def heal(r: Router, clock: FakeClock, pid: str) -> None:
    clock.advance(31)
    permit = r.acquire("claude", pid)  # the half-open probe
    r.record_result("claude", pid, classify_status(200), permit)
    assert r.breaker("claude", pid).state is State.CLOSED


def test_idle_keeps_a_failed_over_conversation_until_it_idles(clock: FakeClock) -> None:
    r = router(clock)
    assert serve(r, request("c1")) == ("official", None)
    trip(r, "official")
    assert serve(r, request("c1"))[0] == "relay"  # moved at once: official cannot take it
    heal(r, clock, "official")
    pid, why = serve(r, request("c1"))
    assert (pid, why) == ("relay", "affinity: conversation c1 stays on relay")
    assert serve(r, request("new"))[0] == "official"  # a new conversation: the queue's head
    assert serve(r, request(None))[0] == "official"  # no id: no affinity
    clock.advance(301)
    assert serve(r, request("c1"))[0] == "official"  # idled: back to the head


def test_at_once_returns_when_the_higher_provider_is_closed(clock: FakeClock) -> None:
    r = router(clock, "at_once")
    serve(r, request("c1"))
    trip(r, "official")
    assert serve(r, request("c1"))[0] == "relay"
    clock.advance(31)  # official is half-open: not closed yet, the conversation stays
    assert r.breaker("claude", "official").state is State.HALF_OPEN
    assert serve(r, request("c1")) == ("relay", "affinity: conversation c1 stays on relay")
    permit = r.acquire("claude", "official")
    r.record_result("claude", "official", classify_status(200), permit)
    assert serve(r, request("c1")) == ("official", "failback: conversation c1 returns to official")


def test_affinity_never_holds_a_conversation_on_a_provider_that_cannot_take_it(
    clock: FakeClock,
) -> None:
    r = router(clock)
    trip(r, "official")
    serve(r, request("c1"))  # on relay
    trip(r, "relay")
    assert serve(r, request("c1")) == ("deepseek", "affinity: conversation c1 moved off relay")


def test_routes_hold_their_own_conversations_and_a_switch_lets_go_of_the_queue(
    clock: FakeClock,
) -> None:
    r = router(clock)
    trip(r, "deepseek")
    selection = r.select_providers("claude", None, request("c1", "claude-haiku-4-5"))
    assert selection.route == "small"
    assert selection.providers[0].id == "relay"
    r.served("claude", "small", "c1", "relay")
    heal(r, clock, "deepseek")
    assert serve(r, request("c1", "claude-haiku-4-5"))[0] == "relay"  # the route's stay
    assert serve(r, request("c1"))[0] == "official"  # the same conversation's main requests
    trip(r, "official")
    assert serve(r, request("c1"))[0] == "relay"
    heal(r, clock, "official")
    r.switch("claude", "deepseek")  # by hand: the next request goes there
    assert serve(r, request("c1"))[0] == "deepseek"
    assert serve(r, request("c1", "claude-haiku-4-5"))[0] == "relay"  # routes keep theirs
    assert r.route_active[("claude", "small")] == "relay"


def test_affinity_off(clock: FakeClock) -> None:
    r = Router(
        parse_config(
            CONFIG.format(failback="idle").replace("affinity_seconds: 300", "affinity_seconds: 0"),
            "p.yaml",
            env={},
        ),
        clock,
    )
    serve(r, request("c1"))
    trip(r, "official")
    assert serve(r, request("c1"))[0] == "relay"
    heal(r, clock, "official")
    assert serve(r, request("c1")) == ("official", None)  # no stay: the queue decides
    assert r.live_conversations("claude") == {}


def test_live_conversations_per_provider(clock: FakeClock) -> None:
    r = router(clock)
    serve(r, request("c1"))
    serve(r, request("c2"))
    trip(r, "official")
    serve(r, request("c3"))
    assert r.live_conversations("claude") == {"official": 2, "relay": 1}
    clock.advance(301)
    assert r.live_conversations("claude") == {}


def test_the_table_is_bounded_least_recently_used_out() -> None:
    table = Affinity(capacity=2)
    table.served("a", "", "c1", "p", 1.0)
    table.served("a", "", "c2", "p", 2.0)
    table.served("a", "", "c1", "q", 3.0)  # c1 used again
    table.served("a", "", "c3", "p", 4.0)  # c2 is the oldest: out
    assert table.get("a", "", "c2") is None
    assert table.get("a", "", "c1") == Stay("q", 3.0)
    assert len(table) == 2


def test_place_is_pure() -> None:
    stay = Stay("b", 100.0)
    args = (stay, "conv-1234", 300.0)
    assert place(["a", "b"], *args, Failback.IDLE, 200.0, lambda p: True).first == "b"
    assert place(["a", "b"], *args, Failback.AT_ONCE, 200.0, lambda p: True).first is None
    assert place(["a", "b"], *args, Failback.IDLE, 400.0, lambda p: True).first is None
    assert "conv…" in str(place(["a", "b"], *args, Failback.IDLE, 200.0, bool).why)
