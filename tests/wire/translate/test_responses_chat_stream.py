"""Chat SSE → Responses events, each stream fed in every chunking."""

from __future__ import annotations

import json
from typing import Any

from ccswitch_addon.wire.translate.responses_chat import ResponsesTools
from ccswitch_addon.wire.translate.responses_chat_stream import ChatToResponsesStream, State

from .streams import events, run_every_way, sse
from .test_anthropic_chat_stream import chunk, tool, usage_chunk

Event = tuple[str, dict[str, Any]]


def translate(
    raw: bytes, tools: ResponsesTools | None = None
) -> tuple[list[Event], ChatToResponsesStream, list[Any]]:
    machines: list[ChatToResponsesStream] = []
    completed: list[Any] = []

    def factory() -> ChatToResponsesStream:
        completed.clear()
        machines.append(ChatToResponsesStream(tools, created_at=1, on_complete=completed.append))
        return machines[-1]

    found = events(run_every_way(factory, raw))
    check_sequence(found)
    return found, machines[-1], completed


def check_sequence(found: list[Event]) -> None:
    names = [n for n, _ in found]
    assert [d["sequence_number"] for _, d in found] == list(range(len(found)))
    if names and names[-1] != "response.failed":
        assert names[:2] == ["response.created", "response.in_progress"]
    terminals = {"response.completed", "response.incomplete", "response.failed"}
    assert sum(n in terminals for n in names) == 1
    assert names[-1] in terminals
    open_items: set[str] = set()
    for name, data in found:
        if name == "response.output_item.added":
            open_items.add(data["item"]["id"])
        elif name == "response.output_item.done":
            open_items.remove(data["item"]["id"])
        elif "item_id" in data:
            assert data["item_id"] in open_items, f"{name} for an item not open"


def terminal(found: list[Event]) -> dict[str, Any]:
    return found[-1][1]["response"]


def test_text_with_usage_in_a_later_chunk() -> None:
    raw = sse(
        chunk({"content": "Hel"}),
        chunk({"content": "lo 你好"}),
        chunk(finish="stop"),
        usage_chunk(10, 4),
    )
    found, machine, completed = translate(raw)
    names = [n for n, _ in found]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    response = terminal(found)
    assert response["status"] == "completed"
    assert response["output"][0]["content"][0]["text"] == "Hello 你好"
    assert response["usage"]["input_tokens"] == 10
    assert response["usage"]["output_tokens"] == 4
    assert response["id"] == "resp_c1"
    assert machine.finished
    assert completed == [response]


def test_reasoning_then_text_then_late_reasoning() -> None:
    raw = sse(
        chunk({"reasoning_content": "a"}),
        chunk({"reasoning_content": "b"}),
        chunk({"content": "X"}),
        chunk({"reasoning_content": "c"}),
        chunk({"content": "Y"}),
        chunk(finish="stop"),
    )
    found, _, _ = translate(raw)
    output = terminal(found)["output"]
    assert [item["type"] for item in output] == ["reasoning", "message"]
    assert output[0]["summary"] == [{"type": "summary_text", "text": "ab"}]
    assert output[1]["content"][0]["text"] == "XY"


