"""Claude Code on a Responses provider and on a Gemini provider (through the Chat form): the
request as the provider gets it, the answer and the stream as Claude Code gets them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ccswitch_addon.wire.translate import Format, translator_for
from ccswitch_addon.wire.translate.chat_gemini import SIGNATURES, SKIP_SIGNATURE
from ccswitch_addon.wire.translate.translator import Pivot

from .streams import events, named_sse, run_every_way
from .test_anthropic_chat_stream import blocks, check_grammar

BILLING = "x-anthropic-billing-header: cc_version=2.1.197.123; cc_entrypoint=sdk-cli; cch=1;"
READ = {
    "name": "Read",
    "description": "Read a file",
    "input_schema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"file_path": {"type": "string"}},
        "required": ["file_path"],
    },
}
PNG = "iVBORw0KGgo="


def claude_request(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-opus-4-8",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": BILLING},
            {
                "type": "text",
                "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "tools": [READ],
        "tool_choice": {"type": "auto"},
        "messages": [
            {"role": "user", "content": "read a.txt and b.txt"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "two reads", "signature": "sig-anthropic"},
                    {"type": "text", "text": "Reading both."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "Read",
                        "input": {"file_path": "/w/a.txt"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_2",
                        "name": "Read",
                        "input": {"file_path": "/w/b.txt"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "     1\thello"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "File does not exist."}],
                    },
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {"type": "text", "text": "go on"},
                ],
            },
        ],
        **extra,
    }


def pivot(provider: Format) -> Pivot:
    translator = translator_for(Format.ANTHROPIC, provider)
    assert isinstance(translator, Pivot)
    return translator


def request(provider: Format, **extra: Any) -> tuple[Pivot, str, dict[str, Any]]:
    translator = pivot(provider)
    path, body = translator.request(
        "/v1/messages?beta=true", json.dumps(claude_request(**extra)).encode()
    )
    return translator, path, json.loads(body)


def stream_events(translator: Pivot, raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    found = events(run_every_way(translator.stream, raw))
    check_grammar(found)
    return found


# --- claude → openai_responses ----------------------------------------------------------------


def test_responses_request_carries_system_tools_calls_results_and_images() -> None:
    translator, path, body = request(Format.OPENAI_RESPONSES)
    assert path == "/v1/responses"
    assert translator.headers == ()
    assert body["instructions"] == "You are Claude Code."
    assert body["store"] is False
    assert body["max_output_tokens"] == 32000
    assert body["stream"] is True
    assert body["tools"] == [
        {
            "type": "function",
            "name": "Read",
            "parameters": {
                "type": "object",
                "properties": {"file_path": {"type": "string"}},
                "required": ["file_path"],
            },
            "description": "Read a file",
            "strict": False,
        }
    ]
    assert body["tool_choice"] == "auto"
    kinds = [(i["type"], i.get("role")) for i in body["input"]]
    assert kinds == [
        ("message", "user"),
        ("message", "assistant"),
        ("function_call", None),
        ("function_call", None),
        ("function_call_output", None),
        ("function_call_output", None),
        ("message", "user"),
    ]
    calls = [i for i in body["input"] if i["type"] == "function_call"]
    assert [(c["call_id"], json.loads(c["arguments"])) for c in calls] == [
        ("toolu_1", {"file_path": "/w/a.txt"}),
        ("toolu_2", {"file_path": "/w/b.txt"}),
    ]
    assert all(isinstance(c["arguments"], str) for c in calls)
    outputs = [i for i in body["input"] if i["type"] == "function_call_output"]
    assert outputs[1]["output"] == "[tool error] File does not exist."
    last = body["input"][-1]["content"]
    assert last[0] == {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}
    assert last[1] == {"type": "input_text", "text": "go on"}
    assert "sig-anthropic" not in json.dumps(body)  # a signature never leaves Anthropic


def test_responses_answer_as_an_anthropic_message() -> None:
    translator, _, _ = request(Format.OPENAI_RESPONSES, stream=False)
    response = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "model": "gpt-5.1",
        "output": [
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "hm"}],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Let me look."}],
            },
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_1",
                "name": "Read",
                "arguments": '{"file_path":"/w/c.txt"}',
            },
        ],
        "usage": {
            "input_tokens": 1000,
            "input_tokens_details": {"cached_tokens": 600},
            "output_tokens": 20,
        },
    }
    message = json.loads(translator.answer(200, "application/json", json.dumps(response).encode()))
    assert message["content"] == [
        {"type": "thinking", "thinking": "hm", "signature": ""},
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"file_path": "/w/c.txt"}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["input_tokens"] == 400
    assert message["usage"]["cache_read_input_tokens"] == 600
    incomplete = {
        **response,
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
    }
    incomplete["output"] = response["output"][1:2]
    again = json.loads(translator.answer(200, "application/json", json.dumps(incomplete).encode()))
    assert again["stop_reason"] == "max_tokens"
    error = json.loads(translator.answer(429, "application/json", b'{"error":{"message":"slow"}}'))
    assert error == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}


def responses_stream(arguments_as_deltas: bool = True) -> bytes:
    args = '{"file_path":"/w/é.txt"}'
    item = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "Read",
        "arguments": "",
    }
    pairs: list[tuple[str, dict[str, Any]]] = [
        (
            "response.created",
            {"type": "response.created", "response": {"id": "resp_1", "model": "gpt-5.1"}},
        ),
        (
            "response.output_item.added",
            {"type": "response.output_item.added", "item": {"type": "reasoning", "id": "rs_1"}},
        ),
        (
            "response.reasoning_summary_text.delta",
            {"type": "response.reasoning_summary_text.delta", "delta": "thinking…"},
        ),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Reading "}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "é."}),
        ("response.output_item.added", {"type": "response.output_item.added", "item": item}),
    ]
    if arguments_as_deltas:
        for piece in (args[:9], args[9:]):
            pairs.append(
                (
                    "response.function_call_arguments.delta",
                    {
                        "type": "response.function_call_arguments.delta",
                        "item_id": "fc_1",
                        "delta": piece,
                    },
                )
            )
    pairs += [
        (
            "response.function_call_arguments.done",
            {"type": "response.function_call_arguments.done", "item_id": "fc_1", "arguments": args},
        ),
        (
            "response.output_item.done",
            {"type": "response.output_item.done", "item": {**item, "arguments": args}},
        ),
        (
            "response.completed",
            {
                "type": "response.completed",
                "response": {
                    "id": "resp_1",
                    "status": "completed",
                    "usage": {
                        "input_tokens": 50,
                        "input_tokens_details": {"cached_tokens": 10},
                        "output_tokens": 7,
                    },
                },
            },
        ),
    ]
    return named_sse(*pairs)


@pytest.mark.parametrize("as_deltas", [True, False])
def test_responses_stream_as_claude_code_reads_it(as_deltas: bool) -> None:
    translator = pivot(Format.OPENAI_RESPONSES)
    found = stream_events(translator, responses_stream(as_deltas))
    assert blocks(found) == [
        {"type": "thinking", "thinking": "thinking…", "signature": ""},
        {"type": "text", "text": "Reading é."},
        {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"file_path": "/w/é.txt"}},
    ]
    delta = next(d for n, d in found if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == 7
    assert delta["usage"]["input_tokens"] == 40
    assert delta["usage"]["cache_read_input_tokens"] == 10


def test_a_failed_responses_stream_is_an_error_event() -> None:
    translator = pivot(Format.OPENAI_RESPONSES)
    raw = named_sse(
        ("response.created", {"type": "response.created", "response": {"id": "r"}}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "a"}),
        (
            "response.failed",
            {"type": "response.failed", "response": {"error": {"message": "overloaded"}}},
        ),
    )
    machine = translator.stream()
    found = events(machine.feed(raw) + machine.close())
    assert found[-1][0] == "error"
    assert "overloaded" in found[-1][1]["error"]["message"]
    assert machine.failure is not None


# --- claude → gemini ----------------------------------------------------------------------


def test_gemini_request_carries_system_tools_calls_results_and_images() -> None:
    SIGNATURES.keep("toolu_1", "sig-gemini-1")
    _, path, body = request(Format.GEMINI)
    assert path == "/v1beta/models/claude-opus-4-8:streamGenerateContent?alt=sse"
    _, plain_path, _ = request(Format.GEMINI, stream=False)
    assert plain_path == "/v1beta/models/claude-opus-4-8:generateContent"
    assert body["systemInstruction"] == {"parts": [{"text": "You are Claude Code."}]}
    assert body["generationConfig"] == {"maxOutputTokens": 32000}
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "Read"
    assert declaration["parametersJsonSchema"]["required"] == ["file_path"]
    assert "$schema" not in json.dumps(declaration)
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    roles = [c["role"] for c in body["contents"]]
    assert roles == ["user", "model", "user"]
    model_parts = body["contents"][1]["parts"]
    assert model_parts[0] == {"text": "Reading both."}
    assert model_parts[1]["functionCall"] == {
        "name": "Read",
        "args": {"file_path": "/w/a.txt"},
        "id": "toolu_1",
    }
    assert model_parts[1]["thoughtSignature"] == "sig-gemini-1"  # kept from Gemini's answer
    assert model_parts[2]["thoughtSignature"] == SKIP_SIGNATURE  # a call Gemini never made
    results = body["contents"][2]["parts"]
    assert results[0] == {
        "functionResponse": {
            "name": "Read",
            "response": {"output": "     1\thello"},
            "id": "toolu_1",
        }
    }
    assert results[1]["functionResponse"]["response"] == {"error": "File does not exist."}
    assert results[2] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
    assert results[3] == {"text": "go on"}
    assert "sig-anthropic" not in json.dumps(body)


def test_gemini_answer_with_parallel_calls_without_ids() -> None:
    translator, _, _ = request(Format.GEMINI, stream=False)
    answer = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "plan", "thought": True},
                        {"text": "Reading."},
                        {
                            "functionCall": {"name": "Read", "args": {"file_path": "/a"}},
                            "thoughtSignature": "S1",
                        },
                        {"functionCall": {"name": "Read", "args": {"file_path": "/b"}}},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 100,
            "cachedContentTokenCount": 30,
            "candidatesTokenCount": 8,
            "thoughtsTokenCount": 4,
        },
        "modelVersion": "gemini-3-pro",
        "responseId": "g1",
    }
    message = json.loads(translator.answer(200, "application/json", json.dumps(answer).encode()))
    kinds = [b["type"] for b in message["content"]]
    assert kinds == ["thinking", "text", "tool_use", "tool_use"]
    first, second = message["content"][2:]
    assert first["id"] != second["id"]
    assert (first["input"], second["input"]) == ({"file_path": "/a"}, {"file_path": "/b"})
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 70,
        "output_tokens": 12,
        "cache_read_input_tokens": 30,
        "cache_creation_input_tokens": 0,
    }
    assert SIGNATURES.get(first["id"]) == "S1"
    # the next turn replays the call with its signature
    replay = claude_request()
    replay["messages"] = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": message["content"]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": first["id"], "content": "x"}],
        },
    ]
    _, body = pivot(Format.GEMINI).request("/v1/messages", json.dumps(replay).encode())
    parts = json.loads(body)["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in parts if "functionCall" in p] == [
        "S1",
        SKIP_SIGNATURE,
    ]


@pytest.mark.parametrize(
    ("reason", "stop"), [("MAX_TOKENS", "max_tokens"), ("SAFETY", "refusal"), ("STOP", "end_turn")]
)
def test_gemini_finish_reasons(reason: str, stop: str) -> None:
    translator = pivot(Format.GEMINI)
    answer = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": reason}
        ]
    }
    message = json.loads(translator.answer(200, "application/json", json.dumps(answer).encode()))
    assert message["stop_reason"] == stop


def gemini_chunk(parts: list[Any], finish: str | None = None, usage: bool = False) -> str:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    chunk: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": "gemini-3-pro",
        "responseId": "g2",
    }
    if usage:
        chunk["usageMetadata"] = {"promptTokenCount": 20, "candidatesTokenCount": 5}
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\r\n\r\n"


def test_gemini_stream_as_claude_code_reads_it() -> None:
    raw = (
        gemini_chunk([{"text": "think", "thought": True}])
        + gemini_chunk([{"text": "你好"}])
        + gemini_chunk(
            [{"text": "!"}, {"functionCall": {"name": "Read", "args": {"file_path": "/a"}}}]
        )
        + gemini_chunk(
            [{"functionCall": {"id": "own", "name": "Read", "args": {"file_path": "/b"}}}],
            "STOP",
            usage=True,
        )
    ).encode()
    found = stream_events(pivot(Format.GEMINI), raw)
    content = blocks(found)
    assert [b["type"] for b in content] == ["thinking", "text", "tool_use", "tool_use"]
    assert content[1]["text"] == "你好!"
    assert content[3]["id"] == "own"
    assert content[2]["id"].startswith("call_")
    assert content[2]["input"] == {"file_path": "/a"}
    delta = next(d for n, d in found if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == 5


def test_a_gemini_stream_cut_before_its_finish_reason_fails() -> None:
    translator = pivot(Format.GEMINI)
    machine = translator.stream()
    found = events(machine.feed(gemini_chunk([{"text": "a"}]).encode()) + machine.close())
    assert found[-1][0] == "error"
    assert machine.failure is not None


@pytest.mark.parametrize(
    ("thinking", "extra", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 31999}, {}, "high"),
        ({"type": "enabled", "budget_tokens": 2048}, {}, "low"),
        ({"type": "adaptive"}, {"output_config": {"effort": "medium"}}, "medium"),
        ({"type": "disabled"}, {}, None),
    ],
)
def test_claude_thinking_asks_a_reasoning_provider_to_reason(
    thinking: dict[str, Any], extra: dict[str, Any], effort: str | None
) -> None:
    _, _, body = request(Format.OPENAI_RESPONSES, thinking=thinking, model="gpt-5.1", **extra)
    expected = {"effort": effort, "summary": "auto"} if effort else None
    assert body.get("reasoning") == expected
    _, _, plain = request(Format.OPENAI_RESPONSES, thinking=thinking, model="gpt-4.1", **extra)
    assert "reasoning" not in plain  # a model that does not reason refuses the field
    _, _, gemini = request(Format.GEMINI, thinking=thinking, **extra)
    thinks = gemini["generationConfig"].get("thinkingConfig")
    assert thinks == ({"includeThoughts": True} if effort else None)
