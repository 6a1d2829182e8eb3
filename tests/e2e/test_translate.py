"""Translated providers through a real mitmdump: Claude Code and Codex CLI served by a Chat
Completions provider, tool calls and their results both ways, failover to a Chat backup."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from ccswitch_addon.cli.preflight import check_provider
from ccswitch_addon.core.config import parse_config

from .fakes import (
    FakeProvider,
    chat_tool_call,
    error,
    ok_sse,
    sse_truncated,
    summarize_stream,
)
from .proxy import Proxy, request, wait_until
from .test_routing import BACKUP_KEY, CLIENT_HEADERS, MESSAGES, provider_status, start
from .test_state import logged

pytestmark = pytest.mark.e2e

RESPONSES = "https://api.openai.com/v1/responses"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CLAUDE_TURN = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 256,
    "stream": True,
    "system": [
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
    ],
    "tools": [WEATHER],
    "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
}


def chat_provider(app: str, url: str, model: str, extra: str = "") -> str:
    return f"""\
      chat:
        base_url: {url}/v1
        format: openai_chat
        api_key: ${{BACKUP_KEY}}
        models: {{"{model}": "chat-model"}}
{extra}"""


def claude_chat_config(url: str) -> str:
    return f"""\
apps:
  claude:
    queue: [chat]
    providers:
{chat_provider("claude", url, "claude-sonnet-4-5")}"""


def events_of(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in summarize_stream("anthropic", body).events]


def test_claude_code_turn_with_a_tool_on_a_chat_provider(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    chat = fakes("chat")
    chat.queue(chat_tool_call("get_weather", {"city": "Paris", "unit": "°C"}))
    chat.default = ok_sse("openai_chat", events=3, input_tokens=40, output_tokens=6)
    proxy = start(make_proxy, claude_chat_config(chat.url))

    reply = request(
        proxy, "POST", MESSAGES + "?beta=true", json=CLAUDE_TURN, headers=CLIENT_HEADERS
    )

    assert reply.status == 200, reply.text()
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = events_of(reply.body)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    tool_start = next(
        e
        for e in events
        if e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use"
    )
    assert tool_start["content_block"]["id"] == "call_fake_1"
    assert tool_start["content_block"]["name"] == "get_weather"
    arguments = "".join(
        e["delta"]["partial_json"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"
    )
    assert json.loads(arguments) == {"city": "Paris", "unit": "°C"}
    delta = events[-2]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == 9

    (sent,) = chat.requests
    assert sent.path == "/v1/chat/completions"  # /v1 of the base URL not doubled, no ?beta
    assert sent.query == {}
    assert sent.headers["authorization"] == f"Bearer {BACKUP_KEY}"
    assert "x-api-key" not in sent.headers
    assert "anthropic-version" not in sent.headers
    body = sent.json()
    assert body["model"] == "chat-model"
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"][0] == {"role": "system", "content": "You are Claude Code."}
    assert body["tools"][0]["function"]["name"] == "get_weather"

    # The tool result goes back; the provider sees it as a tool message after the call.
    follow_up = {
        **CLAUDE_TURN,
        "messages": [
            *CLAUDE_TURN["messages"],
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {
                        "type": "tool_use",
                        "id": "call_fake_1",
                        "name": "get_weather",
                        "input": {"city": "Paris", "unit": "°C"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_fake_1", "content": "18 °C, sunny"}
                ],
            },
        ],
    }
    second = request(proxy, "POST", MESSAGES, json=follow_up, headers=CLIENT_HEADERS)
    assert second.status == 200
    summary = summarize_stream("anthropic", second.body)
    assert summary.finished
    assert summary.text == "chunk0 chunk1 chunk2 "
    messages = chat.requests[1].json()["messages"]
    assert messages[-2]["tool_calls"][0]["id"] == "call_fake_1"
    assert json.loads(messages[-2]["tool_calls"][0]["function"]["arguments"])["city"] == "Paris"
    assert messages[-1] == {
        "role": "tool",
        "tool_call_id": "call_fake_1",
        "content": "18 °C, sunny",
    }
    # Usage was read from what the tool received (the translated stream).
    rows = logged(proxy, 2)
    assert [(r[1], r[6], r[7], r[8]) for r in rows] == [("chat", 23, 9, 1), ("chat", 40, 6, 1)]


def test_count_tokens_is_answered_locally_for_a_chat_provider(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    chat = fakes("chat")
    proxy = start(make_proxy, claude_chat_config(chat.url))
    reply = request(
        proxy, "POST", MESSAGES + "/count_tokens", json=CLAUDE_TURN, headers=CLIENT_HEADERS
    )
    assert reply.status == 200
    assert reply.json()["input_tokens"] > 0
    assert chat.requests == []


def test_codex_turn_with_a_tool_and_previous_response_id(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    chat = fakes("chat")
    chat.queue(chat_tool_call("shell", {"command": ["ls", "-la"]}, text=""))
    chat.default = ok_sse("openai_chat", events=2)
    config = f"""\