def test_parallel_interleaved_tool_calls_with_late_ids_and_args_on_the_finish_chunk() -> None:
    raw = sse(
        chunk({"tool_calls": [tool(0, args='{"command":')]}),
        chunk({"tool_calls": [tool(0, "call_a", "shell")]}),
        chunk({"tool_calls": [tool(1, "call_b", "shell", '{"command"')]}),
        chunk({"tool_calls": [tool(1, args=':["pwd"]}')]}),
        chunk({"tool_calls": [tool(0, args='["ls"]}')]}, finish="tool_calls"),
    )
    found, _, _ = translate(raw)
    calls = terminal(found)["output"]
    assert [(c["call_id"], c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("call_a", "shell", {"command": ["ls"]}),
        ("call_b", "shell", {"command": ["pwd"]}),
    ]
    deltas = [d["delta"] for n, d in found if n == "response.function_call_arguments.delta"]
    assert [json.loads(d) for d in deltas] == [{"command": ["ls"]}, {"command": ["pwd"]}]


def test_a_custom_tool_call_comes_back_as_one() -> None:
    tools = ResponsesTools()
    tools.custom.add("apply_patch")
    patch = "*** Begin Patch\n*** Add File: a.txt\n+héllo\n*** End Patch"
    raw = sse(
        chunk(
            {"tool_calls": [tool(0, "call_p", "apply_patch", json.dumps({"input": patch})[:20])]}
        ),
        chunk({"tool_calls": [tool(0, args=json.dumps({"input": patch})[20:])]}),
        chunk(finish="tool_calls"),
    )
    found, _, _ = translate(raw, tools)
    (item,) = terminal(found)["output"]
    assert item == {
        "id": "fc_call_p",
        "type": "custom_tool_call",
        "status": "completed",
        "call_id": "call_p",
        "name": "apply_patch",
        "input": patch,
    }
    names = [n for n, _ in found]
    assert "response.custom_tool_call_input.delta" in names
    assert "response.custom_tool_call_input.done" in names


def test_tool_calls_all_without_a_name_fail_the_turn() -> None:
    found, machine, completed = translate(
        sse(chunk({"tool_calls": [tool(0, "c1", None, "{}")]}), chunk(finish="tool_calls"))
    )
    assert found[-1][0] == "response.failed"
    assert machine.failure == "every tool call came without a name"
    assert completed == []


def test_length_is_incomplete() -> None:
    found, machine, _ = translate(sse(chunk({"content": "ab"}), chunk(finish="length")))
    assert found[-1][0] == "response.incomplete"
    assert terminal(found)["incomplete_details"] == {"reason": "max_output_tokens"}
    assert machine.finished


def test_a_stream_cut_without_finish_reason_fails() -> None:
    found, machine, completed = translate(sse(chunk({"content": "ab"}), done=False))
    assert found[-1][0] == "response.failed"
    assert (
        terminal(found)["error"]["message"] == "ccswitch: the stream ended without a finish_reason"
    )
    assert machine.state is State.FAILED
    assert completed == []


def test_an_error_chunk_fails_the_turn() -> None:
    found, machine, _ = translate(sse(chunk({"content": "a"}), {"error": {"message": "boom"}}))
    assert found[-1][0] == "response.failed"
    assert machine.failure is not None
    assert "boom" in machine.failure


def test_a_10_kb_argument() -> None:
    arguments = json.dumps({"command": ["bash", "-lc", "echo " + "ü" * 6000]}, ensure_ascii=False)
    pieces = [arguments[i : i + 50] for i in range(0, len(arguments), 50)]
    raw = sse(
        chunk({"tool_calls": [tool(0, "c", "shell", "")]}),
        *(chunk({"tool_calls": [tool(0, args=p)]}) for p in pieces),
        chunk(finish="tool_calls"),
    )
    found, _, _ = translate(raw)
    assert terminal(found)["output"][0]["arguments"] == arguments


def test_parallel_calls_all_with_index_0_or_none_become_separate_items() -> None:
    no_index = {"id": "call_c", "type": "function", "function": {"name": "exec_command"}}
    no_index["function"]["arguments"] = '{"cmd":"pwd"}'
    raw = sse(
        chunk({"tool_calls": [tool(0, "call_a", "exec_command", '{"cmd":')]}),
        chunk({"tool_calls": [tool(0, args='"ls"}')]}),
        chunk({"tool_calls": [tool(0, "call_b", "exec_command", '{"cmd":"cat x"}')]}),
        chunk({"tool_calls": [no_index]}),
        chunk(finish="tool_calls"),
    )
    found, machine, _ = translate(raw)
    items = terminal(found)["output"]
    assert [(i["call_id"], json.loads(i["arguments"])) for i in items] == [
        ("call_a", {"cmd": "ls"}),
        ("call_b", {"cmd": "cat x"}),
        ("call_c", {"cmd": "pwd"}),
    ]
    assert machine.failure is None


def test_unterminated_streamed_arguments_are_repaired() -> None:
    raw = sse(
        chunk({"tool_calls": [tool(0, "call_1", "exec_command", '{"cmd": "cat /w/a.txt"')]}),
        chunk(finish="tool_calls"),
    )
    found, _, _ = translate(raw)
    (item,) = terminal(found)["output"]
    assert json.loads(item["arguments"]) == {"cmd": "cat /w/a.txt"}
