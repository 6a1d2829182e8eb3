"""Active probes: which open providers are due, the probe request, and the self-loop guard."""

from __future__ import annotations

import json

import pytest
from conftest import FakeClock

from ccswitch_addon.core.breaker import State
from ccswitch_addon.core.config import (
    DEFAULT_PROBES,
    Api,
    ConfigError,
    Probe,
    ProviderConfig,
    check_self_loop,
    parse_config,
)
from ccswitch_addon.core.outcome import ErrorKind, classify_error
from ccswitch_addon.core.rewrite import probe_request
from ccswitch_addon.engine import Engine

ENV = {"A": "sk-a-0123456789", "B": "sk-b-0123456789", "C": "sk-c-0123456789", "X": "sk-x-01234"}

CONFIG = """\
apps:
  claude:
    queue: [a, b, c, d]
    breaker: {failure_threshold: 1, open_seconds: 60}
    providers:
      a: {base_url: "https://a.example", api_key: "${A}", probe: true}
      b: {base_url: "https://b.example", api_key: "${B}"}
      c: {base_url: "https://c.example", api_key: "${C}", probe: {interval_seconds: 300}}
      d: {base_url: "https://d.example", api_key: "${UNSET}", probe: true}
  codex:
    queue: [x]
    breaker: {open_seconds: 30}
    providers:
      x: {base_url: "https://x.example/v1", api_key: "${X}", probe: {interval_seconds: 10}}
"""

LONG = 100_000.0  # open for longer than any test runs


@pytest.fixture
def engine(clock: FakeClock) -> Engine:
    return Engine(parse_config(CONFIG, "p.yaml", env=ENV), clock)


def due(engine: Engine) -> list[tuple[str, str]]:
    return [(app.name, provider.id) for app, provider in engine.probes_due()]


def open_for(engine: Engine, clock: FakeClock, app: str, pid: str, seconds: float = LONG) -> None:
    engine.router.breaker(app, pid).restore(State.OPEN, clock.now + seconds, 0.0)
    assert engine.router.breaker(app, pid).state is State.OPEN


def state(engine: Engine, app: str, pid: str) -> State:
    return engine.router.breaker(app, pid).state


# --- which providers are due ------------------------------------------------------------------


def test_nothing_is_due_while_every_breaker_is_closed(engine: Engine, clock: FakeClock) -> None:
    assert due(engine) == []
    clock.advance(3600)
    assert due(engine) == []


def test_a_provider_that_just_tripped_is_probed_at_once(engine: Engine) -> None:
    permit = engine.router.acquire("claude", "a")
    assert permit is not None
    engine.router.record_result("claude", "a", classify_error(ErrorKind.CONNECT), permit)
    assert state(engine, "claude", "a") is State.OPEN
    [(app, provider)] = engine.probes_due()
    assert app is engine.router.config.apps["claude"]
    assert provider is app.providers["a"]


def test_only_open_providers_with_a_probe_that_are_enabled(
    engine: Engine, clock: FakeClock
) -> None:
    for pid in "abcd":
        open_for(engine, clock, "claude", pid)
    assert due(engine) == [("claude", "a"), ("claude", "c")]  # b: no probe; d: disabled


def test_a_cooling_provider_is_not_probed(engine: Engine, clock: FakeClock) -> None:
    engine.router.breaker("claude", "a").restore(State.OPEN, clock.now + LONG, clock.now + 500)
    assert engine.router.breaker("claude", "a").label() == "cooldown"
    assert due(engine) == []
    clock.advance(499)
    assert due(engine) == []
    clock.advance(1)
    assert due(engine) == [("claude", "a")]


def test_a_half_open_provider_is_not_probed(engine: Engine, clock: FakeClock) -> None:
    open_for(engine, clock, "claude", "a", seconds=60)
    clock.advance(60)
    assert state(engine, "claude", "a") is State.HALF_OPEN
    assert due(engine) == []


def test_one_probe_in_flight_per_provider_until_it_is_done(
    engine: Engine, clock: FakeClock
) -> None:
    open_for(engine, clock, "claude", "a")
    open_for(engine, clock, "codex", "x")
    assert due(engine) == [("claude", "a"), ("codex", "x")]
    assert due(engine) == []
    clock.advance(3600)  # every interval has long passed, yet both probes are still out
    assert due(engine) == []
    engine.probe_done("codex", "x", ok=False, detail="503")
    assert due(engine) == [("codex", "x")]
    assert due(engine) == []


