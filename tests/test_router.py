"""The router: queue order through the breakers, manual switches, reloads, request matching."""

from __future__ import annotations

import pytest
from conftest import FakeClock

from ccswitch_addon.core.breaker import State
from ccswitch_addon.core.config import Config, parse_config
from ccswitch_addon.core.outcome import ErrorKind, classify_error, classify_status
from ccswitch_addon.core.router import MISSING_SECONDS, Router, UnknownName

CONFIG = """\
apps:
  claude:
    queue: [a, nokey, b, c]
    breaker: {failure_threshold: 2, success_threshold: 1, open_seconds: 30}
    providers:
      a: {base_url: "https://a.example", auth: passthrough}
      nokey: {base_url: "https://nokey.example", api_key: "${UNSET_KEY}"}
      b: {base_url: "https://b.example", auth: passthrough}
      c: {base_url: "https://c.example", auth: passthrough}
      d: {base_url: "https://d.example", auth: passthrough}
  codex:
    failover: false
    queue: [x, y]
    providers:
      x: {base_url: "https://x.example", auth: passthrough}
      y: {base_url: "https://y.example", auth: passthrough}
  gemini:
    queue: [g]
    providers:
      g: {base_url: "https://g.example", api_key: "${UNSET_KEY}"}
"""


def config(text: str = CONFIG) -> Config:
    return parse_config(text, "p.yaml", env={})


@pytest.fixture
def router(clock: FakeClock) -> Router:
    return Router(config(), clock)


def order(router: Router, app: str = "claude") -> list[str]:
    return [p.id for p in router.select_providers(app).providers]


def open_(router: Router, app: str, pid: str) -> None:
    permit = router.acquire(app, pid)
    router.record_result(app, pid, classify_error(ErrorKind.CONNECT), permit)
    assert router.breaker(app, pid).state is State.OPEN


def test_queue_order_skips_disabled(router: Router) -> None:
    selection = router.select_providers("claude")
    assert [p.id for p in selection.providers] == ["a", "b", "c"]
    assert selection.reason is None
    assert selection.app.name == "claude"
    assert router.current("claude") == "a"


def test_current_provider_first_then_the_rest_of_the_queue(router: Router) -> None:
    router.switch("claude", "c")
    assert router.current("claude") == "c"
    assert order(router) == ["c", "a", "b"]


def test_open_and_cooling_down_providers_are_skipped(router: Router, clock: FakeClock) -> None:
    open_(router, "claude", "a")
    assert order(router) == ["b", "c"]
    permit = router.acquire("claude", "c")
    router.record_result("claude", "c", classify_status(429, "60", clock.now), permit)
    assert router.breaker("claude", "c").label() == "cooldown"
    assert order(router) == ["b"]
    clock.advance(30)  # a is half-open: it may take one probe and comes back in its place
    assert order(router) == ["a", "b"]
    clock.advance(30)
    assert order(router) == ["a", "b", "c"]


def test_max_attempts_truncates(clock: FakeClock) -> None:
    text = CONFIG.replace(
        "    queue: [a, nokey, b, c]", "    queue: [a, nokey, b, c]\n    max_attempts: 2"
    )
    router = Router(config(text), clock)
    assert order(router) == ["a", "b"]
    open_(router, "claude", "a")
    assert order(router) == ["b", "c"]


def test_a_switch_outside_the_queue_keeps_the_whole_queue_behind_it(router: Router) -> None:
    router.switch("claude", "d")
    assert order(router) == ["d", "a", "b", "c"]


def test_none_configured_when_every_provider_is_disabled(router: Router) -> None:
    selection = router.select_providers("gemini")
    assert selection.providers == ()
    assert selection.reason == "none_configured"
    assert selection.retry_at is None


