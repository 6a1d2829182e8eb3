"""The proxy's own answers, shaped like each API's errors so clients handle them."""

from __future__ import annotations

import json

import pytest

from ccswitch_addon.core.config import Api
from ccswitch_addon.wire.replies import Reply, api_error, unavailable

NOW = 1_700_000_000.0


def header(reply: Reply, name: str) -> str:
    [value] = [v for k, v in reply.headers if k == name]
    return value


def test_anthropic_all_unavailable_is_a_529_overloaded_error() -> None:
    reply = unavailable(Api.ANTHROPIC, "claude", "all_unavailable", NOW + 41.2, now=NOW)
    assert reply.status == 529
    assert header(reply, "content-type") == "application/json"
    assert header(reply, "retry-after") == "42"
    body = json.loads(reply.body)
    assert body["type"] == "error"
    assert body["error"]["type"] == "overloaded_error"
    message = body["error"]["message"]
    assert message == (
        "ccswitch: every provider for claude is open or cooling down; "
        "the first is allowed again in 42s"
    )


def test_openai_all_unavailable_is_a_503() -> None:
    reply = unavailable(Api.OPENAI, "codex", "all_unavailable", NOW + 5, now=NOW)
    assert reply.status == 503
    assert header(reply, "retry-after") == "5"
    error = json.loads(reply.body)["error"]
    assert error["type"] == "service_unavailable"
    assert "every provider for codex is open or cooling down" in error["message"]
    assert "in 5s" in error["message"]


def test_gemini_all_unavailable_is_a_503_unavailable() -> None:
    reply = unavailable(Api.GEMINI, "gemini", "all_unavailable", NOW + 90, now=NOW)
    assert reply.status == 503
    assert header(reply, "retry-after") == "90"
    error = json.loads(reply.body)["error"]
    assert error["code"] == 503
    assert error["status"] == "UNAVAILABLE"
    assert "every provider for gemini" in error["message"]


@pytest.mark.parametrize("api", list(Api))
def test_none_configured_names_the_reason_and_waits_a_minute(api: Api) -> None:
    reply = unavailable(api, "claude", "none_configured", None, now=NOW)
    assert reply.status == (529 if api is Api.ANTHROPIC else 503)
    assert header(reply, "retry-after") == "60"
    text = reply.body.decode()
    assert "no provider is configured for claude" in text
    assert "ccswitch check" in text


@pytest.mark.parametrize("retry_at", [None, NOW - 10, NOW, NOW + 0.2])
def test_retry_after_is_at_least_a_second(retry_at: float | None) -> None:
    reply = unavailable(Api.OPENAI, "codex", "all_unavailable", retry_at, now=NOW)
    assert header(reply, "retry-after") == "1"


@pytest.mark.parametrize(
    ("api", "body"),
    [
        (
            Api.ANTHROPIC,
            {"type": "error", "error": {"type": "permission_error", "message": "no"}},
        ),
        (
            Api.OPENAI,
            {"error": {"message": "no", "type": "permission_denied", "code": "permission_denied"}},
        ),
        (Api.GEMINI, {"error": {"code": 403, "message": "no", "status": "PERMISSION_DENIED"}}),
    ],
)
def test_api_error_shapes(api: Api, body: dict[str, object]) -> None:
    reply = api_error(api, 403, "no")
    assert reply.status == 403
    assert json.loads(reply.body) == body


def test_api_error_with_an_explicit_kind() -> None:
    reply = api_error(Api.ANTHROPIC, 400, "bad", kind="invalid_request_error")
    assert json.loads(reply.body)["error"] == {"type": "invalid_request_error", "message": "bad"}
