"""`ccswitch test`: the request each provider gets, and how its answer is judged (no network)."""

from __future__ import annotations

import json

import pytest

from ccswitch_addon.cli.preflight import PROMPT, Check, _judge, _request
from ccswitch_addon.core.config import Api, AppConfig, ProviderConfig, parse_config

KEY = "sk-own-0123456789"
ENV = {"KEY": KEY}


def one(app: str, spec: str) -> tuple[AppConfig, ProviderConfig]:
    text = f"apps:\n  {app}:\n    queue: [p]\n    providers:\n      p: {spec}\n"
    config = parse_config(text, "p.yaml", env=ENV).apps[app]
    return config, config.providers["p"]


def checked(status: int, content_type: str, data: bytes, keyed: bool = True) -> Check:
    check = Check("claude", "p", reachable=True, tls=True, ttfb_ms=123.4)
    result = _judge(check, Api.ANTHROPIC, status, content_type, data, keyed)
    assert result is check
    return check


def sse(*events: tuple[str, dict[str, object]]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


START = ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 12}}})
STOP = ("message_stop", {"type": "message_stop"})


def delta(tokens: int) -> tuple[str, dict[str, object]]:
    return ("message_delta", {"type": "message_delta", "usage": {"output_tokens": tokens}})


TEXT = (
    "content_block_delta",
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}},
)
SSE = "text/event-stream; charset=utf-8"


# --- judging an answer ---------------------------------------------------------------------------


def test_a_complete_stream_passes() -> None:
    check = checked(200, SSE, sse(START, TEXT, delta(1), STOP))
    assert (check.auth, check.model, check.streaming) == (True, True, True)
    assert check.detail == "ok"
    assert check.passed is True
    assert check.row() == ["claude", "p", "ok", "ok", "ok", "ok", "123", "ok", "ok"]


def test_an_empty_completion_fails_streaming() -> None:
    check = checked(200, SSE, sse(START, delta(0), STOP))
    assert (check.auth, check.model, check.streaming) == (True, True, False)
    assert check.detail == "empty completion"
    assert check.passed is False
    assert check.row()[5:] == ["ok", "123", "FAIL", "empty completion"]


def test_a_stream_cut_before_its_end_fails_streaming() -> None:
    check = checked(200, SSE, sse(START, TEXT))
    assert check.streaming is False
    assert check.detail == "stream ended before its end marker"
    assert check.passed is False


def test_an_error_event_in_a_200_fails_streaming() -> None:
    error = ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    check = checked(200, SSE, sse(START, error))
    assert check.streaming is False
    assert check.detail == "overloaded_error: busy"
    assert check.passed is False


def test_a_json_answer_is_not_streaming() -> None:
    body = json.dumps({"content": [{"type": "text", "text": "ok"}], "usage": {"output_tokens": 1}})
    check = checked(200, "application/json", body.encode())
    assert (check.auth, check.model, check.streaming) == (True, True, False)
    assert check.detail == "answered without streaming"
    assert check.passed is False


def test_a_401_with_a_key_of_its_own_fails_auth() -> None:
    check = checked(401, "application/json", b'{"error":\n"invalid x-api-key"}')
    assert check.auth is False
    assert (check.model, check.streaming) == (None, None)
    assert check.detail == '401: {"error": "invalid x-api-key"}'
    assert check.passed is False
    assert check.row() == [
        "claude",
        "p",
        "ok",
        "ok",
        "FAIL",
        "-",
        "123",
        "-",
        '401: {"error": "invalid x-api-key"}',
    ]


def test_a_403_with_a_key_fails_auth_too() -> None:
    check = checked(403, "text/plain", b"forbidden")
    assert check.auth is False
    assert check.detail == "403: forbidden"
    assert check.passed is False


def test_a_401_without_a_key_leaves_auth_untested() -> None:
    check = checked(401, "application/json", b'{"error": "no key"}', keyed=False)
    assert (check.auth, check.model, check.streaming) == (None, None, None)
    assert check.detail == "401 (passthrough: no key to test)"
    assert check.passed is True  # the host answers; without a key there is nothing more to learn
    assert check.row()[4] == "untested"


def test_a_404_is_a_wrong_model() -> None:
    check = checked(404, "application/json", b'{"error": "not_found_error"}')
    assert (check.auth, check.model, check.streaming) == (True, False, None)
    assert check.detail == '404: {"error": "not_found_error"}'
    assert check.passed is False
    assert check.row()[4:6] == ["ok", "FAIL"]