def test_all_unavailable_names_the_earliest_reopen_time(router: Router, clock: FakeClock) -> None:
    start = clock.now
    open_(router, "claude", "a")  # back at start + 30
    clock.advance(5)
    open_(router, "claude", "b")  # back at start + 35
    permit = router.acquire("claude", "c")
    router.record_result("claude", "c", classify_status(503, "100", clock.now), permit)
    selection = router.select_providers("claude")
    assert selection.providers == ()
    assert selection.reason == "all_unavailable"
    assert selection.retry_at == start + 30


def test_a_cooldown_can_be_the_earliest_reopen_time(router: Router, clock: FakeClock) -> None:
    open_(router, "claude", "a")
    open_(router, "claude", "b")
    permit = router.acquire("claude", "c")
    router.record_result("claude", "c", classify_status(429, "12", clock.now), permit)
    selection = router.select_providers("claude")
    assert selection.reason == "all_unavailable"
    assert selection.retry_at == clock.now + 12


def test_a_half_open_provider_busy_with_its_probe_is_unavailable_for_a_moment(
    clock: FakeClock,
) -> None:
    router = Router(config(CONFIG.replace("[a, nokey, b, c]", "[a]")), clock)
    open_(router, "claude", "a")
    clock.advance(30)
    probe = router.acquire("claude", "a")
    assert probe is not None
    selection = router.select_providers("claude")
    assert selection.reason == "all_unavailable"
    assert selection.retry_at == clock.now + 1.0


def test_failover_off_sends_to_the_current_provider_alone(router: Router) -> None:
    assert order(router, "codex") == ["x"]
    open_(router, "codex", "x")
    assert order(router, "codex") == ["x"]  # the breaker is not consulted
    permit = router.acquire("codex", "x")
    assert permit is not None
    assert permit.probe is False
    router.switch("codex", "y")
    assert order(router, "codex") == ["y"]


def test_failover_off_still_recovers_through_its_own_requests(
    router: Router, clock: FakeClock
) -> None:
    open_(router, "codex", "x")
    clock.advance(60)  # codex's default open_seconds
    breaker = router.breaker("codex", "x")
    assert breaker.state is State.HALF_OPEN
    probe = router.acquire("codex", "x")
    assert probe is not None
    assert probe.probe is True
    others = [router.acquire("codex", "x") for _ in range(5)]
    assert all(p is not None and not p.probe for p in others)  # still sent, never held back
    router.record_result("codex", "x", classify_status(200), probe)
    for permit in others:
        router.record_result("codex", "x", classify_status(200), permit)
    assert breaker.state is State.HALF_OPEN
    router.record_result("codex", "x", classify_status(200), router.acquire("codex", "x"))
    assert breaker.state is State.CLOSED  # codex's success_threshold is 2


def test_failover_off_with_a_disabled_current_provider(clock: FakeClock) -> None:
    text = CONFIG.replace(
        'x: {base_url: "https://x.example", auth: passthrough}',
        'x: {base_url: "https://x.example", api_key: "${UNSET_KEY}"}',
    )
    selection = Router(config(text), clock).select_providers("codex")
    assert selection.providers == ()
    assert selection.reason == "none_configured"


def test_switch_outside_the_queue_puts_it_first(router: Router) -> None:
    router.switch("claude", "d")
    assert order(router) == ["d", "a", "b", "c"]
    assert router.current("claude") == "d"


def test_unknown_names_are_clear(router: Router) -> None:
    with pytest.raises(UnknownName) as app_error:
        router.switch("aider", "a")
    assert str(app_error.value) == "unknown app 'aider'; configured: claude, codex, gemini"
    with pytest.raises(UnknownName) as provider_error:
        router.switch("claude", "zz")
    assert str(provider_error.value) == (
        "unknown provider 'zz' for claude; configured: a, nokey, b, c, d"
    )
    assert isinstance(provider_error.value, KeyError)
    with pytest.raises(UnknownName, match="unknown provider 'zz' for codex"):
        router.reset("codex", "zz")
    with pytest.raises(UnknownName, match="unknown app 'nope'"):
        router.select_providers("nope")
    assert router.current("claude") == "a"


