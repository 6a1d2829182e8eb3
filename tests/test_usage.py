"""BodyWatch: usage, errors and the end marker of each API's bodies, chunks passed on unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from ccswitch_addon.core.config import Api
from ccswitch_addon.wire.usage import BodyWatch, StreamResult

SSE = "text/event-stream; charset=utf-8"
JSON = "application/json"


def event(name: str | None, data: dict[str, Any] | str, newline: str = "\n") -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {name}{newline}" if name else ""
    return f"{head}data: {payload}{newline}{newline}"


# --- realistic streams, as the APIs send them ---------------------------------------------------

ANTHROPIC = "".join(
    [
        event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_01",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": 472, "output_tokens": 2},
                },
            },
        ),
        event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        event("ping", {"type": "ping"}),
        event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Grüß"},
            },
        ),
        event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "e 🌍"},
            },
        ),
        event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 89},
            },
        ),
        event("message_stop", {"type": "message_stop"}),
    ]
)
ANTHROPIC_END = event("message_stop", {"type": "message_stop"})
ANTHROPIC_ERROR = ANTHROPIC.replace(
    ANTHROPIC_END,
    event(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    ),
)


def chat_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        if delta or finish
        else [],
        **extra,
    }


OPENAI_CHAT = "".join(
    [
        event(None, chat_chunk({"role": "assistant", "content": ""})),
        event(None, chat_chunk({"content": "Hello"})),
        event(None, chat_chunk({"content": " there"})),
        event(None, chat_chunk({}, "stop")),
        event(
            None,
            chat_chunk(
                {}, usage={"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29}
            ),
        ),
        event(None, "[DONE]"),
    ]
)
OPENAI_CHAT_ERROR = OPENAI_CHAT.replace(
    event(None, "[DONE]"),
    event(None, {"error": {"message": "The server is overloaded.", "type": "server_error"}}),
)


def response_object(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "status": status,
        "model": "gpt-5",
        "output": [],
        "error": None,
        "usage": None,
        **extra,
    }


RESPONSES = "".join(
    [
        event(
            "response.created",
            {
                "type": "response.created",
                "sequence_number": 0,
                "response": response_object("in_progress"),
            },
        ),
        event(
            "response.output_text.delta",
            {
                "type": "response.output_text.delta",
                "sequence_number": 1,
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "delta": "Hi",
            },
        ),
        event(
            "response.completed",
            {
                "type": "response.completed",
                "sequence_number": 2,
                "response": response_object(
                    "completed",
                    output=[
                        {"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}
                    ],
                    usage={"input_tokens": 36, "output_tokens": 87, "total_tokens": 123},
                ),
            },
        ),
    ]
)
RESPONSES_FAILED = "".join(
    [
        event(
            "response.created",
            {
                "type": "response.created",
                "sequence_number": 0,
                "response": response_object("in_progress"),
            },
        ),
        event(
            "response.failed",
            {
                "type": "response.failed",
                "sequence_number": 1,
                "response": response_object(
                    "failed", error={"code": "server_error", "message": "The model failed."}
                ),
            },
        ),
    ]
)


def gemini_chunk(text: str, output_tokens: int, finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"parts": [{"text": text}], "role": "model"},
        "index": 0,
    }
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": 8,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": 8 + output_tokens,
        },
        "modelVersion": "gemini-2.5-flash",
    }


# Gemini's alt=sse stream separates events with CRLF.
GEMINI = "".join(
    [
        event(None, gemini_chunk("Hello", 1), "\r\n"),
        event(None, gemini_chunk(" world", 5), "\r\n"),
        event(None, gemini_chunk("!", 12, "STOP"), "\r\n"),
    ]
)
GEMINI_ERROR = "".join(
    [
        event(None, gemini_chunk("Hello", 1), "\r\n"),
        event(
            None,
            {
                "error": {
                    "code": 503,
                    "message": "The model is overloaded.",
                    "status": "UNAVAILABLE",
                }
            },
            "\r\n",
        ),
    ]
)

STREAMS = {
    "anthropic": (Api.ANTHROPIC, ANTHROPIC, 472, 89),
    "openai-chat": (Api.OPENAI, OPENAI_CHAT, 19, 10),
    "openai-responses": (Api.OPENAI, RESPONSES, 36, 87),
    "gemini": (Api.GEMINI, GEMINI, 8, 12),
}


def feed(watch: BodyWatch, chunks: Iterable[bytes]) -> StreamResult:
    for chunk in chunks:
        assert watch(chunk) is chunk
    end = b""
    assert watch(end) is end
    return watch.result()


def splits(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


# --- streams ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(STREAMS))
@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10**6], ids=lambda s: f"chunks-of-{s}")
def test_streams_read_at_any_chunk_size(name: str, size: int) -> None:
    api, text, input_tokens, output_tokens = STREAMS[name]
    data = text.encode()
    seen = bytearray()
    watch = BodyWatch(api, SSE)
    for chunk in splits(data, size):
        passed = watch(chunk)
        assert passed is chunk
        seen += passed
    watch(b"")
    assert bytes(seen) == data
    result = watch.result()
    assert (result.usage.input_tokens, result.usage.output_tokens) == (input_tokens, output_tokens)
    assert result.error is None
    assert result.ended is True
    assert result.sse is True
    assert result.content is True
    assert result.problem() is None


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_streams_split_in_two_at_every_byte(name: str) -> None:
    api, text, input_tokens, output_tokens = STREAMS[name]
    data = text.encode()
    for cut in range(1, len(data)):
        result = feed(BodyWatch(api, SSE), [data[:cut], data[cut:]])
        assert (result.usage.input_tokens, result.usage.output_tokens) == (
            input_tokens,
            output_tokens,
        ), f"cut at {cut}: {data[cut - 10 : cut + 10]!r}"
        assert result.ended is True, f"cut at {cut}"
        assert result.error is None, f"cut at {cut}"


def test_a_cut_between_cr_and_lf_is_one_line_end() -> None:
    data = GEMINI.encode()
    cut = data.index(b"\r\n") + 1
    watch = BodyWatch(Api.GEMINI, SSE)
    result = feed(watch, [data[:cut], data[cut:]])
    assert result.ended is True
    assert result.usage.output_tokens == 12


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_a_stream_cut_short_has_not_ended(name: str) -> None:
    api, text, _, _ = STREAMS[name]
    data = text.encode()
    marker = {
        "anthropic": b"event: message_stop",
        "openai-chat": b"data: [DONE]",
        "openai-responses": b"event: response.completed",
        "gemini": b'"finishReason"',
    }[name]
    end_at = data.index(marker)
    result = feed(BodyWatch(api, SSE), splits(data[:end_at], 5))
    assert result.ended is False
    assert result.problem() == "stream ended before its end marker"


@pytest.mark.parametrize(
    ("api", "text", "error"),
    [
        (Api.ANTHROPIC, ANTHROPIC_ERROR, "overloaded_error: Overloaded"),
        (Api.OPENAI, OPENAI_CHAT_ERROR, "server_error: The server is overloaded."),
        (Api.OPENAI, RESPONSES_FAILED, "response.failed"),
        (Api.GEMINI, GEMINI_ERROR, "UNAVAILABLE: The model is overloaded."),
    ],
    ids=["anthropic-event-error", "openai-chat", "responses-failed", "gemini"],
)
def test_error_events_are_detected(api: Api, text: str, error: str) -> None:
    data = text.encode()
    for size in (1, 13, len(data)):
        result = feed(BodyWatch(api, SSE), splits(data, size))
        assert result.error == error
        assert result.problem() == error
        assert result.ended is False


def test_usage_without_a_trailing_newline_is_read_at_the_end() -> None:
    data = OPENAI_CHAT.rstrip("\n").encode()
    result = feed(BodyWatch(Api.OPENAI, SSE), [data])
    assert result.ended is True
    assert result.usage.output_tokens == 10


def test_an_empty_completion_is_a_problem() -> None:
    text = "".join(
        [
            event(None, chat_chunk({"role": "assistant", "content": ""})),
            event(None, chat_chunk({}, "stop")),
            event(None, chat_chunk({}, usage={"prompt_tokens": 5, "completion_tokens": 0})),
            event(None, "[DONE]"),
        ]
    )
    result = feed(BodyWatch(Api.OPENAI, SSE), [text.encode()])
    assert result.content is False
    assert result.problem() == "empty completion"


# --- JSON bodies ----------------------------------------------------------------------------------

JSON_BODIES = {
    "anthropic": (
        Api.ANTHROPIC,
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "Hi ✓"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 12, "output_tokens": 6},
        },
        (12, 6),
    ),
    "openai-chat": (
        Api.OPENAI,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 13, "completion_tokens": 7, "total_tokens": 20},
        },
        (13, 7),
    ),
    "openai-responses": (
        Api.OPENAI,
        response_object(
            "completed",
            output=[{"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}],
            usage={"input_tokens": 14, "output_tokens": 8, "total_tokens": 22},
        ),
        (14, 8),
    ),
    "gemini": (Api.GEMINI, gemini_chunk("Hi", 9, "STOP"), (8, 9)),
}


@pytest.mark.parametrize("name", sorted(JSON_BODIES))
def test_json_bodies(name: str) -> None:
    api, document, tokens = JSON_BODIES[name]
    data = json.dumps(document, indent=2, ensure_ascii=False).encode()
    for size in (1, 9, len(data)):
        result = feed(BodyWatch(api, JSON), splits(data, size))
        assert (result.usage.input_tokens, result.usage.output_tokens) == tokens
        assert result.ended is True
        assert result.sse is False
        assert result.error is None
        assert result.problem() is None


def test_a_truncated_json_body_has_not_ended() -> None:
    api, document, _ = JSON_BODIES["anthropic"]
    data = json.dumps(document).encode()
    watch = BodyWatch(api, JSON)
    assert watch(data[:-5]) == data[:-5]
    assert watch.result().ended is False  # nothing is known before the end
    watch(b"")
    assert watch.result().ended is False
    assert watch.result().usage.input_tokens is None


@pytest.mark.parametrize(
    ("api", "document", "error"),
    [
        (
            Api.ANTHROPIC,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            "overloaded_error: Overloaded",
        ),
        (
            Api.OPENAI,
            {"error": {"message": "Rate limited", "type": "rate_limit_error", "code": None}},
            "rate_limit_error: Rate limited",
        ),
        (
            Api.GEMINI,
            {"error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}},
            "UNAVAILABLE: Overloaded",
        ),
    ],
)
def test_json_errors(api: Api, document: dict[str, Any], error: str) -> None:
    result = feed(BodyWatch(api, JSON), [json.dumps(document).encode()])
    assert result.error == error


def test_a_json_body_that_is_not_json_is_passed_on() -> None:
    chunk = b"<html>bad gateway</html>"
    watch = BodyWatch(Api.OPENAI, "text/html")
    result = feed(watch, [chunk])
    assert result.ended is False
    assert result.error is None


def test_an_sse_line_without_end_is_held_bounded_and_the_stream_read_on_after_it() -> None:
    # A hostile stream: one real event, then NULs with no line break (a decompressed bomb).
    watch = BodyWatch(Api.OPENAI, "text/event-stream")
    watch(b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n')
    assert watch.content
    for _ in range(20 * 16):  # 20 MB in 64 KiB pieces
        watch(b"\0" * (64 * 1024))
        assert len(watch._carry) <= 4 * 1024 * 1024 + 64 * 1024
    watch(b"\0data: [DONE]\n")  # the end of the long line is skipped, not read as a line
    assert not watch.ended
    watch(b"data: [DONE]\n\n")
    assert watch.ended