@pytest.mark.parametrize("status", [400, 422])
def test_a_400_mentioning_the_model_is_a_wrong_model(status: int) -> None:
    check = checked(status, "application/json", b'{"error": "Unknown MODEL: claude-x"}')
    assert (check.auth, check.model, check.streaming) == (True, False, None)
    assert check.detail == f'{status}: {{"error": "Unknown MODEL: claude-x"}}'
    assert check.passed is False


def test_a_400_about_something_else_fails_the_request() -> None:
    check = checked(400, "application/json", b'{"error": "max_tokens too small"}')
    assert (check.auth, check.model, check.streaming) == (True, None, False)
    assert check.detail == '400: {"error": "max_tokens too small"}'
    assert check.passed is False


def test_a_500_fails_the_request_but_not_auth_or_model() -> None:
    check = checked(500, "text/html", b"<h1>Internal Server Error</h1>")
    assert (check.auth, check.model, check.streaming) == (True, None, False)
    assert check.detail == "500: <h1>Internal Server Error</h1>"
    assert check.passed is False
    assert check.row() == [
        "claude",
        "p",
        "ok",
        "ok",
        "ok",
        "-",
        "123",
        "FAIL",
        "500: <h1>Internal Server Error</h1>",
    ]


def test_the_detail_is_cut_at_300_bytes() -> None:
    check = checked(500, "text/plain", b"x" * 1000)
    assert check.detail == "500: " + "x" * 300


def test_a_200_without_a_key_passes_with_auth_untested() -> None:
    check = checked(200, SSE, sse(START, TEXT, delta(1), STOP), keyed=False)
    assert (check.auth, check.model, check.streaming) == (None, True, True)
    assert check.passed is True


@pytest.mark.parametrize(
    ("api", "data"),
    [
        (Api.OPENAI, b'data: {"choices":[{"delta":{"content":"ok"}}]}\n\ndata: [DONE]\n\n'),
        (
            Api.GEMINI,
            b'data: {"candidates":[{"content":{"parts":[{"text":"ok"}]},"finishReason":"STOP"}],'
            b'"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":1}}\n\n',
        ),
    ],
    ids=["openai", "gemini"],
)
def test_complete_streams_of_the_other_apis_pass(api: Api, data: bytes) -> None:
    check = _judge(Check("x", "p", reachable=True), api, 200, "text/event-stream", data, True)
    assert (check.model, check.streaming, check.detail) == (True, True, "ok")
    assert check.passed is True


@pytest.mark.parametrize(
    ("fields", "passed"),
    [
        ({}, False),  # never reached
        ({"reachable": False}, False),
        ({"reachable": True}, True),
        ({"reachable": True, "tls": False}, False),
        ({"reachable": True, "auth": False}, False),
        ({"reachable": True, "model": False}, False),
        ({"reachable": True, "streaming": False}, False),
        ({"reachable": True, "tls": True, "auth": True, "model": True, "streaming": True}, True),
    ],
)
def test_passed_needs_a_reachable_provider_and_no_failure(
    fields: dict[str, bool], passed: bool
) -> None:
    assert Check("a", "p", **fields).passed is passed


def test_an_unchecked_row_shows_dashes_and_plain_http() -> None:
    check = Check("codex", "p", reachable=False, detail="cannot connect: refused")
    assert check.row() == [
        "codex",
        "p",
        "FAIL",
        "n/a",
        "untested",
        "-",
        "-",
        "-",
        "cannot connect: refused",
    ]


# --- the request ----------------------------------------------------------------------------------