def test_not_again_before_open_seconds(engine: Engine, clock: FakeClock) -> None:
    open_for(engine, clock, "claude", "a")  # probe interval 0, open_seconds 60
    assert due(engine) == [("claude", "a")]
    engine.probe_done("claude", "a", ok=False, detail="500")
    clock.advance(59.9)
    assert due(engine) == []
    clock.advance(0.1)
    assert due(engine) == [("claude", "a")]


def test_not_again_before_a_longer_interval(engine: Engine, clock: FakeClock) -> None:
    open_for(engine, clock, "claude", "c")  # probe interval 300, open_seconds 60
    assert due(engine) == [("claude", "c")]
    engine.probe_done("claude", "c", ok=False, detail="500")
    clock.advance(60)
    assert due(engine) == []
    clock.advance(239)
    assert due(engine) == []
    clock.advance(1)
    assert due(engine) == [("claude", "c")]


def test_a_shorter_interval_still_waits_open_seconds(engine: Engine, clock: FakeClock) -> None:
    open_for(engine, clock, "codex", "x")  # probe interval 10, open_seconds 30
    assert due(engine) == [("codex", "x")]
    engine.probe_done("codex", "x", ok=False, detail="timeout")
    clock.advance(10)
    assert due(engine) == []
    clock.advance(19)
    assert due(engine) == []
    clock.advance(1)
    assert due(engine) == [("codex", "x")]


def test_a_good_probe_moves_the_provider_to_half_open(engine: Engine, clock: FakeClock) -> None:
    open_for(engine, clock, "claude", "a")
    changes: list[tuple[str, str, State, State]] = []
    engine.state_listeners.append(lambda *change: changes.append(change))
    assert due(engine) == [("claude", "a")]
    engine.probe_done("claude", "a", ok=True, detail="200")
    assert state(engine, "claude", "a") is State.HALF_OPEN
    assert changes == [("claude", "a", State.OPEN, State.HALF_OPEN)]
    permit = engine.router.acquire("claude", "a")
    assert permit is not None
    assert permit.probe is True  # a real request confirms the recovery
    clock.advance(3600)
    assert due(engine) == []


def test_a_failed_probe_leaves_the_provider_open(engine: Engine, clock: FakeClock) -> None:
    open_for(engine, clock, "claude", "a")
    reopens = engine.router.breaker("claude", "a").reopens_at()
    assert due(engine) == [("claude", "a")]
    engine.probe_done("claude", "a", ok=False, detail="401")
    assert state(engine, "claude", "a") is State.OPEN
    assert engine.router.breaker("claude", "a").reopens_at() == reopens
    assert engine.router.acquire("claude", "a") is None


def test_a_probe_for_a_provider_removed_meanwhile_is_ignored(
    engine: Engine, clock: FakeClock
) -> None:
    open_for(engine, clock, "claude", "a")
    assert due(engine) == [("claude", "a")]
    smaller = CONFIG.replace("queue: [a, b, c, d]", "queue: [b]").replace(
        '      a: {base_url: "https://a.example", api_key: "${A}", probe: true}\n', ""
    )
    engine.reload(parse_config(smaller, "p.yaml", env=ENV))
    engine.probe_done("claude", "a", ok=True, detail="200")
    engine.probe_done("nope", "a", ok=True, detail="200")
    assert due(engine) == []


# --- the probe request ---------------------------------------------------------------------------


def provider(app: str, spec: str, env: dict[str, str] | None = None) -> ProviderConfig:
    text = f"apps:\n  {app}:\n    queue: [p]\n    providers:\n      p:\n{spec}"
    return parse_config(text, "p.yaml", env=ENV if env is None else env).apps[app].providers["p"]


