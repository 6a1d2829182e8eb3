"""translator_for and the per-attempt Translator: paths, local answers, memory, rejections."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ccswitch_addon.wire.api import Api
from ccswitch_addon.wire.translate import (
    BadAnswer,
    ConversationMemory,
    Format,
    UnsupportedPair,
    UntranslatableRequest,
    provider_formats,
    tool_format,
    translator_for,
)
from ccswitch_addon.wire.translate.translator import (
    AnthropicToChat,
    GeminiToChat,
    Pivot,
    ResponsesToChat,
)

from .streams import sse
from .test_anthropic_chat_stream import chunk


def test_identity_and_same_family_pairs_need_no_translator() -> None:
    for fmt in Format:
        assert translator_for(fmt, fmt) is None
    assert translator_for(Format.OPENAI_CHAT, Format.OPENAI_RESPONSES) is None


def test_supported_pairs() -> None:
    assert isinstance(translator_for(Format.ANTHROPIC, Format.OPENAI_CHAT), AnthropicToChat)
    assert isinstance(translator_for(Format.OPENAI_RESPONSES, Format.OPENAI_CHAT), ResponsesToChat)
    assert isinstance(translator_for(Format.GEMINI, Format.OPENAI_CHAT), GeminiToChat)
    through_chat = [
        (Format.ANTHROPIC, Format.OPENAI_RESPONSES, AnthropicToChat),
        (Format.ANTHROPIC, Format.GEMINI, AnthropicToChat),
        (Format.OPENAI_RESPONSES, Format.ANTHROPIC, ResponsesToChat),
        (Format.GEMINI, Format.ANTHROPIC, GeminiToChat),
    ]
    for tool, provider, side in through_chat:
        pivot = translator_for(tool, provider)
        assert isinstance(pivot, Pivot)
        assert (pivot.tool, pivot.provider) == (tool, provider)
        assert isinstance(pivot.tool_side, side)


def test_an_unsupported_pair_names_the_supported_ones() -> None:
    with pytest.raises(UnsupportedPair, match="anthropic ← openai_chat"):
        translator_for(Format.GEMINI, Format.OPENAI_RESPONSES)


@pytest.mark.parametrize(
    ("api", "path", "expected"),
    [
        (Api.ANTHROPIC, "/v1/messages?beta=true", Format.ANTHROPIC),
        (Api.OPENAI, "/v1/responses", Format.OPENAI_RESPONSES),
        (Api.OPENAI, "/backend-api/codex/responses/", Format.OPENAI_RESPONSES),
        (Api.OPENAI, "/v1/chat/completions", Format.OPENAI_CHAT),
        (Api.GEMINI, "/v1beta/models/x:generateContent", Format.GEMINI),
    ],
)
def test_tool_format_from_api_and_path(api: Api, path: str, expected: Format) -> None:
    assert tool_format(api, path) is expected


def test_provider_formats_per_api() -> None:
    every = (Format.ANTHROPIC, Format.OPENAI_CHAT, Format.OPENAI_RESPONSES, Format.GEMINI)
    assert provider_formats(Api.ANTHROPIC) == every
    assert provider_formats(Api.OPENAI) == every[:3]
    assert provider_formats(Api.GEMINI) == (Format.ANTHROPIC, Format.OPENAI_CHAT, Format.GEMINI)


# --- Claude Code → Chat -------------------------------------------------------------------


def anthropic() -> AnthropicToChat:
    translator = translator_for(Format.ANTHROPIC, Format.OPENAI_CHAT)
    assert isinstance(translator, AnthropicToChat)
    return translator


def test_a_request_goes_to_chat_completions() -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    path, sent = anthropic().request("/v1/messages?beta=true", json.dumps(body).encode())
    assert path == "/v1/chat/completions"
    assert json.loads(sent)["messages"] == [{"role": "user", "content": "hi"}]


def test_count_tokens_is_answered_locally() -> None:
    translator = anthropic()
    body = {"model": "m", "messages": [{"role": "user", "content": "hello world, " * 40}]}
    assert translator.local("/v1/messages", b"{}") is None
    status, answer = translator.local(
        "/v1/messages/count_tokens?beta=true", json.dumps(body).encode()
    ) or (0, b"")
    assert status == 200
    assert 100 <= json.loads(answer)["input_tokens"] <= 200
    status, answer = translator.local("/v1/messages/count_tokens", b"not json") or (0, b"")
    assert status == 400
    assert "not JSON" in json.loads(answer)["error"]["message"]


def test_a_bad_request_is_rejected_in_anthropics_shape() -> None:
    translator = anthropic()
    with pytest.raises(UntranslatableRequest, match="not JSON") as info:
        translator.request("/v1/messages", b"{")
    status, body = translator.reject(info.value)
    assert status == 400
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


def test_answers_errors_and_a_buffered_stream() -> None:
    translator = anthropic()
    ok = {
        "id": "x",
        "model": "m",
        "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
    }
    assert json.loads(translator.answer(200, "application/json", json.dumps(ok).encode()))[
        "content"
    ] == [{"type": "text", "text": "hi"}]
    error = json.loads(
        translator.answer(429, "application/json", b'{"error": {"message": "slow down"}}')
    )
    assert error == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    in_a_200 = json.loads(
        translator.answer(200, "application/json", b'{"error": {"message": "no credit"}}')
    )
    assert in_a_200["type"] == "error"
    # a relay streaming to a request that asked for no stream: one JSON message all the same
    streamed = translator.answer(
        200, "text/event-stream; charset=utf-8", sse(chunk({"content": "hi"}), chunk(finish="stop"))
    )
    assert json.loads(streamed)["content"] == [{"type": "text", "text": "hi"}]
    with pytest.raises(BadAnswer):
        translator.answer(200, "text/event-stream", sse(chunk({"content": "hi"}), done=False))
    with pytest.raises(BadAnswer):
        translator.answer(200, "application/json", b"<html>")


# --- Codex → Chat: previous_response_id -----------------------------------------------------


def codex(memory: ConversationMemory | None) -> ResponsesToChat:
    translator = translator_for(
        Format.OPENAI_RESPONSES, Format.OPENAI_CHAT, memory=memory, clock=lambda: 1234.0
    )
    assert isinstance(translator, ResponsesToChat)
    return translator


def first_turn(memory: ConversationMemory, streamed: bool) -> str:
    translator = codex(memory)
    body = {
        "model": "m",
        "instructions": "I",
        "input": "list files",
        "tools": [{"type": "function", "name": "shell", "parameters": {}}],
    }
    translator.request("/v1/responses", json.dumps(body).encode())
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "shell", "arguments": '{"command":["ls"]}'},
    }
    if streamed:
        machine = translator.stream()
        out = (
            machine.feed(
                sse(chunk({"tool_calls": [dict(call, index=0)]}), chunk(finish="tool_calls"))
            )
            + machine.close()
        )
        last = out.decode().strip().split("\n\n")[-1]
        response: dict[str, Any] = json.loads(last.split("data: ", 1)[1])["response"]
    else:
        answer = {
            "id": "c1",
            "model": "m",
            "choices": [{"message": {"tool_calls": [call]}, "finish_reason": "tool_calls"}],
        }
        response = json.loads(
            translator.answer(200, "application/json", json.dumps(answer).encode())
        )
    return str(response["id"])


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_a_continuation_by_previous_response_id_with_only_a_function_call_output(
    streamed: bool,
) -> None:
    memory = ConversationMemory()
    previous = first_turn(memory, streamed)
    body = {
        "model": "m",
        "previous_response_id": previous,
        "input": [{"type": "function_call_output", "call_id": "call_1", "output": "a.txt"}],
    }
    _, sent = codex(memory).request("/v1/responses", json.dumps(body).encode())
    messages = json.loads(sent)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[0]["content"] == "list files"
    assert messages[1]["tool_calls"][0]["id"] == "call_1"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"}


def test_an_unknown_previous_response_is_rejected_with_its_code() -> None:
    translator = codex(ConversationMemory())
    body = {"model": "m", "previous_response_id": "resp_gone", "input": "x"}
    with pytest.raises(UntranslatableRequest, match="not remembered") as info:
        translator.request("/v1/responses", json.dumps(body).encode())
    status, answer = translator.reject(info.value)
    assert status == 400
    assert json.loads(answer)["error"]["code"] == "previous_response_not_found"


def test_store_false_is_not_remembered() -> None:
    memory = ConversationMemory()
    translator = codex(memory)
    translator.request(
        "/v1/responses", json.dumps({"model": "m", "input": "x", "store": False}).encode()
    )
    answer = {"id": "c", "choices": [{"message": {"content": "y"}, "finish_reason": "stop"}]}
    translator.answer(200, "application/json", json.dumps(answer).encode())
    assert len(memory) == 0


def test_codex_errors_and_created_at_from_the_clock() -> None:
    translator = codex(None)
    translator.request("/v1/responses", b'{"model": "m", "input": "x"}')
    error = json.loads(translator.answer(503, "application/json", b"upstream down"))
    assert error == {
        "error": {
            "message": "upstream down",
            "type": "server_error",
            "code": "service_unavailable",
            "param": None,
        }
    }
    answer = {"id": "c", "choices": [{"message": {"content": "y"}, "finish_reason": "stop"}]}
    assert (
        json.loads(translator.answer(200, "application/json", json.dumps(answer).encode()))[
            "created_at"
        ]
        == 1234
    )
