"""A whole event stream read back into its format's one JSON answer (a relay's stream to a
request that asked for none)."""

from __future__ import annotations

import pytest
from e2e.fakes import sse_script

from ccswitch_addon.wire.translate import BadAnswer, Format
from ccswitch_addon.wire.translate.collect import collect

from .streams import named_sse, sse
from .test_anthropic_chat_stream import chunk, tool


def whole(fmt: Format, deltas: int = 3) -> bytes:
    script = sse_script(fmt.value, "m", deltas=deltas, input_tokens=5, output_tokens=7)
    return b"".join([*script.prelude, *script.deltas, *script.finale])


def test_each_format_read_whole() -> None:
    text = "chunk0 chunk1 chunk2 "
    message = collect(Format.ANTHROPIC, whole(Format.ANTHROPIC))
    assert message["content"] == [{"type": "text", "text": text}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["output_tokens"] == 7
    chat = collect(Format.OPENAI_CHAT, whole(Format.OPENAI_CHAT))
    assert chat["choices"][0]["message"]["content"] == text
    assert chat["choices"][0]["finish_reason"] == "stop"
    response = collect(Format.OPENAI_RESPONSES, whole(Format.OPENAI_RESPONSES))
    assert response["status"] == "completed"
    assert response["output"][0]["content"][0]["text"] == text
    gemini = collect(Format.GEMINI, whole(Format.GEMINI))
    assert gemini["candidates"][0]["content"]["parts"] == [{"text": text}]
    assert gemini["candidates"][0]["finishReason"] == "STOP"
    assert gemini["usageMetadata"]["candidatesTokenCount"] == 7


def test_tool_calls_read_whole_also_at_one_index() -> None:
    raw = sse(
        chunk({"tool_calls": [tool(0, "call_a", "Read", '{"file_path":')]}),
        chunk({"tool_calls": [tool(0, args='"/a"}')]}),
        chunk({"tool_calls": [tool(0, "call_b", "Read", '{"file_path":"/b"}')]}),
        chunk(finish="tool_calls"),
    )
    calls = collect(Format.OPENAI_CHAT, raw)["choices"][0]["message"]["tool_calls"]
    assert [(c["id"], c["function"]["arguments"]) for c in calls] == [
        ("call_a", '{"file_path":"/a"}'),
        ("call_b", '{"file_path":"/b"}'),
    ]
    block = {"type": "tool_use", "id": "t1", "name": "Read", "input": {}}
    anthropic = named_sse(
        ("message_start", {"type": "message_start", "message": {"id": "m", "content": []}}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"file_path":"/a"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
        ("message_stop", {"type": "message_stop"}),
    )
    message = collect(Format.ANTHROPIC, anthropic)
    assert message["content"] == [{**block, "input": {"file_path": "/a"}}]
    assert message["stop_reason"] == "tool_use"


def test_an_error_event_is_the_formats_error_document() -> None:
    script = sse_script("anthropic", "m", deltas=2, input_tokens=1, output_tokens=1)
    raw = b"".join([*script.prelude, *script.deltas, script.error])
    assert collect(Format.ANTHROPIC, raw)["type"] == "error"
    chat = sse_script("openai_chat", "m", deltas=2, input_tokens=1, output_tokens=1)
    assert "error" in collect(Format.OPENAI_CHAT, b"".join([*chat.prelude, chat.error]))


@pytest.mark.parametrize("fmt", list(Format))
def test_a_stream_without_its_end_is_a_bad_answer(fmt: Format) -> None:
    script = sse_script(fmt.value, "m", deltas=3, input_tokens=1, output_tokens=1)
    with pytest.raises(BadAnswer):
        collect(fmt, b"".join([*script.prelude, *script.deltas]))