apps:
  codex:
    queue: [chat]
    providers:
{chat_provider("codex", chat.url, "gpt-5-codex")}"""
    proxy = start(make_proxy, config)
    headers = {"authorization": "Bearer client-own-key"}
    turn = {
        "model": "gpt-5-codex",
        "instructions": "You are Codex.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "list files"}]}],
        "tools": [
            {
                "type": "function",
                "name": "shell",
                "parameters": {"type": "object", "properties": {"command": {"type": "array"}}},
            }
        ],
        "stream": True,
        "store": True,
    }

    reply = request(proxy, "POST", RESPONSES, json=turn, headers=headers)

    assert reply.status == 200, reply.text()
    events = [json.loads(e.data) for e in reply.sse()]
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    completed = events[-1]["response"]
    (call,) = [item for item in completed["output"] if item["type"] == "function_call"]
    assert call["name"] == "shell"
    assert call["call_id"] == "call_fake_1"
    assert json.loads(call["arguments"]) == {"command": ["ls", "-la"]}
    assert completed["usage"]["input_tokens"] == 23
    sent = chat.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.json()["messages"][0] == {"role": "system", "content": "You are Codex."}

    # Codex continues with only the tool's output and the previous response's id.
    follow_up = {
        "model": "gpt-5-codex",
        "previous_response_id": completed["id"],
        "input": [
            {"type": "function_call_output", "call_id": "call_fake_1", "output": "a.txt b.txt"}
        ],
        "tools": turn["tools"],
        "stream": True,
    }
    second = request(proxy, "POST", RESPONSES, json=follow_up, headers=headers)
    assert second.status == 200, second.text()
    assert summarize_stream("openai_responses", second.body).text == "chunk0 chunk1 "
    messages = chat.requests[1].json()["messages"]
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant", "tool"]  # instructions are not history
    assert messages[1]["tool_calls"][0]["id"] == "call_fake_1"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_fake_1", "content": "a.txt b.txt"}
    # The turn is in the state file for the next run.
    wait_until(
        lambda: (
            b"call_fake_1" in proxy.state_path.read_bytes()
            or b"call_fake_1" in (proxy.state_path.with_name("state.db-wal").read_bytes())
        ),
        10,
        "the remembered turn in the state file",
    )


def test_failover_from_an_anthropic_primary_to_a_chat_backup_streams_live(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, chat = fakes("primary"), fakes("chat")
    primary.queue(error(529))
    chat.queue(ok_sse("openai_chat", events=12, interval=0.15, output_tokens=12))
    config = f"""\
