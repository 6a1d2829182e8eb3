"""Responses ↔ Chat Completions: requests, answers, errors, custom tools."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ccswitch_addon.wire.translate.common import BadAnswer, UntranslatableRequest
from ccswitch_addon.wire.translate.responses_chat import (
    ERROR_CODES,
    ResponsesTools,
    answer_to_responses,
    error_to_responses,
    request_to_chat,
)

APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Apply a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"},
}
SHELL = {
    "type": "function",
    "name": "shell",
    "description": "run a command",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"command": {"type": "array", "items": {"type": "string"}}},
    },
}


def chat(body: dict[str, Any], tools: ResponsesTools | None = None, **kw: Any) -> dict[str, Any]:
    body.setdefault("model", "deepseek-chat")
    return request_to_chat(body, tools or ResponsesTools(), **kw)


def msg(role: str, text: str) -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def test_instructions_and_a_string_input() -> None:
    assert chat({"instructions": "Be Codex.", "input": "hi"})["messages"] == [
        {"role": "system", "content": "Be Codex."},
        {"role": "user", "content": "hi"},
    ]


def test_developer_messages_join_the_system_message_at_the_head() -> None:
    result = chat({"instructions": "I", "input": [msg("developer", "D"), msg("user", "U")]})
    assert result["messages"] == [
        {"role": "system", "content": "I\n\nD"},
        {"role": "user", "content": "U"},
    ]


def test_consecutive_function_calls_become_one_assistant_message() -> None:
    items = [
        msg("user", "list and read"),
        msg("assistant", "Sure."),
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "shell",
            "arguments": '{"command":["ls"]}',
        },
        {
            "type": "function_call",
            "call_id": "c2",
            "name": "shell",
            "arguments": '{"command":["cat","a"]}',
        },
        {"type": "function_call_output", "call_id": "c1", "output": "a\nb"},
        {
            "type": "function_call_output",
            "call_id": "c2",
            "output": [{"type": "input_text", "text": "text of a"}],
        },
    ]
    messages = chat({"input": items})["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert messages[1]["content"] == "Sure."
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["c1", "c2"]
    assert messages[1]["tool_calls"][0]["function"] == {
        "name": "shell",
        "arguments": '{"command":["ls"]}',
    }
    assert messages[2] == {"role": "tool", "tool_call_id": "c1", "content": "a\nb"}
    assert messages[3]["content"] == "text of a"


def test_an_image_from_a_tool_output_moves_to_a_user_message() -> None:
    items = [
        {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
        {
            "type": "function_call_output",
            "call_id": "c1",
            "output": [
                {"type": "input_text", "text": "shot"},
                {"type": "input_image", "image_url": "data:image/png;base64,AA"},
            ],
        },
        msg("user", "and?"),
    ]
    messages = chat({"input": items})["messages"]
    assert messages[1] == {"role": "tool", "tool_call_id": "c1", "content": "shot"}
    assert messages[2]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
        {"type": "text", "text": "and?"},
    ]


def test_reasoning_items_go_to_the_next_assistant_message_when_wanted() -> None:
    items = [
        msg("user", "q"),
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "think"}]},
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {
            "type": "reasoning",
            "id": "rs_2",
            "summary": [{"type": "summary_text", "text": "dropped at the user turn"}],
        },
        msg("user", "next"),
    ]
    replayed = chat({"input": items}, replay_reasoning=True)["messages"]
    assert replayed[1]["reasoning_content"] == "think"
    assert "dropped" not in json.dumps(replayed)
    assert "reasoning_content" not in json.dumps(chat({"input": items})["messages"])


def test_a_trailing_reasoning_item_attaches_to_the_previous_answer() -> None:
    items = [
        msg("user", "q"),
        msg("assistant", "a"),
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "late"}]},
    ]
    assert (
        chat({"input": items}, replay_reasoning=True)["messages"][1]["reasoning_content"] == "late"
    )


def test_custom_tools_are_wrapped_and_their_calls_replayed() -> None:
    tools = ResponsesTools()
    items = [
        msg("user", "patch it"),
        {
            "type": "custom_tool_call",
            "call_id": "c9",
            "name": "apply_patch",
            "input": "*** Begin Patch",
        },
        {"type": "custom_tool_call_output", "call_id": "c9", "output": "Done"},
    ]
    result = chat({"input": items, "tools": [APPLY_PATCH, SHELL, {"type": "web_search"}]}, tools)
    wrapped, shell = result["tools"]
    assert wrapped["function"]["name"] == "apply_patch"
    assert wrapped["function"]["parameters"]["required"] == ["input"]
    assert "start: begin_patch" in wrapped["function"]["description"]
    assert shell["function"]["parameters"] == SHELL["parameters"]
    assert shell["function"]["strict"] is False
    call = result["messages"][1]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"input": "*** Begin Patch"}
    assert result["messages"][2] == {"role": "tool", "tool_call_id": "c9", "content": "Done"}
    assert tools.custom == {"apply_patch"}


def test_namespaced_and_long_names_are_flattened() -> None:
    tools = ResponsesTools()
    long = dict(SHELL, name="mcp.server/" + "t" * 70)
    result = chat(
        {"input": "q", "tools": [long], "tool_choice": {"type": "function", "name": long["name"]}},
        tools,
    )
    flat = result["tools"][0]["function"]["name"]
    assert len(flat) <= 64
    assert "." not in flat
    assert "/" not in flat
    assert result["tool_choice"] == {"type": "function", "function": {"name": flat}}
    assert tools.names.restore(flat) == long["name"]


def test_options() -> None:
    result = chat(
        {
            "input": "q",
            "tools": [SHELL],
            "tool_choice": "required",
            "parallel_tool_calls": False,
            "max_output_tokens": 500,
            "reasoning": {"effort": "high", "summary": "auto"},
            "temperature": 0.1,
            "stream": True,
            "store": False,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "abc",
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "out",
                    "schema": {"type": "object"},
                    "strict": True,
                }
            },
        }
    )
    assert result["tool_choice"] == "required"
    assert result["parallel_tool_calls"] is False
    assert result["max_tokens"] == 500
    assert result["reasoning_effort"] == "high"
    assert result["temperature"] == 0.1
    assert result["stream_options"] == {"include_usage": True}
    assert result["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
    }
    for dropped in (
        "store",
        "include",
        "prompt_cache_key",
        "reasoning",
        "text",
        "max_output_tokens",
    ):
        assert dropped not in result
    assert (
        chat({"model": "o4-mini", "input": "q", "max_output_tokens": 9})["max_completion_tokens"]
        == 9
    )


def test_tool_choice_and_parallel_flag_are_dropped_without_tools() -> None:
    result = chat(
        {
            "input": "q",
            "tool_choice": "auto",
            "parallel_tool_calls": True,
            "tools": [{"type": "web_search"}],
        }
    )
    assert "tools" not in result
    assert "tool_choice" not in result
    assert "parallel_tool_calls" not in result


def test_history_comes_before_the_new_input() -> None:
    history = [
        msg("user", "q"),
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"},
    ]
    messages = chat(
        {"input": [{"type": "function_call_output", "call_id": "c1", "output": "ok"}]},
        history=history,
    )["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == "c1"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({}, "no input"),
        ({"input": [msg("tool", "x")]}, "role"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "file_id",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input_file",
        ),
    ],
)
def test_untranslatable_requests(body: dict[str, Any], match: str) -> None:
    with pytest.raises(UntranslatableRequest, match=match):
        chat(body)


# --- answer -------------------------------------------------------------------------------


def chat_answer(finish: str = "stop", **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-7",
        "created": 1700000000,
        "model": "deepseek-chat",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 40},
            "completion_tokens_details": {"reasoning_tokens": 5},
        },
    }


def test_an_answer_with_reasoning_text_and_calls() -> None:
    tools = ResponsesTools()
    chat({"input": "q", "tools": [APPLY_PATCH, SHELL]}, tools)
    answer = chat_answer(
        "tool_calls",
        content="Patching.",
        reasoning_content="plan",
        tool_calls=[
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "apply_patch", "arguments": '{"input":"*** Begin"}'},
            },
            {
                "id": "c2",
                "type": "function",
                "function": {"name": "shell", "arguments": '{"command":["ls"]}'},
            },
        ],
    )
    result = answer_to_responses(answer, tools, "resp_1", 0)
    assert result["status"] == "completed"
    assert result["incomplete_details"] is None
    assert [item["type"] for item in result["output"]] == [
        "reasoning",
        "message",
        "custom_tool_call",
        "function_call",
    ]
    assert result["output"][0]["summary"] == [{"type": "summary_text", "text": "plan"}]
    assert result["output"][1]["content"] == [
        {"type": "output_text", "text": "Patching.", "annotations": []}
    ]
    assert result["output"][2]["input"] == "*** Begin"
    assert result["output"][2]["call_id"] == "c1"
    assert result["output"][3]["arguments"] == '{"command":["ls"]}'
    assert result["usage"] == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 40},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 5},
        "total_tokens": 120,
    }


@pytest.mark.parametrize(
    ("finish", "status", "reason"),
    [
        ("length", "incomplete", "max_output_tokens"),
        ("content_filter", "incomplete", "content_filter"),
        ("stop", "completed", None),
    ],
)
def test_finish_reason_to_status(finish: str, status: str, reason: str | None) -> None:
    result = answer_to_responses(chat_answer(finish, content="x"), ResponsesTools(), "r", 0)
    assert result["status"] == status
    assert result["incomplete_details"] == ({"reason": reason} if reason else None)


def test_damaged_arguments_are_repaired_or_refused() -> None:
    calls = [
        {
            "id": "c",
            "type": "function",
            "function": {"name": "shell", "arguments": '{"command":["ls"],}'},
        }
    ]
    result = answer_to_responses(
        chat_answer("tool_calls", tool_calls=calls), ResponsesTools(), "r", 0
    )
    assert json.loads(result["output"][0]["arguments"]) == {"command": ["ls"]}
    calls[0]["function"]["arguments"] = "{nope"
    with pytest.raises(BadAnswer):
        answer_to_responses(chat_answer("tool_calls", tool_calls=calls), ResponsesTools(), "r", 0)


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "kind_code"), [*ERROR_CODES.items()])
def test_error_shape_codex_reads(status: int, kind_code: tuple[str, str]) -> None:
    result = error_to_responses(status, b'{"message": "nope"}')
    assert result == {
        "error": {"message": "nope", "type": kind_code[0], "code": kind_code[1], "param": None}
    }


def test_the_providers_own_type_code_and_param_are_kept() -> None:
    body = json.dumps(
        {
            "error": {
                "message": "m",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
                "param": "model",
            }
        }
    )
    assert error_to_responses(429, body.encode())["error"] == {
        "message": "m",
        "type": "insufficient_quota",
        "code": "insufficient_quota",
        "param": "model",
    }


def test_a_full_context_is_context_length_exceeded() -> None:
    body = b'{"error": {"message": "This model\'s maximum context length is 65536 tokens"}}'
    assert error_to_responses(400, body)["error"]["code"] == "context_length_exceeded"


def test_replayed_reasoning_has_a_placeholder_on_tool_call_turns_without_any() -> None:
    items = [
        msg("user", "q"),
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {"type": "reasoning", "summary": [], "encrypted_content": "opaque"},
        {"type": "function_call", "call_id": "c2", "name": "shell", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c2", "output": "ok"},
        msg("assistant", "done"),
    ]
    messages = chat({"input": items}, replay_reasoning=True)["messages"]
    turns = [m for m in messages if m["role"] == "assistant"]
    assert [m.get("reasoning_content") for m in turns] == [
        "(reasoning omitted)",
        "(reasoning omitted)",
        None,  # a plain answer needs none
    ]
    assert all("reasoning_content" not in m for m in chat({"input": items})["messages"])
