"""The Chat form the provider sides share: answers, chunks, usage, merged turns."""

from __future__ import annotations

from ccswitch_addon.wire.translate.chat_form import (
    ERROR_MARK,
    append_turn,
    ask_to_stream,
    chat_answer,
    chat_chunk,
    chat_usage,
    data_url,
    event_object,
    history_arguments,
    text_of,
    tool_error,
)
from ccswitch_addon.wire.translate.sse import SseEvent


def test_turns_of_one_role_merge_under_the_given_key() -> None:
    turns: list[dict[str, object]] = []
    append_turn(turns, "user", "parts", [{"text": "a"}])
    append_turn(turns, "user", "parts", [{"text": "b"}])
    append_turn(turns, "model", "parts", [])  # nothing to say: no turn
    append_turn(turns, "model", "parts", [{"text": "c"}])
    assert turns == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "c"}]},
    ]


def test_an_answer_leaves_out_what_it_does_not_have() -> None:
    usage = chat_usage(10, 5, 2)
    assert usage == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 2},
    }
    bare = chat_answer("a1", "m", [], [], [], "stop", usage)
    assert bare["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}
    ]
    full = chat_answer("a1", "m", ["x", "y"], ["t"], [{"id": "c"}], "tool_calls", usage)
    assert full["choices"][0]["message"] == {
        "role": "assistant",
        "content": "xy",
        "reasoning_content": "t",
        "tool_calls": [{"id": "c"}],
    }


def test_chunks_text_and_events() -> None:
    assert chat_chunk("a1", "m", {"content": "x"}) == {
        "id": "a1",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}],
    }
    assert text_of([{"type": "text", "text": "a"}, "junk", {"text": "b"}]) == "ab"
    assert event_object(SseEvent(None, '{"a": 1}')) == {"a": 1}
    assert event_object(SseEvent(None, "[1]")) is None
    assert event_object(SseEvent("ping", "")) is None


def test_what_chat_leaves_vague_is_read_alike() -> None:
    assert tool_error(ERROR_MARK + "no such file") == ("no such file", True)
    assert tool_error("fine [tool error] ") == ("fine [tool error] ", False)
    assert data_url("data:image/png;base64,AAAA") == ("image/png", "AAAA")
    assert data_url("https://example.com/a.png") is None
    assert history_arguments({"name": "f", "arguments": '{"a": 1,}'}) == {"a": 1}
    assert history_arguments({"name": "f", "arguments": "not json"}) == {"arguments": "not json"}
    assert history_arguments({"name": "f"}) == {}


def test_a_stream_is_asked_with_its_usage() -> None:
    chat: dict[str, object] = {"model": "m"}
    ask_to_stream(chat)
    assert chat == {"model": "m", "stream": True, "stream_options": {"include_usage": True}}