def test_claude_default_probe_counts_tokens_with_the_mapped_model() -> None:
    p = provider(
        "claude",
        "        base_url: https://a.example/api\n"
        "        api_key: ${A}\n"
        "        models: {claude-sonnet-4-5: vendor/sonnet, '*': vendor/other}\n"
        "        headers: {X-Title: ccswitch}\n"
        "        probe: true\n",
    )
    assert p.probe == DEFAULT_PROBES[Api.ANTHROPIC]
    method, path, headers, body = probe_request(Api.ANTHROPIC, p)
    assert (method, path) == ("POST", "/api/v1/messages/count_tokens")
    assert sorted(headers) == sorted(
        [
            ("x-api-key", ENV["A"]),
            ("X-Title", "ccswitch"),
            ("content-type", "application/json"),
            ("anthropic-version", "2023-06-01"),
        ]
    )
    assert body is not None
    assert json.loads(body) == {
        "model": "vendor/sonnet",
        "messages": [{"role": "user", "content": "ping"}],
    }


def test_claude_probe_without_a_mapping_asks_for_the_default_model() -> None:
    p = provider("claude", "        base_url: https://a.example/v1\n        api_key: ${A}\n")
    assert p.probe is None
    p = provider(
        "claude",
        "        base_url: https://a.example/v1\n        api_key: ${A}\n        probe: true\n",
    )
    _, path, _, body = probe_request(Api.ANTHROPIC, p)
    assert path == "/v1/messages/count_tokens"  # not /v1/v1/…
    assert body is not None
    assert json.loads(body)["model"] == "claude-sonnet-4-5"


def test_codex_default_probe_lists_models_with_a_bearer_key() -> None:
    p = provider(
        "codex",
        "        base_url: https://api.deepseek.com/v1\n        api_key: ${X}\n"
        "        probe: true\n",
    )
    assert probe_request(Api.OPENAI, p) == (
        "GET",
        "/v1/models",
        [("authorization", f"Bearer {ENV['X']}")],
        None,
    )


def test_gemini_default_probe_lists_models_with_a_goog_key() -> None:
    p = provider(
        "gemini",
        "        base_url: https://g.example/v1beta/\n        api_key: ${C}\n        probe: true\n",
    )
    assert probe_request(Api.GEMINI, p) == (
        "GET",
        "/v1beta/models",
        [("x-goog-api-key", ENV["C"])],
        None,
    )


def test_a_passthrough_probe_carries_no_key() -> None:
    p = provider(
        "codex",
        "        base_url: https://o.example/api\n        auth: passthrough\n        probe: true\n",
    )
    assert probe_request(Api.OPENAI, p) == ("GET", "/api/v1/models", [], None)


def test_a_custom_probe_path_without_a_body() -> None:
    p = provider(
        "claude",
        "        base_url: https://a.example/api\n"
        "        api_key: ${A}\n"
        "        probe: {method: head, path: /health, interval_seconds: 120}\n",
    )
    assert p.probe == Probe("HEAD", "/health", None, 120)
    method, path, headers, body = probe_request(Api.ANTHROPIC, p)
    assert (method, path, body) == ("HEAD", "/api/health", None)
    assert ("content-type", "application/json") not in headers
    assert ("x-api-key", ENV["A"]) in headers


def test_a_custom_probe_body_gets_the_mapped_model() -> None:
    p = provider(
        "codex",
        "        base_url: https://api.deepseek.com/v1\n"
        "        api_key: ${X}\n"
        "        models: {'*': deepseek-chat}\n"
        "        probe:\n"
        "          method: POST\n"
        "          path: /v1/chat/completions\n"
        '          body: \'{"model": "{model}", "max_tokens": 1}\'\n',
    )
    assert p.probe is not None
    assert p.probe.interval_seconds == 0
    method, path, headers, body = probe_request(Api.OPENAI, p)
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert headers == [
        ("authorization", f"Bearer {ENV['X']}"),
        ("content-type", "application/json"),
    ]
    assert body == b'{"model": "deepseek-chat", "max_tokens": 1}'


def test_a_custom_interval_keeps_the_default_request() -> None:
    p = provider(
        "gemini",
        "        base_url: https://g.example\n        api_key: ${C}\n"
        "        probe: {interval_seconds: 45.5}\n",
    )
    default = DEFAULT_PROBES[Api.GEMINI]
    assert p.probe == Probe(default.method, default.path, default.body, 45.5)


def test_probe_false_is_no_probe() -> None:
    p = provider(
        "claude",
        "        base_url: https://a.example\n        api_key: ${A}\n        probe: false\n",
    )
    assert p.probe is None


