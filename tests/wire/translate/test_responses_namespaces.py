"""Codex's default-model tools through a Chat provider: the ``additional_tools`` input item,
namespaces flattened and restored, custom (freeform) tools both ways, hosted tools logged."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from ccswitch_addon.wire.translate import responses_tools
from ccswitch_addon.wire.translate.responses_chat import (
    ResponsesTools,
    answer_to_responses,
    request_to_chat,
)
from ccswitch_addon.wire.translate.responses_chat_stream import ChatToResponsesStream

from .streams import events, run_every_way, sse
from .test_anthropic_chat_stream import chunk, tool

EXEC = {
    "type": "custom",
    "name": "exec",
    "description": "Run JavaScript that calls the nested tools.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: /[\\s\\S]+/"},
}
WAIT = {
    "type": "function",
    "name": "wait",
    "description": "Wait for a running exec.",
    "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
}
SLEEP = {"type": "function", "name": "sleep", "parameters": {"type": "object", "properties": {}}}
ADDITIONAL = {
    "type": "additional_tools",
    "role": "developer",
    "tools": [
        {"type": "namespace", "name": "functions", "tools": [EXEC, WAIT]},
        {"type": "namespace", "name": "clock", "tools": [SLEEP]},
    ],
}
JS = 'const r = await tools.exec_command({cmd: "cat x"}); text(r.output);'


def codex_request(*items: Any, tools: list[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "deepseek-chat",
        "input": [ADDITIONAL, {"type": "message", "role": "user", "content": "read x"}, *items],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "stream": True,
    }
    if tools is not None:
        body["tools"] = tools
    return body


def test_the_additional_tools_item_offers_every_namespace_member() -> None:
    registry = ResponsesTools()
    chat = request_to_chat(codex_request(), registry)
    names = [t["function"]["name"] for t in chat["tools"]]
    assert names == ["functions__exec", "functions__wait", "clock__sleep"]
    exec_tool = chat["tools"][0]["function"]
    assert exec_tool["parameters"]["required"] == ["input"]
    assert exec_tool["parameters"]["properties"]["input"]["type"] == "string"
    assert "lark grammar" in exec_tool["description"]
    assert chat["tools"][1]["function"]["parameters"] == WAIT["parameters"]
    assert chat["tool_choice"] == "auto"
    assert [m["role"] for m in chat["messages"]] == ["user"]  # the item is no message


def test_a_custom_call_in_a_namespace_comes_back_with_its_namespace_and_raw_input() -> None:
    registry = ResponsesTools()
    request_to_chat(codex_request(), registry)
    answer = {
        "id": "a1",
        "model": "deepseek-chat",
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": "functions__exec",
                                "arguments": json.dumps({"input": JS}),
                            },
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "clock__sleep", "arguments": "{}"},
                        },
                    ],
                },
            }
        ],
    }
    custom, sleep = answer_to_responses(answer, registry, "resp_1", 0)["output"]
    assert custom == {
        "id": "fc_call_1",
        "type": "custom_tool_call",
        "status": "completed",
        "call_id": "call_1",
        "name": "exec",
        "namespace": "functions",
        "input": JS,
    }
    assert (sleep["type"], sleep["name"], sleep["namespace"]) == ("function_call", "sleep", "clock")


def test_a_streamed_custom_call_split_everywhere_comes_back_whole() -> None:
    registry = ResponsesTools()
    request_to_chat(codex_request(), registry)
    arguments = json.dumps({"input": JS + " // é"}, ensure_ascii=False)
    raw = sse(
        chunk({"tool_calls": [tool(0, "call_1", "functions__exec", arguments[:20])]}),
        chunk({"tool_calls": [tool(0, args=arguments[20:])]}),
        chunk(finish="tool_calls"),
    )
    found = events(run_every_way(lambda: ChatToResponsesStream(registry), raw))
    names = [n for n, _ in found]
    assert "response.custom_tool_call_input.delta" in names
    (item,) = found[-1][1]["response"]["output"]
    assert (item["type"], item["name"], item["namespace"]) == (
        "custom_tool_call",
        "exec",
        "functions",
    )
    assert item["input"] == JS + " // é"


def test_a_custom_call_and_its_list_output_replay_as_a_chat_tool_turn() -> None:
    registry = ResponsesTools()
    history = [
        {
            "type": "custom_tool_call",
            "call_id": "call_1",
            "name": "exec",
            "namespace": "functions",
            "input": JS,
        },
        {
            "type": "custom_tool_call_output",
            "call_id": "call_1",
            "output": [
                {"type": "input_text", "text": "Script completed\n"},
                {"type": "input_text", "text": "hello from x"},
            ],
        },
    ]
    chat = request_to_chat(codex_request(*history), registry)
    assistant, result = chat["messages"][1:3]
    (call,) = assistant["tool_calls"]
    assert call["id"] == "call_1"
    assert call["function"]["name"] == "functions__exec"
    assert json.loads(call["function"]["arguments"]) == {"input": JS}
    assert result == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "Script completed\nhello from x",
    }


def test_top_level_namespaces_are_flattened_and_long_names_kept_within_64() -> None:
    registry = ResponsesTools()
    server = "mcp__" + "a_very_long_server_name_" * 3
    member = {**WAIT, "name": "look_up_the_thing_in_the_index"}
    top = [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
        {"type": "namespace", "name": server, "tools": [member]},
    ]
    chat = request_to_chat({"model": "m", "input": "q", "tools": top}, registry)
    plain, flat = (t["function"]["name"] for t in chat["tools"])
    assert plain == "exec_command"
    assert len(flat) <= 64
    assert all(c.isalnum() or c in "_-" for c in flat)
    assert registry.original(flat) == (server, "look_up_the_thing_in_the_index")
    item = registry.call_item("c1", flat, '{"id": "1"}', "fc_c1")
    assert (item["namespace"], item["name"]) == (server, "look_up_the_thing_in_the_index")


def test_hosted_tools_are_logged_not_dropped_silently(caplog: pytest.LogCaptureFixture) -> None:
    responses_tools._WARNED.discard("web_search")
    with caplog.at_level(logging.WARNING):
        chat = request_to_chat(
            {"model": "m", "input": "q", "tools": [{"type": "web_search"}, WAIT]},
            ResponsesTools(),
        )
    assert [t["function"]["name"] for t in chat["tools"]] == ["wait"]
    assert any("web_search" in r.getMessage() for r in caplog.records)


def test_a_repeated_declaration_from_history_is_offered_once() -> None:
    chat = request_to_chat(codex_request(ADDITIONAL), ResponsesTools())
    assert len(chat["tools"]) == 3


def test_a_custom_call_whose_arguments_are_raw_text_keeps_the_text() -> None:
    registry = ResponsesTools()
    request_to_chat(codex_request(), registry)
    item = registry.call_item("c1", "functions__exec", JS, "fc_c1")
    assert item["input"] == JS
