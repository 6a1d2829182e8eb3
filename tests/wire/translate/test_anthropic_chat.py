"""Anthropic Messages ↔ Chat Completions: requests, whole answers and errors."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from ccswitch_addon.wire.translate.anthropic_chat import (
    ERROR_TYPES,
    STOP_REASONS,
    answer_to_anthropic,
    clean_schema,
    error_to_anthropic,
    request_to_chat,
)
from ccswitch_addon.wire.translate.common import BadAnswer, ToolNames, UntranslatableRequest

IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
READ_TOOL = {
    "name": "Read",
    "description": "read a file",
    "input_schema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"path": {"type": "string"}, "url": {"type": "string", "format": "uri"}},
        "required": ["path"],
    },
    "cache_control": {"type": "ephemeral"},
}


def chat(body: dict[str, Any], names: ToolNames | None = None, **kw: Any) -> dict[str, Any]:
    body.setdefault("model", "deepseek-chat")
    body.setdefault("max_tokens", 1024)
    return request_to_chat(body, names or ToolNames(), **kw)


def user(*blocks: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


# --- request ------------------------------------------------------------------------------


def test_a_system_of_several_blocks_with_cache_control_and_the_billing_line() -> None:
    body = {
        "system": [
            {
                "type": "text",
                "text": "x-anthropic-billing-header: cc_version=2.0; cch=1;\nYou are Claude Code.",
            },
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
            {
                "type": "text",
                "text": "Use tools.",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            },
        ],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
            }
        ],
    }
    result = chat(body)
    assert result["messages"][0] == {
        "role": "system",
        "content": "You are Claude Code.\n\nBe brief.\n\nUse tools.",
    }
    assert result["messages"][1] == {"role": "user", "content": "hi"}
    assert "cache_control" not in json.dumps(result)
    assert "billing" not in json.dumps(result)


def test_a_system_string_and_none() -> None:
    assert chat({"system": "S", "messages": [user({"type": "text", "text": "q"})]})["messages"][
        0
    ] == {
        "role": "system",
        "content": "S",
    }
    assert chat({"messages": [{"role": "user", "content": "q"}]})["messages"] == [
        {"role": "user", "content": "q"}
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "Read"}, {"type": "function", "function": {"name": "Read"}}),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    result = chat(
        {
            "messages": [{"role": "user", "content": "q"}],
            "tools": [READ_TOOL],
            "tool_choice": choice,
        }
    )
    assert result["tool_choice"] == expected


def test_tool_choice_and_parallel_flag_are_dropped_when_no_tools_remain() -> None:
    server_tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    result = chat(
        {
            "messages": [{"role": "user", "content": "q"}],
            "tools": [server_tool],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        }
    )
    assert "tools" not in result
    assert "tool_choice" not in result
    assert "parallel_tool_calls" not in result


def test_disable_parallel_tool_use() -> None:
    result = chat(
        {
            "messages": [{"role": "user", "content": "q"}],
            "tools": [READ_TOOL],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        }
    )
    assert result["parallel_tool_calls"] is False


def test_tools_get_a_cleaned_schema() -> None:
    (function,) = chat({"messages": [{"role": "user", "content": "q"}], "tools": [READ_TOOL]})[
        "tools"
    ]
    assert function == {
        "type": "function",
        "function": {
            "name": "Read",
            "description": "read a file",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "url": {"type": "string"}},
                "required": ["path"],
            },
        },
    }
    assert clean_schema(None) == {"type": "object", "properties": {}}
    assert clean_schema({"properties": {"a": {"type": "integer"}}}) == {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
    }


def test_sampling_fields_stop_sequences_and_user() -> None:
    result = chat(
        {
            "messages": [{"role": "user", "content": "q"}],
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": ["\n\nHuman:"],
            "metadata": {"user_id": "user_abc"},
            "thinking": {"type": "enabled", "budget_tokens": 2000},
        }
    )
    assert result["temperature"] == 0.2
    assert result["top_p"] == 0.9
    assert result["stop"] == ["\n\nHuman:"]
    assert result["user"] == "user_abc"
    assert result["max_tokens"] == 1024
    assert "top_k" not in result
    assert "thinking" not in result
    assert "metadata" not in result


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ("o3-mini", "max_completion_tokens"),
        ("openai/gpt-5-codex", "max_completion_tokens"),
        ("gpt-4o", "max_tokens"),
        ("deepseek-chat", "max_tokens"),
    ],
)
def test_the_token_limit_field_follows_the_model_family(model: str, field: str) -> None:
    result = chat(
        {"model": model, "messages": [{"role": "user", "content": "q"}], "max_tokens": 77}
    )
    assert result[field] == 77
    assert {"max_tokens", "max_completion_tokens"} & set(result) == {field}


def test_a_stream_asks_for_usage() -> None:
    result = chat({"messages": [{"role": "user", "content": "q"}], "stream": True})
    assert result["stream"] is True
    assert result["stream_options"] == {"include_usage": True}
    assert "stream" not in chat({"messages": [{"role": "user", "content": "q"}]})


def test_tool_use_and_tool_result_round() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "read /a"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "I should read", "signature": "sig"},
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "/a"}},
                ],
            },
            user(
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": "file text",
                    "is_error": False,
                }
            ),
        ]
    }
    messages = chat(body)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "Reading.",
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "Read", "arguments": '{"path":"/a"}'},
            }
        ],
    }
    assert isinstance(messages[1]["tool_calls"][0]["function"]["arguments"], str)
    assert messages[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "file text"}
    assert len(messages) == 3


def test_thinking_is_replayed_as_reasoning_for_providers_that_want_it() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "plan", "signature": "s"},
                    {"type": "tool_use", "id": "t1", "name": "Read", "input": {}},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t2", "name": "Read", "input": {}}],
            },
        ]
    }
    messages = chat(body, replay_reasoning=True)["messages"]
    assert messages[1]["reasoning_content"] == "plan"
    assert messages[1]["content"] is None
    assert messages[2]["reasoning_content"] == "(reasoning omitted)"  # a placeholder, not missing
    assert "reasoning_content" not in json.dumps(chat(body)["messages"])


def test_a_tool_result_holding_an_image() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "look"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "id1", "name": "Screenshot", "input": {}},
                    {"type": "tool_use", "id": "id2", "name": "Read", "input": {"path": "/a"}},
                ],
            },
            user(
                {
                    "type": "tool_result",
                    "tool_use_id": "id1",
                    "content": [{"type": "text", "text": "shot"}, IMAGE],
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "id2",
                    "content": "text of a",
                    "is_error": True,
                },
                {"type": "text", "text": "what do you see?"},
            ),
        ]
    }
    messages = chat(body)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "user"]
    assert messages[2] == {"role": "tool", "tool_call_id": "id1", "content": "shot"}
    assert messages[3] == {
        "role": "tool",
        "tool_call_id": "id2",
        "content": "[tool error] text of a",
    }
    assert messages[4]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
        {"type": "text", "text": "what do you see?"},
    ]
    assert "image_url" not in json.dumps(messages[2:4])


def test_images_and_documents_as_parts() -> None:
    url_image = {"type": "image", "source": {"type": "url", "url": "https://x.example/a.png"}}
    text_doc = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "doc"},
    }
    pdf = {
        "type": "document",
        "title": "a.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
    }
    (message,) = chat({"messages": [user(url_image, text_doc, pdf)]})["messages"]
    assert message["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}},
        {"type": "text", "text": "doc"},
        {
            "type": "file",
            "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
        },
    ]


def test_an_untranslatable_request_says_why() -> None:
    with pytest.raises(UntranslatableRequest, match="no messages"):
        request_to_chat({"model": "m"}, ToolNames())
    with pytest.raises(UntranslatableRequest, match="role"):
        request_to_chat({"messages": [{"role": "tool", "content": "x"}]}, ToolNames())
    file_doc = {"type": "document", "source": {"type": "file", "file_id": "f1"}}
    with pytest.raises(UntranslatableRequest, match="document"):
        request_to_chat({"messages": [user(file_doc)]}, ToolNames())


def test_a_long_tool_name_is_shortened_and_restored() -> None:
    long_name = "mcp__" + "x" * 80
    names = ToolNames()
    tool = dict(READ_TOOL, name=long_name)
    body = {
        "messages": [{"role": "user", "content": "q"}],
        "tools": [tool],
        "tool_choice": {"type": "tool", "name": long_name},
    }
    result = chat(body, names)
    short = result["tools"][0]["function"]["name"]
    assert len(short) == 64
    assert short != long_name
    assert result["tool_choice"]["function"]["name"] == short
    answer = chat_answer(
        tool_calls=[
            {"id": "c1", "type": "function", "function": {"name": short, "arguments": "{}"}}
        ]
    )
    assert answer_to_anthropic(answer, names)["content"][0]["name"] == long_name


# --- answer -------------------------------------------------------------------------------


def chat_answer(
    content: Any = None, finish: str | None = "stop", usage: Any = None, **message: Any
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "model": "deepseek-chat",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": finish,
            }
        ],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 3},
    }


def test_text_reasoning_and_tool_calls_are_all_kept() -> None:
    answer = chat_answer(
        "I'll read it.",
        "tool_calls",
        reasoning_content="need the file",
        tool_calls=[
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "Read", "arguments": '{"path":"/a"}'},
            }
        ],
    )
    result = answer_to_anthropic(answer, ToolNames())
    assert result["content"] == [
        {"type": "thinking", "thinking": "need the file", "signature": ""},
        {"type": "text", "text": "I'll read it."},
        {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"path": "/a"}},
    ]
    assert result["stop_reason"] == "tool_use"
    assert result["id"] == "msg_chatcmpl-1"
    assert result["type"] == "message"
    assert result["role"] == "assistant"


def test_a_leading_think_tag_in_an_answer_is_thinking() -> None:
    result = answer_to_anthropic(chat_answer("<think>hmm</think>\nYes."), ToolNames())
    assert result["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": ""},
        {"type": "text", "text": "Yes."},
    ]


@pytest.mark.parametrize(("finish", "stop"), [*STOP_REASONS.items()])
def test_finish_reason_table(finish: str, stop: str) -> None:
    calls = (
        [{"id": "c", "type": "function", "function": {"name": "T", "arguments": "{}"}}]
        if stop == "tool_use"
        else None
    )
    result = answer_to_anthropic(chat_answer("x", finish, tool_calls=calls), ToolNames())
    assert result["stop_reason"] == stop


def test_content_filter_is_refusal_and_stop_with_tool_calls_is_tool_use() -> None:
    assert (
        answer_to_anthropic(chat_answer("x", "content_filter"), ToolNames())["stop_reason"]
        == "refusal"
    )
    calls = [{"id": "c", "type": "function", "function": {"name": "T", "arguments": "{}"}}]
    assert (
        answer_to_anthropic(chat_answer(None, "stop", tool_calls=calls), ToolNames())["stop_reason"]
        == "tool_use"
    )


def test_an_unknown_finish_reason_is_end_turn_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert (
            answer_to_anthropic(chat_answer("x", "weird"), ToolNames())["stop_reason"] == "end_turn"
        )
        assert answer_to_anthropic(chat_answer("x", None), ToolNames())["stop_reason"] == "end_turn"
    assert "weird" in caplog.text


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"a": 1,}', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('{"a": "unterminated', {"a": "unterminated"}),
        ('{"a": [1, 2', {"a": [1, 2]}),
        ("", {}),
    ],
)
def test_damaged_arguments_are_repaired(arguments: str, expected: dict[str, Any]) -> None:
    calls = [{"id": "c", "type": "function", "function": {"name": "T", "arguments": arguments}}]
    result = answer_to_anthropic(chat_answer(None, "tool_calls", tool_calls=calls), ToolNames())
    assert result["content"][0]["input"] == expected


@pytest.mark.parametrize("arguments", ["{bad", "[1, 2]", "not json at all"])
def test_unrepairable_arguments_fail_clearly_never_an_empty_input(arguments: str) -> None:
    calls = [{"id": "c", "type": "function", "function": {"name": "Edit", "arguments": arguments}}]
    with pytest.raises(BadAnswer, match="'Edit'"):
        answer_to_anthropic(chat_answer(None, "tool_calls", tool_calls=calls), ToolNames())


def test_usage_with_cached_tokens_and_the_clamp() -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 300},
    }
    assert answer_to_anthropic(chat_answer("x", usage=usage), ToolNames())["usage"] == {
        "input_tokens": 100,
        "output_tokens": 50,
        "cache_read_input_tokens": 600,
        "cache_creation_input_tokens": 300,
    }
    deepseek = {"prompt_tokens": 100, "completion_tokens": 1, "prompt_cache_hit_tokens": 150}
    result = answer_to_anthropic(chat_answer("x", usage=deepseek), ToolNames())["usage"]
    assert result["input_tokens"] == 0
    assert result["cache_read_input_tokens"] == 150


def test_a_legacy_function_call() -> None:
    answer = chat_answer(
        None, "function_call", function_call={"name": "Read", "arguments": '{"path":"/a"}'}
    )
    result = answer_to_anthropic(answer, ToolNames())
    assert result["content"][0]["name"] == "Read"
    assert result["content"][0]["input"] == {"path": "/a"}
    assert result["stop_reason"] == "tool_use"


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"), [*ERROR_TYPES.items(), (418, "invalid_request_error"), (599, "api_error")]
)
def test_error_type_by_status(status: int, kind: str) -> None:
    body = json.dumps({"error": {"message": "nope", "type": "whatever"}}).encode()
    assert error_to_anthropic(status, body) == {
        "type": "error",
        "error": {"type": kind, "message": "nope"},
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": "quota exceeded"}', "quota exceeded"),
        (b'{"base_resp": {"status_code": 1002, "status_msg": "rate limited"}}', "rate limited"),
        (b'{"message": "bad model"}', "bad model"),
        (b"<html>502 Bad Gateway</html>", "<html>502 Bad Gateway</html>"),
        (b"", "the provider answered with an empty error body"),
    ],
)
def test_the_message_is_found_in_any_shape(body: bytes, message: str) -> None:
    assert error_to_anthropic(429, body)["error"]["message"] == message


def test_a_system_turn_inside_messages_stays_a_system_message_in_place() -> None:
    # Claude Code 2.x sends some system text as a message of its own, between user turns.
    body = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": [{"type": "text", "text": "Mode: plan."}]},
            {"role": "user", "content": "go"},
        ]
    }
    messages = request_to_chat(body, ToolNames())["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "hi"),
        ("system", "Mode: plan."),
        ("user", "go"),
    ]
    with pytest.raises(UntranslatableRequest, match="unknown message role 'robot'"):
        request_to_chat({"messages": [{"role": "robot", "content": "x"}]}, ToolNames())