def probe_error(spec: str) -> str:
    with pytest.raises(ConfigError) as info:
        provider("claude", "        base_url: https://a.example\n        api_key: ${A}\n" + spec)
    return str(info.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "        probe:\n          method: DELETE\n",
            "p.yaml:9: apps.claude.providers.p.probe.method: a probe is GET, POST or HEAD, "
            "not DELETE",
        ),
        (
            "        probe:\n          interval_seconds: 5\n          path: health\n",
            "p.yaml:10: apps.claude.providers.p.probe.path: a probe path starts with '/', "
            "got 'health'",
        ),
        (
            "        probe:\n          interval_seconds: -1\n",
            "p.yaml:9: apps.claude.providers.p.probe.interval_seconds: -1 is out of range: "
            "must be from 0 to 86400",
        ),
        (
            "        probe:\n          methd: GET\n",
            "p.yaml:9: apps.claude.providers.p.probe.methd: unknown key (did you mean "
            "'method'?); allowed: method, path, body, interval_seconds",
        ),
        (
            "        probe: yes please\n",
            "p.yaml:8: apps.claude.providers.p.probe: expected true or false, got 'yes please'",
        ),
    ],
    ids=["method", "path", "interval", "unknown-key", "not-a-boolean"],
)
def test_probe_mistakes_name_file_line_and_key(spec: str, message: str) -> None:
    assert probe_error(spec) == message


# --- the proxy's own address ----------------------------------------------------------------------

LOOP = """\
apps:
  claude:
    queue: [real]
    providers:
      real: {base_url: "https://api.anthropic.com", api_key: "${A}"}
      loop:
        auth: passthrough
        base_url: %s
"""


@pytest.mark.parametrize(
    ("base_url", "host", "port"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1", 8080),
        ("http://localhost:8080/v1", "localhost", 8080),
        ("http://LOCALHOST:8080", "localhost", 8080),
        ("http://[::1]:8080", "::1", 8080),
        ("https://localhost", "localhost", 443),
        ("http://0.0.0.0:8080", "0.0.0.0", 8080),
    ],
)
def test_a_provider_at_the_listen_address_is_refused(base_url: str, host: str, port: int) -> None:
    config = parse_config(LOOP % base_url, "p.yaml", env=ENV)
    with pytest.raises(ConfigError) as info:
        check_self_loop(config, "", port)
    assert str(info.value) == (
        f"p.yaml:8: apps.claude.providers.loop.base_url: points at this proxy's own address "
        f"({host}:{port}); its requests would come back here in a loop"
    )


def test_the_listen_host_itself_counts_as_the_proxy() -> None:
    config = parse_config(LOOP % "http://10.0.0.5:8080", "p.yaml", env=ENV)
    check_self_loop(config, "", 8080)  # another machine's 8080, as far as we know
    with pytest.raises(ConfigError, match=r"providers\.loop\.base_url: points at"):
        check_self_loop(config, "10.0.0.5", 8080)
    named = parse_config(LOOP % "http://proxy.lan:8080", "p.yaml", env=ENV)
    with pytest.raises(ConfigError, match=r"own address \(proxy\.lan:8080\)"):
        check_self_loop(named, "Proxy.LAN", 8080)


@pytest.mark.parametrize("listen", [8081, 80, 443])
def test_another_port_on_loopback_is_fine(listen: int) -> None:
    config = parse_config(LOOP % "http://127.0.0.1:8080", "p.yaml", env=ENV)
    check_self_loop(config, "127.0.0.1", listen)


def test_a_disabled_provider_at_the_listen_address_is_fine() -> None:
    text = LOOP.replace("auth: passthrough", "api_key: ${UNSET}") % "http://127.0.0.1:8080"
    config = parse_config(text, "p.yaml", env=ENV)
    assert config.apps["claude"].providers["loop"].disabled is not None
    check_self_loop(config, "127.0.0.1", 8080)


def test_the_error_names_the_first_looping_provider_of_any_app() -> None:
    text = LOOP % "http://127.0.0.1:9000" + (
        "  codex:\n"
        "    queue: [self]\n"
        "    providers:\n"
        "      self: {base_url: 'http://localhost:8080/v1', auth: passthrough}\n"
    )
    config = parse_config(text, "p.yaml", env=ENV)
    with pytest.raises(ConfigError) as info:
        check_self_loop(config, "", 8080)
    assert str(info.value).startswith("p.yaml:12: apps.codex.providers.self.base_url: ")
