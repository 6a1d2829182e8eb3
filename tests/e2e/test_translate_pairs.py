"""The pairs through the Chat form, through a real mitmdump: each tool completes a turn that
calls one of its own tools on a provider of another format, and sends the result back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from ccswitch_addon.cli.preflight import check_provider
from ccswitch_addon.core.config import parse_config

from .fakes import FakeProvider, chat_tool_call, ok_json, ok_sse, summarize_stream
from .fakes_tools import tool_call
from .proxy import Proxy, request
from .test_routing import BACKUP_KEY, CLIENT_HEADERS, MESSAGES, start
from .test_translate import CLAUDE_TURN, RESPONSES, events_of

pytestmark = pytest.mark.e2e

GEMINI = "https://generativelanguage.googleapis.com/v1beta/models/"
GEMINI_HEADERS = {
    "x-goog-api-key": "client-own-key",
    "x-goog-api-client": "google-genai-sdk/1.30.0",
}
JS = 'const r = await tools.exec_command({cmd: "cat x"}); text(r.output);'


def config(app: str, fmt: str, url: str, model: str, base: str = "") -> str:
    return f"""\
apps:
  {app}:
    queue: [other]
    providers:
      other:
        base_url: {url}{base}
        format: {fmt}
        api_key: ${{BACKUP_KEY}}
        models: {{"{model}": "provider-model"}}
