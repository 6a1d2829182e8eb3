"""Codex CLI on an Anthropic provider; Gemini CLI on Chat and Anthropic providers: the request
as the provider gets it, the answer and the stream as the tool gets them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ccswitch_addon.wire.translate import Format, translator_for
from ccswitch_addon.wire.translate.translator import GeminiToChat, Pivot, Translator

from .streams import data_events, events, named_sse, run_every_way, sse
from .test_anthropic_chat_stream import chunk, tool
from .test_responses_namespaces import JS, codex_request


def anthropic_stream(*blocks: tuple[str, Any], stop: str = "tool_use") -> bytes:
    """An Anthropic stream: each block ("text", str) or ("tool", (id, name, [json pieces]))."""
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "usage": {"input_tokens": 30, "cache_read_input_tokens": 70, "output_tokens": 1},
    }
    pairs: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": message}),
        ("ping", {"type": "ping"}),
    ]
    for index, (kind, value) in enumerate(blocks):
        if kind == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": value}]
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": value},
                {"type": "signature_delta", "signature": "sig"},
            ]
        else:
            call_id, name, pieces = value
            start = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        pairs.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for delta in deltas:
            pairs.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        pairs.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    pairs += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 42},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return named_sse(*pairs)


def codex_to_anthropic() -> Pivot:
    translator = translator_for(Format.OPENAI_RESPONSES, Format.ANTHROPIC, clock=lambda: 5.0)
    assert isinstance(translator, Pivot)
    return translator


# --- codex → anthropic ----------------------------------------------------------------------


def test_codex_request_on_an_anthropic_provider() -> None:
    history = [
        {"type": "reasoning", "summary": [], "encrypted_content": "opaque"},
        {
            "type": "custom_tool_call",
            "call_id": "c1",
            "name": "exec",
            "namespace": "functions",
            "input": JS,
        },
        {
            "type": "custom_tool_call_output",
            "call_id": "c1",
            "output": [{"type": "input_text", "text": "hello"}],
        },
    ]
    body = {
        **codex_request(*history),
        "instructions": "You are Codex.",
        "model": "claude-sonnet-4-5",
    }
    translator = codex_to_anthropic()
    path, sent = translator.request("/v1/responses", json.dumps(body).encode())
    assert path == "/v1/messages"
    assert translator.headers == ((b"anthropic-version", b"2023-06-01"),)
    request = json.loads(sent)
    assert request["system"] == "You are Codex."
    assert request["max_tokens"] == 8192
    assert request["stream"] is True
    assert [t["name"] for t in request["tools"]] == [
        "functions__exec",
        "functions__wait",
        "clock__sleep",
    ]
    assert request["tools"][0]["input_schema"]["required"] == ["input"]
    assert request["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert [m["role"] for m in request["messages"]] == ["user", "assistant", "user"]
    (call,) = request["messages"][1]["content"]
    assert call == {
        "type": "tool_use",
        "id": "c1",
        "name": "functions__exec",
        "input": {"input": JS},
    }
    (result,) = request["messages"][2]["content"]
    assert result == {"type": "tool_result", "tool_use_id": "c1", "content": "hello"}
    assert "thinking" not in request


def test_anthropic_answer_as_codex_reads_it() -> None:
    translator = codex_to_anthropic()
    translator.request("/v1/responses", json.dumps(codex_request()).encode())
    message = {
        "id": "msg_1",
        "type": "message",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "plan", "signature": "sig"},
            {"type": "text", "text": "Running it."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "functions__exec",
                "input": {"input": JS},
            },
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 30, "cache_read_input_tokens": 70, "output_tokens": 12},
    }
    response = json.loads(translator.answer(200, "application/json", json.dumps(message).encode()))
    kinds = [i["type"] for i in response["output"]]
    assert kinds == ["reasoning", "message", "custom_tool_call"]
    call = response["output"][2]
    assert (call["name"], call["namespace"], call["input"], call["call_id"]) == (
        "exec",
        "functions",
        JS,
        "toolu_1",
    )
    assert response["status"] == "completed"
    assert response["usage"]["input_tokens"] == 100
    assert response["usage"]["input_tokens_details"]["cached_tokens"] == 70
    limited = {**message, "stop_reason": "max_tokens", "content": message["content"][1:2]}
    again = json.loads(translator.answer(200, "application/json", json.dumps(limited).encode()))
    assert (again["status"], again["incomplete_details"]) == (
        "incomplete",
        {"reason": "max_output_tokens"},
    )
    overloaded = b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'
    error = json.loads(translator.answer(529, "application/json", overloaded))
    assert error["error"]["message"] == "busy"


def test_anthropic_stream_as_codex_reads_it() -> None:
    translator = codex_to_anthropic()
    translator.request("/v1/responses", json.dumps(codex_request()).encode())
    arguments = json.dumps({"input": JS + " // ü"}, ensure_ascii=False)
    raw = anthropic_stream(
        ("thinking", "plan"),
        ("text", "Running ü."),
        ("tool", ("toolu_1", "functions__exec", [arguments[:7], arguments[7:30], arguments[30:]])),
        ("tool", ("toolu_2", "clock__sleep", ["{}"])),
    )
    found = events(run_every_way(translator.stream, raw))
    assert found[-1][0] == "response.completed"
    output = found[-1][1]["response"]["output"]
    assert [i["type"] for i in output] == [
        "reasoning",
        "message",
        "custom_tool_call",
        "function_call",
    ]
    assert output[2]["input"] == JS + " // ü"
    assert (output[2]["namespace"], output[3]["namespace"]) == ("functions", "clock")
    assert output[1]["content"][0]["text"] == "Running ü."
    assert found[-1][1]["response"]["usage"]["output_tokens"] == 42


def test_an_anthropic_error_event_fails_the_codex_turn() -> None:
    translator = codex_to_anthropic()
    raw = anthropic_stream(("text", "a")).split(b"event: message_delta")[0] + named_sse(
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    )
    machine = translator.stream()
    found = events(machine.feed(raw) + machine.close())
    assert found[-1][0] == "response.failed"
    assert machine.failure is not None


# --- gemini → openai_chat and anthropic -----------------------------------------------------

CLASSIFIER_SCHEMA = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string"},
        "model_choice": {"type": "string", "enum": ["flash", "pro"]},
    },
    "required": ["reasoning", "model_choice"],
}
CLASSIFIER = {
    "contents": [{"role": "user", "parts": [{"text": "route: read a.txt"}]}],
    "systemInstruction": {"role": "user", "parts": [{"text": "You are a router."}]},
    "generationConfig": {
        "temperature": 0,
        "maxOutputTokens": 1024,
        "responseMimeType": "application/json",
        "responseJsonSchema": CLASSIFIER_SCHEMA,
        "thinkingConfig": {"thinkingBudget": 512},
    },
}
CLASSIFIER_PATH = "/v1beta/models/gemini-3.5-flash-lite:generateContent"
MAIN_PATH = "/v1beta/models/gemini-3.5-pro:streamGenerateContent?alt=sse"
READ_FILE = {
    "name": "read_file",
    "description": "Reads a file",
    "parametersJsonSchema": {"type": "object", "properties": {"file_path": {"type": "string"}}},
}
GLOB = {
    "name": "glob",
    "description": "Finds files",
    "parameters": {"type": "OBJECT", "properties": {"pattern": {"type": "STRING"}}},
}


def gemini_main() -> dict[str, Any]:
    return {
        "contents": [
            {"role": "user", "parts": [{"text": "read a.txt"}]},
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {
                            "id": "read_file_1_0",
                            "name": "read_file",
                            "args": {"file_path": "/w/a.txt"},
                        },
                        "thoughtSignature": "skip_thought_signature_validator",
                    },
                    {"functionCall": {"name": "glob", "args": {"pattern": "*.md"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "id": "read_file_1_0",
                            "name": "read_file",
                            "response": {"output": "hello"},
                        }
                    },
                    {"functionResponse": {"name": "glob", "response": {"error": "no such dir"}}},
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "You are Gemini CLI."}]},
        "tools": [{"functionDeclarations": [READ_FILE, GLOB]}, {"googleSearch": {}}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "generationConfig": {"temperature": 1, "topP": 0.95},
    }


def chat_request(
    translator: Translator, path: str, body: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    provider_path, sent = translator.request(path, json.dumps(body).encode())
    return provider_path, json.loads(sent)


def test_the_json_mode_classifier_on_a_chat_provider() -> None:
    translator = translator_for(Format.GEMINI, Format.OPENAI_CHAT)
    assert isinstance(translator, GeminiToChat)
    path, chat = chat_request(translator, CLASSIFIER_PATH, CLASSIFIER)
    assert path == "/v1/chat/completions"
    assert chat["model"] == "gemini-3.5-flash-lite"
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": CLASSIFIER_SCHEMA},
    }
    assert chat["messages"] == [
        {"role": "system", "content": "You are a router."},
        {"role": "user", "content": "route: read a.txt"},
    ]
    assert (chat["max_tokens"], chat["temperature"]) == (1024, 0)
    assert "stream" not in chat
    answer = {
        "id": "c1",
        "model": "deepseek-chat",
        "choices": [
            {
                "message": {"content": '{"reasoning":"simple","model_choice":"flash"}'},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 9},
    }
    reply = json.loads(translator.answer(200, "application/json", json.dumps(answer).encode()))
    text = reply["candidates"][0]["content"]["parts"][0]["text"]
    assert json.loads(text)["model_choice"] == "flash"
    assert reply["candidates"][0]["finishReason"] == "STOP"
    assert reply["usageMetadata"] == {
        "promptTokenCount": 50,
        "candidatesTokenCount": 9,
        "totalTokenCount": 59,
    }


def test_upper_case_types_in_the_classifier_schema_become_json_schema_types() -> None:
    # what Gemini CLI 0.61 sends: OpenAPI's type names inside responseJsonSchema
    schema = {
        "type": "OBJECT",
        "properties": {
            "complexity_reasoning": {"type": "STRING"},
            "complexity_score": {"type": "INTEGER"},
        },
        "required": ["complexity_reasoning", "complexity_score"],
    }
    body = {
        **CLASSIFIER,
        "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema},
    }
    translator = translator_for(Format.GEMINI, Format.OPENAI_CHAT)
    assert translator is not None
    _, chat = chat_request(translator, CLASSIFIER_PATH, body)
    sent = chat["response_format"]["json_schema"]["schema"]
    assert sent["type"] == "object"
    assert sent["properties"]["complexity_score"] == {"type": "integer"}
    assert sent["required"] == schema["required"]


def test_the_json_mode_classifier_on_an_anthropic_provider() -> None:
    translator = translator_for(Format.GEMINI, Format.ANTHROPIC)
    assert isinstance(translator, Pivot)
    path, body = chat_request(translator, CLASSIFIER_PATH, CLASSIFIER)
    assert path == "/v1/messages"
    assert body["system"].startswith("You are a router.\n\nReply with only a JSON value")
    assert json.dumps(CLASSIFIER_SCHEMA, separators=(",", ":")) in body["system"]
    message = {
        "type": "message",
        "content": [{"type": "text", "text": '{"reasoning":"r","model_choice":"pro"}'}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 3},
    }
    reply = json.loads(translator.answer(200, "application/json", json.dumps(message).encode()))
    assert (
        json.loads(reply["candidates"][0]["content"]["parts"][0]["text"])["model_choice"] == "pro"
    )


def test_gemini_cli_main_request_on_a_chat_provider() -> None:
    translator = translator_for(Format.GEMINI, Format.OPENAI_CHAT)
    assert translator is not None
    _, chat = chat_request(translator, MAIN_PATH, gemini_main())
    assert chat["model"] == "gemini-3.5-pro"
    assert chat["stream"] is True
    assert chat["stream_options"] == {"include_usage": True}
    assert chat["tool_choice"] == "auto"
    assert [t["function"]["name"] for t in chat["tools"]] == ["read_file", "glob"]
    assert chat["tools"][1]["function"]["parameters"] == {
        "type": "object",
        "properties": {"pattern": {"type": "string"}},
    }
    system, _user, assistant, first, second = chat["messages"]
    assert system == {"role": "system", "content": "You are Gemini CLI."}
    ids = [c["id"] for c in assistant["tool_calls"]]
    assert ids[0] == "read_file_1_0"
    assert ids[1]
    assert ids[1] != ids[0]
    assert first == {"role": "tool", "tool_call_id": "read_file_1_0", "content": "hello"}
    assert second["tool_call_id"] == ids[1]  # matched by name: Gemini sent no id
    assert second["content"] == "[tool error] no such dir"


def test_gemini_cli_main_request_on_an_anthropic_provider() -> None:
    translator = translator_for(Format.GEMINI, Format.ANTHROPIC)
    assert translator is not None
    _, body = chat_request(translator, MAIN_PATH, gemini_main())
    assert body["model"] == "gemini-3.5-pro"
    assert body["stream"] is True
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    results = body["messages"][2]["content"]
    assert results[0] == {"type": "tool_result", "tool_use_id": "read_file_1_0", "content": "hello"}
    assert results[1]["is_error"] is True
    assert results[1]["content"] == "no such dir"
    assert body["tools"][0] == {
        "name": "read_file",
        "description": "Reads a file",
        "input_schema": READ_FILE["parametersJsonSchema"],
    }


def gemini_chunks(output: bytes) -> list[dict[str, Any]]:
    found = data_events(output)
    assert not any("error" in c for c in found[:-1])
    return found


def test_a_chat_stream_as_gemini_cli_reads_it() -> None:
    translator = translator_for(Format.GEMINI, Format.OPENAI_CHAT)
    assert translator is not None
    raw = sse(
        chunk({"reasoning_content": "hm"}),
        chunk({"content": "读"}),
        chunk({"content": "取"}),
        chunk({"tool_calls": [tool(0, "call_a", "read_file", '{"file_path":')]}),
        chunk({"tool_calls": [tool(0, args='"/a"}')]}),
        chunk({"tool_calls": [tool(0, "call_b", "glob", '{"pattern":"*"}')]}),  # Ollama-style
        chunk(finish="tool_calls"),
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 4}},
    )
    found = gemini_chunks(run_every_way(translator.stream, raw))
    parts = [p for c in found for p in c["candidates"][0]["content"]["parts"]]
    assert parts[0] == {"text": "hm", "thought": True}
    assert "".join(p.get("text", "") for p in parts if not p.get("thought")) == "读取"
    calls = [p["functionCall"] for p in parts if "functionCall" in p]
    assert calls == [
        {"id": "call_a", "name": "read_file", "args": {"file_path": "/a"}},
        {"id": "call_b", "name": "glob", "args": {"pattern": "*"}},
    ]
    assert found[-1]["candidates"][0]["finishReason"] == "STOP"
    assert found[-1]["usageMetadata"]["candidatesTokenCount"] == 4
    assert sum("finishReason" in c["candidates"][0] for c in found) == 1


def test_an_anthropic_stream_as_gemini_cli_reads_it() -> None:
    translator = translator_for(Format.GEMINI, Format.ANTHROPIC)
    assert translator is not None
    raw = anthropic_stream(
        ("text", "Reading."),
        ("tool", ("toolu_1", "read_file", ['{"file_', 'path":"/w/a.txt"}'])),
    )
    found = gemini_chunks(run_every_way(translator.stream, raw))
    parts = [p for c in found for p in c["candidates"][0]["content"]["parts"]]
    assert parts[0] == {"text": "Reading."}
    assert parts[1] == {
        "functionCall": {"id": "toolu_1", "name": "read_file", "args": {"file_path": "/w/a.txt"}}
    }
    assert found[-1]["candidates"][0]["finishReason"] == "STOP"
    assert found[-1]["usageMetadata"]["promptTokenCount"] == 100
    assert found[-1]["usageMetadata"]["cachedContentTokenCount"] == 70


@pytest.mark.parametrize(("stop", "finish"), [("max_tokens", "MAX_TOKENS"), ("refusal", "SAFETY")])
def test_stop_reasons_reach_gemini_cli(stop: str, finish: str) -> None:
    translator = translator_for(Format.GEMINI, Format.ANTHROPIC)
    assert translator is not None
    machine = translator.stream()
    found = gemini_chunks(
        machine.feed(anthropic_stream(("text", "x"), stop=stop)) + machine.close()
    )
    assert found[-1]["candidates"][0]["finishReason"] == finish


def test_a_broken_stream_ends_gemini_cli_with_an_error() -> None:
    translator = translator_for(Format.GEMINI, Format.OPENAI_CHAT)
    assert translator is not None
    machine = translator.stream()
    out = data_events(machine.feed(sse(chunk({"content": "a"}), done=False)) + machine.close())
    assert out[-1]["error"]["status"] == "UNAVAILABLE"
    assert machine.failure is not None


def test_errors_and_count_tokens_in_gemini_shape() -> None:
    translator = translator_for(Format.GEMINI, Format.ANTHROPIC)
    assert translator is not None
    busy = b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'
    assert json.loads(translator.answer(429, "application/json", busy)) == {
        "error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}
    }
    local = translator.local(
        "/v1beta/models/gemini-3.5-pro:countTokens", json.dumps(gemini_main()).encode()
    )
    assert local is not None
    assert local[0] == 200
    assert json.loads(local[1])["totalTokens"] > 0
    status, body = translator.reject(ValueError("x"))  # type: ignore[arg-type]
    assert status == 400
    assert json.loads(body)["error"]["status"] == "INVALID_ARGUMENT"


def test_json_in_a_code_fence_reaches_the_classifier_as_json() -> None:
    translator = translator_for(Format.GEMINI, Format.ANTHROPIC)
    assert translator is not None
    translator.request(CLASSIFIER_PATH, json.dumps(CLASSIFIER).encode())
    fenced = '```json\n{"reasoning":"r","model_choice":"pro"}\n```'
    message = {
        "type": "message",
        "content": [{"type": "text", "text": fenced}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 3},
    }
    reply = json.loads(translator.answer(200, "application/json", json.dumps(message).encode()))
    text = reply["candidates"][0]["content"]["parts"][0]["text"]
    assert json.loads(text) == {"reasoning": "r", "model_choice": "pro"}
    plain = translator_for(Format.GEMINI, Format.ANTHROPIC)
    assert plain is not None
    plain.request(MAIN_PATH, json.dumps(gemini_main()).encode())
    kept = json.loads(plain.answer(200, "application/json", json.dumps(message).encode()))
    assert kept["candidates"][0]["content"]["parts"][0]["text"] == fenced  # not asked for JSON


def test_a_chat_stream_with_interleaved_calls_duplicate_finish_and_late_usage() -> None:
    translator = translator_for(Format.GEMINI, Format.OPENAI_CHAT)
    assert translator is not None
    raw = sse(
        chunk({"tool_calls": [tool(0, "call_a", "read_file", '{"file_')]}),
        chunk({"tool_calls": [tool(1, "call_b", "read_file", '{"file_path"')]}),
        chunk({"tool_calls": [tool(1, args=':"/ü"}')]}),
        chunk({"tool_calls": [tool(0, args='path":"/ä"}')]}, finish="tool_calls"),
        chunk(finish="tool_calls"),
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 3}},
    )
    found = gemini_chunks(run_every_way(translator.stream, raw))
    calls = [
        p["functionCall"]
        for c in found
        for p in c["candidates"][0]["content"]["parts"]
        if "functionCall" in p
    ]
    assert [(c["id"], c["args"]) for c in calls] == [
        ("call_a", {"file_path": "/ä"}),
        ("call_b", {"file_path": "/ü"}),
    ]
    assert sum("finishReason" in c["candidates"][0] for c in found) == 1
    assert found[-1]["usageMetadata"]["promptTokenCount"] == 8
