"""What the Chat stream translators share: gathering a tool call, handing over whole calls."""

from __future__ import annotations

import json
from typing import Any

from ccswitch_addon.wire.translate.chat_stream import State, ToolCall
from ccswitch_addon.wire.translate.gemini_chat_stream import ChatToGeminiStream

from .streams import run_every_way, sse
from .test_anthropic_chat_stream import chunk, tool


def test_a_tool_call_keeps_the_first_id_and_name_and_every_piece() -> None:
    call = ToolCall()
    assert call.take({"id": "c1", "function": {"name": "read", "arguments": '{"a"'}}) == '{"a"'
    assert call.take({"id": "c2", "function": {"name": "write", "arguments": ":1}"}}) == ":1}"
    assert call.take({"function": {"arguments": {"not": "text"}}}) == ""
    assert (call.id, call.name, "".join(call.arguments)) == ("c1", "read", '{"a":1}')


def gemini(raw: bytes) -> tuple[list[dict[str, Any]], ChatToGeminiStream]:
    machines: list[ChatToGeminiStream] = []

    def factory() -> ChatToGeminiStream:
        machines.append(ChatToGeminiStream())
        return machines[-1]

    output = run_every_way(factory, raw).decode()
    found = [json.loads(line[len("data: ") :]) for line in output.split("\n") if line]
    return found, machines[-1]


def test_whole_calls_come_in_order_with_made_up_ids_and_nameless_ones_dropped() -> None:
    found, machine = gemini(
        sse(
            chunk({"tool_calls": [tool(0, None, "read", '{"p":'), tool(1, "c9", None, "{}")]}),
            chunk({"tool_calls": [tool(0, None, None, '"x"}'), tool(2, "c7", "ls", "")]}),
            chunk(finish="tool_calls"),
        )
    )
    assert machine.state is State.DONE
    parts = found[0]["candidates"][0]["content"]["parts"]
    calls = [part["functionCall"] for part in parts]
    assert [(c["id"], c["name"], c["args"]) for c in calls] == [
        ("call_c1_0", "read", {"p": "x"}),
        ("c7", "ls", {}),
    ]


def test_tool_calls_all_without_a_name_fail_the_stream() -> None:
    found, machine = gemini(
        sse(chunk({"tool_calls": [tool(0, "c1", None, "{}")]}), chunk(finish="stop"))
    )
    assert machine.failure == "every tool call came without a name"
    assert found == [
        {
            "error": {
                "code": 502,
                "message": "ccswitch: every tool call came without a name",
                "status": "UNAVAILABLE",
            }
        }
    ]