apps:
  claude:
    queue: [primary, chat]
    providers:
      primary:
        base_url: {primary.url}
        auth: passthrough
{chat_provider("claude", chat.url, "claude-sonnet-4-5")}"""
    proxy = start(make_proxy, config)

    reply = request(proxy, "POST", MESSAGES, json=CLAUDE_TURN, headers=CLIENT_HEADERS)

    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "chat"
    assert reply.headers["x-ccswitch-attempts"] == "2"
    summary = summarize_stream("anthropic", reply.body)
    assert summary.finished
    assert summary.text.startswith("chunk0 chunk1")
    assert summary.output_tokens == 12
    # Live: the first event reached the client long before the provider's last one was sent.
    assert reply.first_byte is not None
    assert reply.chunks[-1][0] - reply.first_byte > 1.0
    assert len(reply.chunks) > 5
    assert primary.requests[0].path == "/v1/messages"


def test_a_chat_stream_cut_after_the_commit_point_ends_with_an_anthropic_error(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    chat = fakes("chat")
    chat.queue(sse_truncated("openai_chat", after=3, interval=0.1))
    proxy = start(make_proxy, claude_chat_config(chat.url))

    reply = request(proxy, "POST", MESSAGES, json=CLAUDE_TURN, headers=CLIENT_HEADERS)

    assert reply.status == 200
    summary = summarize_stream("anthropic", reply.body)
    assert summary.text == "chunk0 chunk1 chunk2 "
    assert not summary.finished
    assert summary.error["type"] == "api_error"
    assert "finish_reason" in summary.error["message"]
    entry = wait_until(
        lambda: (e := provider_status(proxy, "chat")) and e.get("last_failure") and e,
        10,
        "the failure counted",
    )
    assert entry["last_failure"]


def test_a_thinking_signature_refusal_is_retried_once_without_thinking(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    refusal = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "messages.1.content.0: Invalid `signature` in `thinking` block",
        },
    }
    primary.queue(error(400, body=refusal))
    primary.default = ok_sse("anthropic", events=2)
    config = f"""\
apps:
  claude:
    queue: [primary, backup]
    breaker: {{failure_threshold: 1}}
    providers:
      primary: {{base_url: "{primary.url}", auth: passthrough}}
      backup: {{base_url: "{backup.url}", auth: passthrough}}
"""
    proxy = start(make_proxy, config)
    signed = {
        **CLAUDE_TURN,
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "from-the-backup"},
                    {"type": "text", "text": "hello"},
                ],
            },
            {"role": "user", "content": "again"},
        ],
    }

    reply = request(proxy, "POST", MESSAGES, json=signed, headers=CLIENT_HEADERS)

    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "primary"
    assert reply.headers["x-ccswitch-attempts"] == "1"  # the retry is not an attempt
    first, second = primary.requests
    assert first.json()["messages"][1]["content"][0]["type"] == "thinking"
    assert second.json()["messages"][1]["content"] == [{"type": "text", "text": "hello"}]
    assert backup.requests == []
    entry = provider_status(proxy, "primary")
    assert entry["state"] == "closed"
    assert not entry.get("last_failure")


def test_a_chat_stream_that_fails_before_its_first_token_goes_to_the_next_provider(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    chat, native = fakes("chat"), fakes("native")
    chat.queue(sse_truncated("openai_chat", after=0))
    native.default = ok_sse("anthropic", events=2)
    config = f"""\
apps:
  claude:
    queue: [chat, native]
    providers:
{chat_provider("claude", chat.url, "claude-sonnet-4-5")}
      native: {{base_url: "{native.url}", auth: passthrough}}
"""
    proxy = start(make_proxy, config)

    reply = request(proxy, "POST", MESSAGES, json=CLAUDE_TURN, headers=CLIENT_HEADERS)

    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "native"
    summary = summarize_stream("anthropic", reply.body)
    assert summary.finished
    assert summary.error is None
    assert len(chat.requests) == 1
    assert len(native.requests) == 1


@pytest.mark.parametrize("app_name", ["claude", "codex"])
def test_ccswitch_test_sends_a_tool_call_through_the_translation(
    fakes: Callable[[str], FakeProvider], app_name: str
) -> None:
    chat = fakes("chat")
    chat.queue(chat_tool_call("ccswitch_ping", {"word": "ok"}))
    chat.queue(ok_sse("openai_chat", events=2))  # a provider that ignores the tools
    model = "claude-sonnet-4-5" if app_name == "claude" else "gpt-5-codex"
    config = parse_config(
        f"apps:\n  {app_name}:\n    queue: [chat]\n    providers:\n"
        + chat_provider(app_name, chat.url, model),
        "p.yaml",
        env={"BACKUP_KEY": BACKUP_KEY},
    ).apps[app_name]

    good = check_provider(config, config.providers["chat"], env={})
    lost = check_provider(config, config.providers["chat"], env={})

    assert good.passed, good
    assert good.tools is True
    assert "tool calls survive" in good.detail
    assert not lost.passed
    assert lost.tools is False
    assert "lost" in lost.detail
    sent = chat.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {BACKUP_KEY}"
    assert sent.json()["tools"][0]["function"]["name"] == "ccswitch_ping"
    assert sent.json()["stream"] is True