def test_reload_keeps_state_drops_removed_and_applies_thresholds(
    router: Router, clock: FakeClock
) -> None:
    open_(router, "claude", "a")
    router.record_result("claude", "b", classify_status(500), router.acquire("claude", "b"))
    router.switch("claude", "d")
    kept_a = router.breaker("claude", "a")

    text = (
        CONFIG.replace("failure_threshold: 2", "failure_threshold: 5")
        .replace('      d: {base_url: "https://d.example", auth: passthrough}\n', "")
        .replace("[a, nokey, b, c]", "[a, b]")
        .replace('      c: {base_url: "https://c.example", auth: passthrough}\n', "")
    )
    router.reload(config(text))
    assert router.breaker("claude", "a") is kept_a
    assert kept_a.state is State.OPEN
    assert kept_a.config.failure_threshold == 5
    b = router.breaker("claude", "b")
    assert b.consecutive_failures == 1
    for _ in range(3):
        router.record_result("claude", "b", classify_status(500), router.acquire("claude", "b"))
    assert b.state is State.CLOSED  # 4 < 5: the new threshold holds
    with pytest.raises(UnknownName):
        router.breaker("claude", "c")
    assert router.current("claude") == "a"  # the switched-to provider went away
    # An answer from a provider removed while its request was in flight is dropped quietly.
    router.record_result("claude", "c", classify_status(500))

    router.reload(config())
    assert router.breaker("claude", "c").state is State.CLOSED
    assert router.breaker("claude", "c").consecutive_failures == 0


def test_reload_keeps_a_manual_switch_that_still_exists(router: Router) -> None:
    router.switch("claude", "b")
    router.reload(config())
    assert router.current("claude") == "b"


@pytest.mark.parametrize(
    ("host", "path", "app"),
    [
        ("api.anthropic.com", "/v1/messages", "claude"),
        ("API.Anthropic.COM", "/v1/messages/count_tokens", "claude"),
        ("api.openai.com", "/v1/responses", "codex"),
        ("api.openai.com", "/v1/chat/completions", "codex"),
        (
            "generativelanguage.googleapis.com",
            "/v1beta/models/gemini-2.5-pro:generateContent",
            "gemini",
        ),
        (
            "generativelanguage.googleapis.com",
            "/v1/models/gemini-2.5-pro:streamGenerateContent",
            "gemini",
        ),
        ("api.anthropic.com", "/v1/models", None),
        ("api.anthropic.com", "/", None),
        ("api.openai.com", "/v1/embeddings", None),
        ("api.anthropic.com.evil.example", "/v1/messages", None),
        ("example.com", "/v1/messages", None),
        ("generativelanguage.googleapis.com", "/v1beta/models", None),
        # whole segments, not raw prefixes
        ("api.anthropic.com", "/v1/messagesXYZ", None),
        ("api.anthropic.com", "/v1/messages/batches", None),
        ("api.anthropic.com", "/v1/messages/", None),
        ("api.anthropic.com", "/v1/messages/count_tokens/x", None),
        ("api.openai.com", "/v1/responses/resp_1/cancel", None),
        ("api.openai.com", "/v1/completionsX", None),
        ("generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-pro:countTokens", None),
        ("generativelanguage.googleapis.com", "/v1beta/models/a/b:generateContent", None),
        ("generativelanguage.googleapis.com", "/v1beta/models/:generateContent", None),
    ],
)
def test_match_by_host_and_whole_path_segments(
    router: Router, host: str, path: str, app: str | None
) -> None:
    matched = router.match(host, path)
    assert (matched.app.name if matched else None) == app


