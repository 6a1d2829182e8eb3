"""What the tool gets when a provider's answer does not fit its request: a 200 carrying an
error (what new-api/one-api gateways send), and a stream sent to a request that asked for none."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from e2e.fakes import parse_sse

from .conftest import MakeHarness
from .providers import Provider, stream, whole
from .test_exchange import CONFIG, STREAMS

CHAT = """\
apps:
  claude:
    queue: [primary, backup]
    breaker: {failure_threshold: 3, first_byte_seconds: 2, stream_idle_seconds: 2}
    providers:
      primary: {base_url: "<primary>", api_key: "${K}", format: openai_chat}
      backup: {base_url: "<backup>", api_key: "${K}", format: openai_chat}
  codex:
    queue: [primary, backup]
    breaker: {failure_threshold: 3, first_byte_seconds: 2, stream_idle_seconds: 2}
    providers:
      primary: {base_url: "<primary>", api_key: "${K}", format: openai_chat}
      backup: {base_url: "<backup>", api_key: "${K}", format: openai_chat}
"""


def gateway_error(provider: Provider, request: web.Request) -> web.Response:
    body = {"error": {"message": "insufficient quota", "type": "new_api_error", "code": None}}
    return web.json_response(body)  # status 200, as such gateways answer


async def json_error_200(provider: Provider, request: web.Request) -> web.StreamResponse:
    return gateway_error(provider, request)


@pytest.mark.parametrize(
    ("config", "app", "shape"),
    [
        (CONFIG, "claude", "anthropic"),
        (CHAT, "claude", "anthropic"),
        (CONFIG, "codex", "openai"),
        (CHAT, "codex", "openai"),
    ],
)
async def test_every_provider_answering_200_with_an_error_gives_an_error_status(
    harness: MakeHarness, config: str, app: str, shape: str
) -> None:
    h = await harness(config, primary=json_error_200, backup=json_error_200)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    if app == "codex":
        body = {"model": "m", "stream": True, "input": "hi"}
    answer = await h.send(app, body=body)
    assert answer.status == 502
    error = json.loads(answer.body)
    if shape == "anthropic":
        assert error["type"] == "error"
        assert error["error"]["type"] == "api_error"
    else:
        assert error["error"]["type"] == "server_error"
    assert "insufficient quota" in error["error"]["message"]
    assert h.breaker("primary", app).consecutive_failures == 1


@pytest.mark.parametrize("fmt", ["anthropic", "openai_chat", "openai_responses", "gemini"])
async def test_a_stream_sent_to_a_request_for_none_reaches_the_tool_as_one_json(
    harness: MakeHarness, fmt: str
) -> None:
    app, path = STREAMS[fmt]
    path = path.replace(":streamGenerateContent?alt=sse", ":generateContent")
    h = await harness(CONFIG, primary=stream(whole(fmt, deltas=3)))
    answer = await h.send(app, path=path, body={"model": "m", "stream": False, "input": "x"})
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("application/json")
    document = json.loads(answer.body)
    text = json.dumps(document)
    assert "event:" not in text
    assert document.get("error") is None


async def test_a_chat_stream_to_a_translated_request_for_none_is_one_anthropic_message(
    harness: MakeHarness,
) -> None:
    h = await harness(CHAT, primary=stream(whole("openai_chat", deltas=3)))
    body = {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]}
    answer = await h.send("claude", body=body)
    assert answer.status == 200
    message = json.loads(answer.body)
    assert message["type"] == "message"
    assert message["content"][0]["type"] == "text"
    assert message["content"][0]["text"]
    assert message["stop_reason"] == "end_turn"
    streamed = await h.send("claude", body={**body, "stream": True})
    assert parse_sse(streamed.body)[0].event == "message_start"