def test_claude_request() -> None:
    app, provider = one(
        "claude",
        "{base_url: 'https://openrouter.ai/api', api_key: '${KEY}', "
        "models: {'*': vendor/sonnet}, headers: {X-Title: ccswitch}}",
    )
    path, headers, body, keyed = _request(app, provider, {"ANTHROPIC_API_KEY": "sk-tool"})
    assert path == "/api/v1/messages"
    assert headers == {
        "content-type": "application/json",
        "accept": "text/event-stream",
        "x-api-key": KEY,  # the provider's own key, not the tool's
        "X-Title": "ccswitch",
        "anthropic-version": "2023-06-01",
    }
    assert json.loads(body) == {
        "model": "vendor/sonnet",
        "max_tokens": 8,
        "stream": True,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    assert keyed is True


def test_codex_request() -> None:
    app, provider = one("codex", "{base_url: 'https://api.deepseek.com/v1', api_key: '${KEY}'}")
    path, headers, body, keyed = _request(app, provider, {})
    assert path == "/v1/chat/completions"  # not /v1/v1/…
    assert headers == {
        "content-type": "application/json",
        "accept": "text/event-stream",
        "authorization": f"Bearer {KEY}",
    }
    assert json.loads(body) == {
        "model": "gpt-5",
        "max_tokens": 8,
        "stream": True,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    assert keyed is True


def test_gemini_request() -> None:
    app, provider = one(
        "gemini",
        "{base_url: 'https://g.example/v1beta', api_key: '${KEY}', "
        "models: {gemini-2.5-flash: gemini-2.0-flash}}",
    )
    path, headers, body, keyed = _request(app, provider, {})
    assert path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    assert headers == {
        "content-type": "application/json",
        "accept": "text/event-stream",
        "x-goog-api-key": KEY,
    }
    assert json.loads(body) == {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    assert keyed is True


def test_a_custom_app_speaks_openai() -> None:
    text = (
        "apps:\n  tool:\n    hosts: [api.tool.example]\n    paths: [/v1/]\n    queue: [p]\n"
        "    providers:\n      p: {base_url: 'https://t.example', api_key: '${KEY}'}\n"
    )
    app = parse_config(text, "p.yaml", env=ENV).apps["tool"]
    path, headers, _, _ = _request(app, app.providers["p"], {})
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    ("app", "env", "header", "value"),
    [
        ("claude", {"ANTHROPIC_API_KEY": "sk-ant"}, "x-api-key", "sk-ant"),
        ("codex", {"OPENAI_API_KEY": "sk-oai"}, "authorization", "Bearer sk-oai"),
        ("gemini", {"GEMINI_API_KEY": "AIza-gem"}, "x-goog-api-key", "AIza-gem"),
        ("gemini", {"GOOGLE_API_KEY": "AIza-goo"}, "x-goog-api-key", "AIza-goo"),
        (
            "gemini",
            {"GEMINI_API_KEY": "AIza-gem", "GOOGLE_API_KEY": "AIza-goo"},
            "x-goog-api-key",
            "AIza-gem",
        ),
        (
            "gemini",
            {"GEMINI_API_KEY": "", "GOOGLE_API_KEY": "AIza-goo"},
            "x-goog-api-key",
            "AIza-goo",
        ),
    ],
)
def test_passthrough_takes_the_tools_key_from_the_environment(
    app: str, env: dict[str, str], header: str, value: str
) -> None:
    config, provider = one(app, "{base_url: 'https://p.example', auth: passthrough}")
    _, headers, _, keyed = _request(config, provider, env)
    assert keyed is True
    assert headers[header] == value
    others = {"x-api-key", "authorization", "x-goog-api-key"} - {header}
    assert not others & set(headers)


@pytest.mark.parametrize(
    ("app", "env"),
    [
        ("claude", {}),
        ("claude", {"ANTHROPIC_API_KEY": ""}),
        ("claude", {"OPENAI_API_KEY": "sk-oai", "GEMINI_API_KEY": "AIza"}),  # another tool's
        ("codex", {"ANTHROPIC_API_KEY": "sk-ant"}),
        ("gemini", {"OPENAI_API_KEY": "sk-oai"}),
    ],
)
def test_passthrough_without_the_tools_key_goes_unkeyed(app: str, env: dict[str, str]) -> None:
    config, provider = one(app, "{base_url: 'https://p.example', auth: passthrough}")
    _, headers, _, keyed = _request(config, provider, env)
    assert keyed is False
    assert not {"x-api-key", "authorization", "x-goog-api-key"} & set(headers)


def test_a_providers_own_anthropic_version_wins() -> None:
    config = parse_config(
        """\
apps:
  claude:
    queue: [a]
    providers:
      a:
        base_url: "https://a.example"
        api_key: "${K}"
        headers: {anthropic-version: "2024-01-01"}
""",
        "p.yaml",
        env={"K": "sk-test-0123456789"},
    )
    app = config.apps["claude"]
    _, headers, _, _ = _request(app, app.providers["a"], {})
    assert headers["anthropic-version"] == "2024-01-01"
