"""Routes: parsing with FILE:LINE errors, and which route a request's facts take."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from ccswitch_addon.core.affinity import Failback
from ccswitch_addon.core.config import ConfigError, parse_config
from ccswitch_addon.core.facts import Facts
from ccswitch_addon.core.routes import Routing
from ccswitch_addon.wire.api import Api

HEAD = """\
apps:
  claude:
    queue: [official, relay, deepseek]
"""
PROVIDERS = """\
    providers:
      official: {base_url: "https://o.example", auth: passthrough}
      relay: {base_url: "https://r.example", auth: passthrough}
      deepseek: {base_url: "https://d.example", auth: passthrough}
"""
ROUTES = """\
    routes:
      - name: small
        when: {model: "*haiku*"}
        queue: [deepseek, relay]
      - name: subagents
        when: {subagent: true}
        queue: [relay, official]
      - name: long
        when: {tokens_over: 1000}
        queue: [official]
      - name: thinking
        when: {thinking: true, header: {x-app: "^cli$"}}
        queue: [relay]
"""


def routing(middle: str = ROUTES) -> Routing:
    return parse_config(HEAD + middle + PROVIDERS, "p.yaml", env={}).apps["claude"].routing


def facts(body: Mapping[str, object] | bytes, **headers: str) -> Facts:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    pairs = tuple((k.replace("_", "-").encode(), v.encode()) for k, v in headers.items())
    return Facts(Api.ANTHROPIC, "/v1/messages", pairs, raw)


def route_name(r: Routing, f: Facts) -> str | None:
    route = r.route_for(f)
    return route.name if route else None


def test_defaults_without_routes() -> None:
    r = routing("")
    assert r.routes == ()
    assert r.affinity_seconds == 300
    assert r.failback is Failback.IDLE


def test_first_matching_route_wins() -> None:
    r = routing()
    assert next(x.queue for x in r.routes) == ("deepseek", "relay")
    assert route_name(r, facts({"model": "claude-haiku-4-5", "messages": []})) == "small"
    assert route_name(r, facts({"model": "CLAUDE-HAIKU"})) == "small"  # case-blind
    assert route_name(r, facts({"model": "claude-opus-4-8"})) is None


def test_subagent_from_the_billing_line() -> None:
    line = "x-anthropic-billing-header: cc_version=2.1.197; cc_is_subagent; cch=1;"
    body = {"model": "claude-opus-4-8", "system": [{"type": "text", "text": line}]}
    assert route_name(routing(), facts(body)) == "subagents"
    main = {"model": "claude-opus-4-8", "system": [{"type": "text", "text": line[:-25]}]}
    assert route_name(routing(), facts(main)) is None
    # a user quoting the marker mid-text is no subagent
    quoted = {"model": "m", "messages": [{"role": "user", "content": "see " + line}]}
    assert route_name(routing(), facts(quoted)) is None


def test_codex_subagent_header() -> None:
    f = Facts(Api.OPENAI, "/v1/responses", ((b"x-openai-subagent", b"review"),), b"{}")
    assert f.subagent


def test_tokens_over_and_thinking_with_header() -> None:
    r = routing()
    assert route_name(r, facts({"model": "m", "messages": [{"content": "x" * 5000}]})) == "long"
    thinking = {"model": "m", "thinking": {"type": "enabled", "budget_tokens": 31999}}
    assert route_name(r, facts(thinking, x_app="cli")) == "thinking"
    assert route_name(r, facts(thinking, x_app="web")) is None  # the header must match too
    assert route_name(r, facts(thinking)) is None  # and be there


@pytest.mark.parametrize(
    ("api", "body", "expected"),
    [
        (Api.OPENAI, {"reasoning": {"effort": "high"}}, True),
        (Api.OPENAI, {"reasoning": {"effort": "none"}}, False),
        (Api.OPENAI, {"reasoning_effort": "low"}, True),
        (Api.GEMINI, {"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}, False),
        (Api.GEMINI, {"generationConfig": {"thinkingConfig": {"thinkingBudget": 512}}}, True),
        (Api.ANTHROPIC, {"thinking": {"type": "disabled"}}, False),
    ],
)
def test_thinking_per_api(api: Api, body: dict[str, object], expected: bool) -> None:
    assert Facts(api, "/x", (), json.dumps(body).encode()).thinking is expected


def test_model_list_of_globs_and_gemini_path() -> None:
    r = routing(
        """\
    routes:
      - name: flash
        when: {model: ["*flash*", "*lite"]}
        queue: [relay]
"""
    )
    gemini = Facts(Api.GEMINI, "/v1beta/models/gemini-3.5-flash-lite:generateContent", (), b"")
    assert route_name(r, gemini) == "flash"
    assert route_name(r, facts({"model": "x-lite"})) == "flash"


@pytest.mark.parametrize(
    ("middle", "expected"),
    [
        (
            "    routes:\n      - name: a\n        when: {modle: x}\n        queue: [relay]\n",
            "p.yaml:6: apps.claude.routes[0].when.modle: unknown key (did you mean 'model'?)",
        ),
        (
            "    routes:\n      - name: a\n        when: {model: x}\n        queue: []\n",
            "p.yaml:7: apps.claude.routes[0].queue: the queue is empty",
        ),
        (
            "    routes:\n      - name: a\n        when: {model: x}\n        queue: [nope]\n",
            "p.yaml:7: apps.claude.routes[0].queue[0]: 'nope' is not a provider of claude",
        ),
        (
            "    routes:\n      - name: a\n        queue: [relay]\n",
            "p.yaml:5: apps.claude.routes[0]: when is required",
        ),
        (
            "    routes:\n      - name: a\n        when: {}\n        queue: [relay]\n",
            "p.yaml:6: apps.claude.routes[0].when: a route needs at least one condition",
        ),
        (
            "    routes:\n      - name: a\n        when: {header: {x: '('}}\n"
            "        queue: [relay]\n",
            "p.yaml:6: apps.claude.routes[0].when.header.x: not a regular expression",
        ),
        ("    failback: later\n", "p.yaml:4: apps.claude.failback: unknown failback 'later'"),
        ("    affinity_seconds: -1\n", "p.yaml:4: apps.claude.affinity_seconds: -1 is out"),
        (
            "    routes:\n      - {name: a, when: {model: x}, queue: [relay]}\n"
            "      - {name: a, when: {model: y}, queue: [relay]}\n",
            "p.yaml:6: apps.claude.routes[1]: route 'a' is defined twice",
        ),
    ],
)
def test_errors_name_file_and_line(middle: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(HEAD + middle + PROVIDERS, "p.yaml", env={})
    assert expected in str(info.value)


def test_affinity_and_failback_values() -> None:
    r = routing("    affinity_seconds: 0\n    failback: at_once\n")
    assert r.affinity_seconds == 0
    assert r.failback is Failback.AT_ONCE


def test_thinking_is_read_from_the_top_level_member() -> None:
    block = {"type": "thinking", "thinking": "earlier", "signature": "s"}
    history = {"role": "assistant", "content": [block]}
    off = {"model": "m", "messages": [history]}
    assert not facts(off).thinking  # a thinking block in the history is no request for it
    on = {**off, "thinking": {"type": "enabled", "budget_tokens": 31999}}
    assert facts(on).thinking
    assert not facts({**off, "thinking": {"type": "disabled"}}).thinking
    quoted = {"model": "m", "messages": [{"content": '"thinking": {"type": "enabled"}'}]}
    assert not facts(quoted).thinking