"""


def tool_use_of(body: bytes) -> dict[str, Any]:
    events = events_of(body)
    assert events[-1]["type"] == "message_stop", events[-3:]
    blocks = [
        e["content_block"]
        for e in events
        if e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use"
    ]
    (block,) = blocks
    arguments = "".join(
        e["delta"]["partial_json"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"
    )
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    return {**block, "input": json.loads(arguments)}


def claude_follow_up(call: dict[str, Any]) -> dict[str, Any]:
    return {
        **CLAUDE_TURN,
        "messages": [
            *CLAUDE_TURN["messages"],
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "Let me check."}, call],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "18 °C"}],
            },
        ],
    }


@pytest.mark.parametrize(("fmt", "base"), [("openai_responses", "/v1"), ("gemini", "")])
def test_claude_code_turn_with_a_tool_on_a_responses_or_gemini_provider(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], fmt: str, base: str
) -> None:
    other = fakes("other")
    other.queue(tool_call(fmt, "get_weather", {"city": "Paris", "unit": "°C"}))
    other.default = ok_sse(fmt, events=3, input_tokens=40, output_tokens=6)
    proxy = start(make_proxy, config("claude", fmt, other.url, "claude-sonnet-4-5", base))

    reply = request(
        proxy, "POST", MESSAGES + "?beta=true", json=CLAUDE_TURN, headers=CLIENT_HEADERS
    )

    assert reply.status == 200, reply.text()
    call = tool_use_of(reply.body)
    assert call["name"] == "get_weather"
    assert call["input"] == {"city": "Paris", "unit": "°C"}
    (sent,) = other.requests
    if fmt == "openai_responses":
        assert call["id"] == "call_fake_1"
        assert sent.path == "/v1/responses"
        assert sent.headers["authorization"] == f"Bearer {BACKUP_KEY}"
        assert sent.json()["model"] == "provider-model"
        assert sent.json()["tools"][0]["name"] == "get_weather"
    else:
        assert call["id"] == "call_gemini-fake-1_0"  # Gemini gave none: made from its response
        assert sent.path == "/v1beta/models/provider-model:streamGenerateContent"
        assert sent.query == {"alt": ["sse"]} or sent.query == {"alt": "sse"}
        assert sent.headers["x-goog-api-key"] == BACKUP_KEY
        declaration = sent.json()["tools"][0]["functionDeclarations"][0]
        assert declaration["name"] == "get_weather"
    assert "x-api-key" not in sent.headers
    assert "anthropic-beta" not in sent.headers

    second = request(proxy, "POST", MESSAGES, json=claude_follow_up(call), headers=CLIENT_HEADERS)
    assert second.status == 200, second.text()
    summary = summarize_stream("anthropic", second.body)
    assert summary.finished
    assert summary.text == "chunk0 chunk1 chunk2 "
    body = other.requests[1].json()
    if fmt == "openai_responses":
        kinds = [i["type"] for i in body["input"]]
        assert kinds[-2:] == ["function_call", "function_call_output"]
        assert body["input"][-1] == {
            "type": "function_call_output",
            "call_id": "call_fake_1",
            "output": "18 °C",
        }
    else:
        model_parts = body["contents"][1]["parts"]
        assert model_parts[-1]["thoughtSignature"] == "c2lnLWZha2U="  # Gemini's own, back
        result = body["contents"][2]["parts"][0]["functionResponse"]
        assert result == {"name": "get_weather", "response": {"output": "18 °C"}, "id": call["id"]}


def codex_turn(*items: Any) -> dict[str, Any]:
    exec_tool = {
        "type": "custom",
        "name": "exec",
        "description": "Run JavaScript.",
        "format": {"type": "grammar", "syntax": "lark", "definition": "start: /[\\s\\S]+/"},
    }
    wait = {"type": "function", "name": "wait", "parameters": {"type": "object", "properties": {}}}
    additional = {
        "type": "additional_tools",
        "role": "developer",
        "tools": [{"type": "namespace", "name": "functions", "tools": [exec_tool, wait]}],
    }
    return {
        "model": "gpt-6.2-sol",
        "instructions": "You are Codex.",
        "input": [
            additional,
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "cat x"}],
            },
            *items,
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "context": "all_turns"},
        "include": ["reasoning.encrypted_content"],
        "store": False,
        "stream": True,
    }


def test_codex_default_model_turn_with_its_exec_tool_on_an_anthropic_provider(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    claude = fakes("claude")
    claude.queue(tool_call("anthropic", "functions__exec", {"input": JS}, text=""))
    claude.default = ok_sse("anthropic", events=2)
    proxy = start(make_proxy, config("codex", "anthropic", claude.url, "gpt-6.2-sol"))
    headers = {"authorization": "Bearer client-own-key"}

    reply = request(proxy, "POST", RESPONSES, json=codex_turn(), headers=headers)

    assert reply.status == 200, reply.text()
    events = [json.loads(e.data) for e in reply.sse()]
    assert events[-1]["type"] == "response.completed", events[-1]
    (call,) = [i for i in events[-1]["response"]["output"] if i["type"] == "custom_tool_call"]
    assert (call["name"], call["namespace"], call["input"]) == ("exec", "functions", JS)
    (sent,) = claude.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == BACKUP_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    body = sent.json()
    assert body["model"] == "provider-model"
    assert [t["name"] for t in body["tools"]] == ["functions__exec", "functions__wait"]
    assert body["system"] == "You are Codex."

    output = {
        "type": "custom_tool_call_output",
        "call_id": call["call_id"],
        "output": [{"type": "input_text", "text": "contents of x"}],
    }
    second = request(proxy, "POST", RESPONSES, json=codex_turn(call, output), headers=headers)
    assert second.status == 200, second.text()
    assert [json.loads(e.data)["type"] for e in second.sse()][-1] == "response.completed"
    messages = claude.requests[1].json()["messages"]
    assert messages[-2]["content"] == [
        {
            "type": "tool_use",
            "id": call["call_id"],
            "name": "functions__exec",
            "input": {"input": JS},
        }
    ]
    assert messages[-1]["content"] == [
        {"type": "tool_result", "tool_use_id": call["call_id"], "content": "contents of x"}
    ]


CLASSIFIER = {
    "contents": [{"role": "user", "parts": [{"text": "route: read a.txt"}]}],
    "generationConfig": {
        "responseMimeType": "application/json",
        "responseJsonSchema": {
            "type": "object",
            "properties": {"model_choice": {"type": "string"}},
            "required": ["model_choice"],
        },
    },
}
READ_FILE = {
    "name": "read_file",
    "description": "Reads a file",
    "parametersJsonSchema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}},
        "required": ["file_path"],
    },
}


def gemini_turn(*contents: Any) -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": "read /w/a.txt"}]}, *contents],
        "systemInstruction": {"parts": [{"text": "You are Gemini CLI."}]},
        "tools": [{"functionDeclarations": [READ_FILE]}],
    }


def gemini_chunks(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in summarize_stream("gemini", body).events]


@pytest.mark.parametrize("fmt", ["openai_chat", "anthropic"])
def test_gemini_cli_classifier_and_turn_with_a_tool_on_a_chat_or_anthropic_provider(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], fmt: str
) -> None:
    other = fakes("other")
    choice = '{"model_choice": "flash"}'
    base = "/v1" if fmt == "openai_chat" else ""
    other.queue(ok_json(fmt, text=choice))
    if fmt == "openai_chat":
        other.queue(chat_tool_call("read_file", {"file_path": "/w/a.txt"}, text=""))
    else:
        other.queue(tool_call("anthropic", "read_file", {"file_path": "/w/a.txt"}, text=""))
    other.default = ok_sse(fmt, events=2)
    proxy = start(make_proxy, config("gemini", fmt, other.url, "*", base))

    classified = request(
        proxy,
        "POST",
        GEMINI + "gemini-3.5-flash-lite:generateContent",
        json=CLASSIFIER,
        headers=GEMINI_HEADERS,
    )
    assert classified.status == 200, classified.text()
    answer = classified.json()
    assert json.loads(answer["candidates"][0]["content"]["parts"][0]["text"]) == {
        "model_choice": "flash"
    }
    first = other.requests[0].json()
    if fmt == "openai_chat":
        assert first["response_format"]["type"] == "json_schema"
    else:
        assert "Reply with only a JSON value" in first["system"]
    assert "x-goog-api-key" not in other.requests[0].headers

    main = GEMINI + "gemini-3.5-pro:streamGenerateContent?alt=sse"
    reply = request(proxy, "POST", main, json=gemini_turn(), headers=GEMINI_HEADERS)
    assert reply.status == 200, reply.text()
    chunks = gemini_chunks(reply.body)
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    (call,) = [p["functionCall"] for p in parts if "functionCall" in p]
    assert (call["name"], call["args"]) == ("read_file", {"file_path": "/w/a.txt"})
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"

    result = {
        "functionResponse": {"id": call["id"], "name": "read_file", "response": {"output": "hi"}}
    }
    model_turn = {"role": "model", "parts": [{"functionCall": call}]}
    second = request(
        proxy,
        "POST",
        main,
        json=gemini_turn(model_turn, {"role": "user", "parts": [result]}),
        headers=GEMINI_HEADERS,
    )
    assert second.status == 200, second.text()
    text = "".join(
        p.get("text", "")
        for c in gemini_chunks(second.body)
        for p in c["candidates"][0]["content"]["parts"]
    )
    assert text == "chunk0 chunk1 "
    body = other.requests[2].json()
    if fmt == "openai_chat":
        assert body["messages"][-1] == {"role": "tool", "tool_call_id": call["id"], "content": "hi"}
    else:
        assert body["messages"][-1]["content"] == [
            {"type": "tool_result", "tool_use_id": call["id"], "content": "hi"}
        ]


@pytest.mark.parametrize(
    ("app_name", "fmt", "base"),
    [
        ("claude", "openai_responses", "/v1"),
        ("claude", "gemini", ""),
        ("codex", "anthropic", ""),
        ("gemini", "openai_chat", "/v1"),
        ("gemini", "anthropic", ""),
    ],
)
def test_ccswitch_test_sends_a_tool_call_through_each_new_pair(
    fakes: Callable[[str], FakeProvider], app_name: str, fmt: str, base: str
) -> None:
    other = fakes("other")
    if fmt == "openai_chat":
        other.queue(chat_tool_call("ccswitch_ping", {"word": "ok"}))
    else:
        other.queue(tool_call(fmt, "ccswitch_ping", {"word": "ok"}))
    text = config(app_name, fmt, other.url, "*", base)
    app = parse_config(text, "p.yaml", env={"BACKUP_KEY": BACKUP_KEY}).apps[app_name]
    check = check_provider(app, app.providers["other"], env={})
    assert check.passed, check
    assert check.tools is True


def test_codex_default_model_turn_with_its_exec_tool_on_a_chat_provider(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    chat = fakes("chat")
    chat.queue(chat_tool_call("functions__exec", {"input": JS}, text=""))
    chat.default = ok_sse("openai_chat", events=2)
    proxy = start(make_proxy, config("codex", "openai_chat", chat.url, "gpt-6.2-sol", "/v1"))
    headers = {"authorization": "Bearer client-own-key"}

    reply = request(proxy, "POST", RESPONSES, json=codex_turn(), headers=headers)

    assert reply.status == 200, reply.text()
    events = [json.loads(e.data) for e in reply.sse()]
    assert events[-1]["type"] == "response.completed", events[-1]
    (call,) = [i for i in events[-1]["response"]["output"] if i["type"] == "custom_tool_call"]
    assert (call["name"], call["namespace"], call["input"]) == ("exec", "functions", JS)
    sent = chat.requests[0].json()
    assert [t["function"]["name"] for t in sent["tools"]] == ["functions__exec", "functions__wait"]

    output = {
        "type": "custom_tool_call_output",
        "call_id": call["call_id"],
        "output": [{"type": "input_text", "text": "contents of x"}],
    }
    second = request(proxy, "POST", RESPONSES, json=codex_turn(call, output), headers=headers)
    assert second.status == 200, second.text()
    messages = chat.requests[1].json()["messages"]
    assert messages[-2]["tool_calls"][0]["function"]["name"] == "functions__exec"
    assert messages[-1] == {
        "role": "tool",
        "tool_call_id": call["call_id"],
        "content": "contents of x",
    }