def test_the_match_says_which_endpoint_and_whether_it_is_a_health_signal(
    router: Router,
) -> None:
    messages = router.match("api.anthropic.com", "/v1/messages")
    count = router.match("api.anthropic.com", "/v1/messages/count_tokens")
    gemini = router.match("generativelanguage.googleapis.com", "/v1/models/g-1:generateContent")
    assert messages is not None
    assert count is not None
    assert gemini is not None
    assert (messages.endpoint.path, messages.endpoint.health) == ("/v1/messages", True)
    assert (count.endpoint.path, count.endpoint.health) == ("/v1/messages/count_tokens", False)
    assert count.endpoint.optional
    assert not messages.endpoint.optional
    assert gemini.endpoint.path == "/v1/models/{model}:generateContent"
    assert gemini.endpoint.health


def test_a_provider_that_lacks_an_endpoint_is_left_out_for_it_only(
    router: Router, clock: FakeClock
) -> None:
    count = "/v1/messages/count_tokens"
    router.mark_missing("claude", "a", count)
    assert [p.id for p in router.select_providers("claude", count).providers] == ["b", "c"]
    assert next(p.id for p in router.select_providers("claude", "/v1/messages").providers) == "a"
    assert next(p.id for p in router.select_providers("claude").providers) == "a"
    assert router.breaker("claude", "a").state is State.CLOSED
    clock.advance(MISSING_SECONDS + 1)  # believed for a while, then tried again
    assert next(p.id for p in router.select_providers("claude", count).providers) == "a"


def test_every_provider_lacking_the_endpoint_is_its_own_reason(router: Router) -> None:
    count = "/v1/messages/count_tokens"
    for pid in ("a", "b", "c"):
        router.mark_missing("claude", pid, count)
    selection = router.select_providers("claude", count)
    assert (selection.providers, selection.reason) == ((), "endpoint_missing")
    router.reset("claude", "b")  # a reset forgets it too
    assert [p.id for p in router.select_providers("claude", count).providers] == ["b"]


def test_the_missing_endpoint_memory_survives_a_reload_but_not_a_new_base_url(
    router: Router,
) -> None:
    count = "/v1/messages/count_tokens"
    router.mark_missing("claude", "a", count)
    router.mark_missing("claude", "b", count)
    router.reload(config(CONFIG.replace("https://b.example", "https://b2.example")))
    assert router.lacks("claude", "a", count)
    assert not router.lacks("claude", "b", count)


def test_match_a_custom_app(clock: FakeClock) -> None:
    text = """\
apps:
  mytool:
    hosts: [LLM.Internal]
    paths: [/api/chat, /api/generate]
    queue: [a]
    providers:
      a: {base_url: "http://127.0.0.1:9", auth: passthrough}
"""
    router = Router(config(text), clock)
    matched = router.match("llm.internal", "/api/generate")
    assert matched is not None
    assert matched.app.name == "mytool"
    assert router.match("llm.internal", "/api/tags") is None
    assert router.match("llm.internal", "/api/generate/x") is None
    assert router.match("api.anthropic.com", "/v1/messages") is None


def test_of_fifty_acquires_while_half_open_exactly_one_gets_a_permit(
    router: Router, clock: FakeClock
) -> None:
    open_(router, "claude", "a")
    clock.advance(30)
    permits = [router.acquire("claude", "a") for _ in range(50)]
    granted = [p for p in permits if p is not None]
    assert len(granted) == 1
    assert granted[0].probe is True


def test_the_probe_result_closes_the_breaker(router: Router, clock: FakeClock) -> None:
    open_(router, "claude", "a")
    clock.advance(30)
    probe = router.acquire("claude", "a")
    router.record_result("claude", "a", classify_status(200), probe)
    assert router.breaker("claude", "a").state is State.CLOSED
    assert order(router) == ["a", "b", "c"]


def test_state_changes_are_reported_with_app_and_provider(clock: FakeClock) -> None:
    seen: list[tuple[str, str, State, State]] = []
    router = Router(config(), clock, on_state_change=lambda *change: seen.append(change))
    open_(router, "claude", "b")
    router.reset("claude", "b")
    assert seen == [
        ("claude", "b", State.CLOSED, State.OPEN),
        ("claude", "b", State.OPEN, State.CLOSED),
    ]
