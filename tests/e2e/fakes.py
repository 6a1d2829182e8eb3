"""Fake LLM providers on loopback: realistic Anthropic, OpenAI and Gemini replies, and failures.

A `FakeProvider` is a threaded HTTP/1.1 server (keep-alive, many concurrent connections) that
records every request it receives and answers each one with the next queued `Behaviour`, or
with `default` when the queue is empty. Behaviours are built by the module-level functions
(`ok_json`, `ok_sse`, `sse_error_midstream`, `sse_truncated`, `error`, `hang`, `drop`,
`slow_first_byte`); anything with a ``run(handler, received)`` method works too.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit

API_NAMES = ("anthropic", "openai_chat", "openai_responses", "gemini")
# "openai" is what error() callers naturally write; chat and responses share the error shape.
_API_ALIASES = {"openai": "openai_chat"}

Body = bytes | str | Mapping[str, Any]


def api_name(api: str) -> str:
    """The canonical name of `api` ("openai" means "openai_chat"); ValueError if unknown."""
    name = _API_ALIASES.get(api, api)
    if name not in API_NAMES:
        raise ValueError(f"unknown api {api!r}; expected one of {API_NAMES} or 'openai'")
    return name


@dataclass
class Received:
    """One request as the fake provider saw it."""

    method: str
    path: str  # without the query
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes
    target: str = ""  # the request target exactly as sent (path and query)
    header_list: list[tuple[str, str]] = field(default_factory=list)  # as sent, in order
    at: float = 0.0  # time.monotonic() when the request had been read
    connection: int = 0  # which TCP connection carried it (numbered per provider from 1)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Received {self.method} {self.target or self.path} conn={self.connection}>"


class Behaviour(Protocol):
    """How the fake answers one request."""

    def run(self, h: FakeHandler, received: Received) -> None:
        """Write the response (or misbehave) on `h`."""


# --------------------------------------------------------------------------------------------
# Realistic bodies


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


_GEMINI_MODEL = re.compile(r"/models/([^/:]+):")


def model_of(received: Received, explicit: str | None = None) -> str:
    """The model to echo: `explicit`, else the request JSON's "model", else Gemini's path model."""
    if explicit is not None:
        return explicit
    try:
        data = json.loads(received.body) if received.body else None
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("model"), str):
        return str(data["model"])
    match = _GEMINI_MODEL.search(received.path)
    if match:
        return match.group(1)
    return "fake-model"


def json_body(
    api: str, model: str, *, text: str, input_tokens: int, output_tokens: int
) -> dict[str, Any]:
    """A successful non-streaming response body in `api`'s shape."""
    api = api_name(api)
    total = input_tokens + output_tokens
    if api == "anthropic":
        return {
            "id": _new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
    if api == "openai_chat":
        return {
            "id": _new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": total,
            },
        }
    if api == "openai_responses":
        return _responses_object(model, "completed", text, input_tokens, output_tokens)
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": input_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": total,
        },
        "modelVersion": model,
    }


def _responses_object(
    model: str, status: str, text: str | None, input_tokens: int, output_tokens: int
) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if text is not None:
        output.append(
            {
                "type": "message",
                "id": _new_id("msg_"),
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    return {
        "id": _new_id("resp_"),
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": output,
        "usage": (
            {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            }
            if status == "completed"
            else None
        ),
    }


_ANTHROPIC_ERRORS = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    503: ("overloaded_error", "Overloaded"),
    529: ("overloaded_error", "Overloaded"),
}
_OPENAI_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden"),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", "server_error", "The server had an error while processing your request."),
    503: ("server_error", "server_error", "The engine is currently overloaded."),
}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(api: str, status: int) -> dict[str, Any]:
    """A failure body in `api`'s own error shape, its type chosen by `status`."""
    api = api_name(api)
    if api == "anthropic":
        default = (
            ("api_error", "Internal server error")
            if status >= 500
            else ("invalid_request_error", "Invalid request")
        )
        kind, message = _ANTHROPIC_ERRORS.get(status, default)
        return {"type": "error", "error": {"type": kind, "message": message}}
    if api == "gemini":
        code = _GEMINI_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {"error": {"code": status, "message": f"fake {code.lower()}", "status": code}}
    default_oa = (
        ("server_error", "server_error", "Server error")
        if status >= 500
        else ("invalid_request_error", None, "Bad request")
    )
    kind, code_oa, message = _OPENAI_ERRORS.get(status, default_oa)
    return {"error": {"message": message, "type": kind, "param": None, "code": code_oa}}


# --------------------------------------------------------------------------------------------
# Server-sent event streams


def _sse(data: Any, event: str | None = None) -> bytes:
    lines = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else _dumps(data)
    return f"{lines}data: {payload}\n\n".encode()


@dataclass
class SseScript:
    """The events of one stream: opening events, the text deltas, and the events that end it."""

    prelude: list[bytes]
    deltas: list[bytes]
    finale: list[bytes]
    error: bytes  # the API's in-stream error event


def sse_script(
    api: str, model: str, *, deltas: int, input_tokens: int, output_tokens: int
) -> SseScript:
    """Build a realistic stream for `api` with `deltas` text deltas."""
    api = api_name(api)
    pieces = [f"chunk{i} " for i in range(deltas)]
    text = "".join(pieces)
    if api == "anthropic":
        msg_id = _new_id("msg_")
        start = {
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            },
        }
        return SseScript(
            prelude=[
                _sse(start, "message_start"),
                _sse(
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                    "content_block_start",
                ),
            ],
            deltas=[
                _sse(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": p},
                    },
                    "content_block_delta",
                )
                for p in pieces
            ],
            finale=[
                _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                _sse(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": output_tokens},
                    },
                    "message_delta",
                ),
                _sse({"type": "message_stop"}, "message_stop"),
            ],
            error=_sse(
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                "error",
            ),
        )
    if api == "openai_chat":
        chunk_id, created_at = _new_id("chatcmpl-"), int(time.time())

        def chunk(
            delta: dict[str, Any], finish: str | None, usage: dict[str, int] | None = None
        ) -> bytes:
            obj: dict[str, Any] = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created_at,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage is not None:
                obj["usage"] = usage
            return _sse(obj)

        usage = {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
        return SseScript(
            prelude=[],
            deltas=[
                chunk({"role": "assistant", "content": p} if i == 0 else {"content": p}, None)
                for i, p in enumerate(pieces)
            ],
            finale=[chunk({}, "stop", usage), _sse("[DONE]")],
            error=_sse(
                {
                    "error": {
                        "message": "The server is overloaded.",
                        "type": "server_error",
                        "param": None,
                        "code": "server_error",
                    }
                }
            ),
        )
    if api == "openai_responses":
        created = _responses_object(model, "in_progress", None, 0, 0)
        item_id = _new_id("msg_")
        seq = itertools.count()

        def ev(kind: str, **fields: Any) -> bytes:
            return _sse({"type": kind, "sequence_number": next(seq), **fields}, kind)

        # As the real API does: the message item and its text part open before any delta.
        item = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant"}
        part = {"type": "output_text", "text": "", "annotations": []}
        prelude = [
            ev("response.created", response=created),
            ev("response.in_progress", response=created),
            ev("response.output_item.added", output_index=0, item={**item, "content": []}),
            ev(
                "response.content_part.added",
                item_id=item_id,
                output_index=0,
                content_index=0,
                part=part,
            ),
        ]
        delta_events = [
            ev(
                "response.output_text.delta",
                item_id=item_id,
                output_index=0,
                content_index=0,
                delta=p,
            )
            for p in pieces
        ]
        done = _responses_object(model, "completed", text, input_tokens, output_tokens)
        done["id"] = created["id"]
        failed = _responses_object(model, "failed", None, 0, 0)
        failed["id"] = created["id"]
        failed["error"] = {"code": "server_error", "message": "The server is overloaded."}
        return SseScript(
            prelude=prelude,
            deltas=delta_events,
            finale=[
                ev(
                    "response.output_text.done",
                    item_id=item_id,
                    output_index=0,
                    content_index=0,
                    text=text,
                ),
                ev(
                    "response.content_part.done",
                    item_id=item_id,
                    output_index=0,
                    content_index=0,
                    part={**part, "text": text},
                ),
                ev(
                    "response.output_item.done",
                    output_index=0,
                    item={**done["output"][0], "id": item_id} if done["output"] else item,
                ),
                ev("response.completed", response=done),
            ],
            error=ev("response.failed", response=failed),
        )

    # Gemini: `streamGenerateContent?alt=sse` sends bare `data:` chunks; the last one finishes.
    def gchunk(part: str, last: bool) -> bytes:
        cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": part}]}, "index": 0}
        obj: dict[str, Any] = {"candidates": [cand], "modelVersion": model}
        if last:
            cand["finishReason"] = "STOP"
            obj["usageMetadata"] = {
                "promptTokenCount": input_tokens,
                "candidatesTokenCount": output_tokens,
                "totalTokenCount": input_tokens + output_tokens,
            }
        return _sse(obj)

    return SseScript(
        prelude=[],
        # The finishing chunk is part of the finale so that `after` deltas never include it.
        deltas=[gchunk(p, False) for p in pieces[:-1]] if deltas > 1 else [],
        finale=[gchunk(pieces[-1] if pieces else "", True)],
        error=_sse(
            {
                "error": {
                    "code": 503,
                    "message": "The model is overloaded. Please try again later.",
                    "status": "UNAVAILABLE",
                }
            }
        ),
    )


# --------------------------------------------------------------------------------------------
# Behaviours


def _merge_headers(base: Mapping[str, str], extra: Mapping[str, str] | None) -> dict[str, str]:
    """`base` overridden by `extra`, matching names case-insensitively."""
    merged = dict(base)
    for name, value in (extra or {}).items():
        for existing in [k for k in merged if k.lower() == name.lower()]:
            del merged[existing]
        merged[name] = value
    return merged


@dataclass
class JsonReply:
    """A complete JSON success response."""

    api: str = "anthropic"
    model: str | None = None
    input_tokens: int = 11
    output_tokens: int = 7
    text: str = "hello"
    status: int = 200

    def run(self, h: FakeHandler, received: Received) -> None:
        body = json_body(
            self.api,
            model_of(received, self.model),
            text=self.text,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
        )
        h.send_full(self.status, _dumps(body).encode(), {"Content-Type": "application/json"})


@dataclass
class ErrorReply:
    """A complete failure response (any status, any body)."""

    status: int
    api: str = "anthropic"
    body: Body | None = None
    headers: Mapping[str, str] | None = None

    def run(self, h: FakeHandler, received: Received) -> None:
        content_type = "application/json"
        if self.body is None:
            data = _dumps(error_body(self.api, self.status)).encode()
        elif isinstance(self.body, Mapping):
            data = _dumps(dict(self.body)).encode()
        else:
            data = self.body.encode() if isinstance(self.body, str) else self.body
            try:
                json.loads(data)
            except ValueError:
                content_type = "text/plain; charset=utf-8"
        h.send_full(self.status, data, _merge_headers({"Content-Type": content_type}, self.headers))


@dataclass
class SseReply:
    """A 200 text/event-stream response, each event flushed as its own chunk."""

    api: str = "anthropic"
    events: int = 5  # text deltas
    interval: float = 0.0  # seconds between consecutive events on the wire
    input_tokens: int = 11
    output_tokens: int = 7
    ending: Literal["complete", "error", "truncate"] = "complete"
    after: int = 2  # deltas sent before an "error" or "truncate" ending
    model: str | None = None

    def run(self, h: FakeHandler, received: Received) -> None:
        complete = self.ending == "complete"
        script = sse_script(
            self.api,
            model_of(received, self.model),
            # One spare delta: even Gemini (whose last chunk finishes) then has `after` plain ones.
            deltas=self.events if complete else self.after + 1,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
        )
        events = script.prelude + (script.deltas if complete else script.deltas[: self.after])
        if self.ending == "complete":
            events += script.finale
        elif self.ending == "error":
            events.append(script.error)
        h.start_chunked(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        for i, event in enumerate(events):
            if i and self.interval and not h.pause(self.interval):
                h.close_now(reset=False)
                return
            h.send_chunk(event)
        if self.ending == "truncate":
            # A broken chunked stream: no terminating 0-chunk, just FIN.
            h.close_now(reset=False)
        else:
            h.end_chunked()


@dataclass
class Hang:
    """Read the request, say nothing for `seconds`, then close."""

    seconds: float = 30.0

    def run(self, h: FakeHandler, received: Received) -> None:
        h.pause(self.seconds)
        h.close_now(reset=False)


@dataclass
class Drop:
    """Read the request, then reset the connection without a response."""

    def run(self, h: FakeHandler, received: Received) -> None:
        h.close_now(reset=True)


@dataclass
class SlowFirstByte:
    """Wait `seconds`, then behave as `then`."""

    seconds: float
    then: Behaviour

    def run(self, h: FakeHandler, received: Received) -> None:
        if h.pause(self.seconds):
            self.then.run(h, received)
        else:
            h.close_now(reset=False)


def ok_json(
    api: str = "anthropic",
    *,
    model: str | None = None,
    input_tokens: int = 11,
    output_tokens: int = 7,
    text: str = "hello",
    status: int = 200,
) -> JsonReply:
    """A realistic non-streaming success echoing `model`, the request's, or Gemini's path model."""
    return JsonReply(api_name(api), model, input_tokens, output_tokens, text, status)


def ok_sse(
    api: str = "anthropic",
    *,
    events: int = 5,
    interval: float = 0.0,
    input_tokens: int = 11,
    output_tokens: int = 7,
    model: str | None = None,
) -> SseReply:
    """A realistic complete stream with `events` text deltas, `interval` s between wire events."""
    return SseReply(
        api_name(api), events, interval, input_tokens, output_tokens, "complete", 0, model
    )


def sse_error_midstream(
    api: str = "anthropic", *, after: int = 2, interval: float = 0.0
) -> SseReply:
    """A 200 stream that sends the API's error event after `after` deltas, then ends cleanly."""
    return SseReply(api_name(api), after, interval, ending="error", after=after)


def sse_truncated(api: str = "anthropic", *, after: int = 2, interval: float = 0.0) -> SseReply:
    """A 200 stream whose connection closes after `after` deltas, without the end marker."""
    return SseReply(api_name(api), after, interval, ending="truncate", after=after)


def error(
    status: int,
    *,
    api: str = "anthropic",
    body: Body | None = None,
    headers: Mapping[str, str] | None = None,
) -> ErrorReply:
    """A failure in the API's error shape; `body` and `headers` (e.g. Retry-After) override."""
    return ErrorReply(status, api_name(api), body, headers)


@dataclass
class ChatToolCall:
    """An OpenAI Chat Completions answer that calls a tool, the way Chat servers stream it:
    some text, the call's id and name, its arguments in fragments, ``finish_reason:
    tool_calls``, usage in a chunk of its own, ``[DONE]``; or one JSON body if not streamed."""

    name: str
    arguments: Mapping[str, Any]
    text: str = "Let me check."
    interval: float = 0.0  # seconds between events
    input_tokens: int = 23
    output_tokens: int = 9
    call_id: str = "call_fake_1"

    def run(self, h: FakeHandler, received: Received) -> None:
        model = model_of(received)
        arguments = _dumps(dict(self.arguments))
        usage = {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }
        call = {"id": self.call_id, "type": "function"}
        if not received.json().get("stream"):
            message = {
                "role": "assistant",
                "content": self.text,
                "tool_calls": [{**call, "function": {"name": self.name, "arguments": arguments}}],
            }
            body = {
                "id": _new_id("chatcmpl-"),
                "object": "chat.completion",
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": usage,
            }
            h.send_full(200, _dumps(body).encode(), {"Content-Type": "application/json"})
            return
        chunk_id = _new_id("chatcmpl-")

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            obj = {"id": chunk_id, "object": "chat.completion.chunk", "model": model}
            return _sse({**obj, "choices": [choice]})

        third = max(1, len(arguments) // 3)
        pieces = [arguments[i : i + third] for i in range(0, len(arguments), third)]
        events = [chunk({"role": "assistant", "content": self.text})]
        events.append(
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, **call, "function": {"name": self.name, "arguments": ""}}
                    ]
                }
            )
        )
        events += [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            for piece in pieces
        ]
        events.append(chunk({}, "tool_calls"))
        obj = {"id": chunk_id, "object": "chat.completion.chunk", "model": model}
        events.append(_sse({**obj, "choices": [], "usage": usage}))
        events.append(_sse("[DONE]"))
        h.start_chunked(200, {"Content-Type": "text/event-stream"})
        for i, event in enumerate(events):
            if i and self.interval and not h.pause(self.interval):
                h.close_now(reset=False)
                return
            h.send_chunk(event)
        h.end_chunked()


def chat_tool_call(
    name: str, arguments: Mapping[str, Any], *, text: str = "Let me check.", interval: float = 0.0
) -> ChatToolCall:
    """A Chat Completions answer calling tool `name` (streamed when the request says so)."""
    return ChatToolCall(name, arguments, text, interval)


def hang(seconds: float = 30) -> Hang:
    """Read the request, send nothing for `seconds`, then close (stop() cuts it short)."""
    return Hang(seconds)


def drop() -> Drop:
    """Read the request, then close the connection with a TCP reset and no response."""
    return Drop()


def slow_first_byte(seconds: float, then: Behaviour) -> SlowFirstByte:
    """Wait `seconds` before anything is sent, then behave as `then`."""
    return SlowFirstByte(seconds, then)


def closed_port() -> int:
    """A loopback port with nothing listening on it (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SseEvent:
    """One server-sent event."""

    event: str | None
    data: str

    def json(self) -> Any:
        """The data parsed as JSON."""
        return json.loads(self.data)


def parse_sse(body: bytes | str) -> list[SseEvent]:
    """Split an event-stream body into events (comments and empty blocks skipped)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    events: list[SseEvent] = []
    for block in re.split(r"\r?\n\r?\n", text):
        name: str | None = None
        data: list[str] = []
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
        if name is not None or data:
            events.append(SseEvent(name, "\n".join(data)))
    return events


@dataclass
class StreamSummary:
    """What a client would make of an event stream of one API."""

    events: list[SseEvent]
    text: str  # the concatenated text deltas
    input_tokens: int | None
    output_tokens: int | None
    finished: bool  # the API's normal end marker arrived
    error: Any  # the API's in-stream error payload, if one arrived


def summarize_stream(api: str, body: bytes | str) -> StreamSummary:
    """Parse `body` as `api`'s stream: text, usage, whether it finished, any in-stream error."""
    api = api_name(api)
    events = parse_sse(body)
    text: list[str] = []
    tokens_in: int | None = None
    tokens_out: int | None = None
    finished = False
    failure: Any = None
    for ev in events:
        if api == "openai_chat" and ev.data == "[DONE]":
            finished = True
            continue
        try:
            data = ev.json()
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if api == "anthropic":
            kind = data.get("type")
            if kind == "message_start":
                tokens_in = data["message"]["usage"].get("input_tokens")
            elif kind == "content_block_delta":
                text.append(data["delta"].get("text", ""))
            elif kind == "message_delta":
                tokens_out = data.get("usage", {}).get("output_tokens", tokens_out)
            elif kind == "message_stop":
                finished = True
            elif kind == "error":
                failure = data.get("error")
        elif api == "openai_chat":
            if "error" in data:
                failure = data["error"]
            for choice in data.get("choices") or []:
                text.append(choice.get("delta", {}).get("content") or "")
            if data.get("usage"):
                tokens_in = data["usage"].get("prompt_tokens")
                tokens_out = data["usage"].get("completion_tokens")
        elif api == "openai_responses":
            kind = data.get("type")
            if kind == "response.output_text.delta":
                text.append(data.get("delta", ""))
            elif kind == "response.completed":
                finished = True
                usage = data["response"].get("usage") or {}
                tokens_in, tokens_out = usage.get("input_tokens"), usage.get("output_tokens")
            elif kind in ("response.failed", "error"):
                failure = data.get("response", {}).get("error") or data
        else:
            if "error" in data:
                failure = data["error"]
            for cand in data.get("candidates") or []:
                text.extend(p.get("text", "") for p in cand.get("content", {}).get("parts", []))
                finished = finished or cand.get("finishReason") == "STOP"
            usage = data.get("usageMetadata")
            if usage:
                tokens_in = usage.get("promptTokenCount")
                tokens_out = usage.get("candidatesTokenCount")
    return StreamSummary(events, "".join(text), tokens_in, tokens_out, finished, failure)


# --------------------------------------------------------------------------------------------
# The server


_REASONS = {529: "Site Overloaded"}


class FakeHandler(BaseHTTPRequestHandler):
    """One client connection; behaviours write their response through the helpers below."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, chunked responses
    disable_nagle_algorithm = True  # each SSE event leaves as its own segment, promptly

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.provider._next_connection_id()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the recorded requests are the log."""

    def _dispatch(self) -> None:
        target = self.path
        parts = urlsplit(target)
        header_list = [(k.lower(), v) for k, v in self.headers.items()]
        headers: dict[str, str] = {}
        for name, value in header_list:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        received = Received(
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=headers,
            body=self._read_body(headers),
            target=parts.path + (f"?{parts.query}" if parts.query else ""),
            header_list=header_list,
            at=time.monotonic(),
            connection=self.connection_id,
        )
        behaviour = self.server.provider._record(received)
        try:
            behaviour.run(self, received)
        except OSError:
            # The client went away mid-response (or the provider is stopping): nothing to answer.
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _read_body(self, headers: Mapping[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(headers.get("content-length", "0") or 0)
        return self.rfile.read(length) if length else b""

    # Helpers for behaviours -----------------------------------------------------------------

    def pause(self, seconds: float) -> bool:
        """Wait `seconds`; False (early) if the provider is stopping."""
        return not self.server.provider._stopping.wait(seconds)

    def _head(self, status: int, headers: Mapping[str, str]) -> None:
        self.send_response(status, _REASONS.get(status))
        self.send_header("x-fake-provider", self.server.provider.name)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def send_full(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        """Send a complete response with Content-Length."""
        self._head(status, _merge_headers(headers, {"Content-Length": str(len(body))}))
        if self.command != "HEAD":
            self.wfile.write(body)

    def start_chunked(self, status: int, headers: Mapping[str, str]) -> None:
        """Send the status line and headers of a chunked response."""
        self._head(status, _merge_headers(headers, {"Transfer-Encoding": "chunked"}))

    def send_chunk(self, data: bytes) -> None:
        """Send one chunk (written straight to the socket: the writer is unbuffered)."""
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunked(self) -> None:
        """Send the terminating 0-chunk."""
        self.wfile.write(b"0\r\n\r\n")

    def close_now(self, *, reset: bool) -> None:
        """Close the connection now: with a TCP RST if `reset`, else a normal FIN."""
        self.close_connection = True
        sock = self.connection
        try:
            if not reset:
                sock.shutdown(socket.SHUT_RDWR)  # FIN now; socketserver closes the socket later
                return
            # SO_LINGER 0 makes close() send RST instead of FIN. Close here, before socketserver's
            # own shutdown(SHUT_WR) would send a FIN first.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            return
        # rfile (a makefile()) holds a reference: the socket only really closes without it.
        # wfile is a plain writer on the socket and stays open for the base class's flush().
        self.rfile.close()
        sock.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hanging handler must never keep the test process alive
    request_queue_size = 128  # 50 simultaneous connects must not overflow the listen backlog

    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider
        super().__init__(("127.0.0.1", 0), FakeHandler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        self.provider._track(request, threading.current_thread(), True)
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.provider._track(request, threading.current_thread(), False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # a client (or stop()) closing a connection is routine here
        self.provider.errors.append(traceback.format_exc())
        traceback.print_exc()


class FakeProvider:
    """A loopback LLM API that records requests and answers with queued behaviours."""

    host: str = "127.0.0.1"

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.requests: list[Received] = []
        self.default: Behaviour = ok_json("anthropic")
        self.errors: list[str] = []  # tracebacks of unexpected handler exceptions (fake bugs)
        self._queue: list[Behaviour] = []
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[Any, threading.Thread] = {}
        self._connection_ids = itertools.count(1)

    # Lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeProvider:
        """Bind a free loopback port and serve in a daemon thread."""
        if self._server is not None or self._stopping.is_set():
            raise RuntimeError(f"{self.name}: start() once per FakeProvider")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits for the loop to notice
            name=f"fake-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; cut hanging and keep-alive connections short."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._cond:
            connections = dict(self._connections)
        for sock in connections:
            # Wakes handlers blocked reading the next request on a keep-alive connection.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 2
        for thread in connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(2)

    def __enter__(self) -> FakeProvider:
        return self if self._server is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after start())."""
        if self._server is None:
            raise RuntimeError(f"{self.name} is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    # Behaviour and records ------------------------------------------------------------------

    def queue(self, *behaviours: Behaviour) -> None:
        """Append behaviours, consumed first in first out, one per request."""
        with self._cond:
            self._queue.extend(behaviours)

    @property
    def pending(self) -> int:
        """How many queued behaviours are still unused."""
        with self._cond:
            return len(self._queue)

    def wait_for_requests(self, n: int, timeout: float = 10) -> list[Received]:
        """Block until at least `n` requests arrived; a copy of them (AssertionError on timeout)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise AssertionError(
                    f"{self.name}: expected {n} request(s) within {timeout}s, got "
                    f"{len(self.requests)}: {self.requests!r}"
                )
            return list(self.requests)

    def reset(self) -> None:
        """Forget queued behaviours and recorded requests (the default stays)."""
        with self._cond:
            self._queue.clear()
            self.requests.clear()

    def _record(self, received: Received) -> Behaviour:
        with self._cond:
            self.requests.append(received)
            behaviour = self._queue.pop(0) if self._queue else self.default
            self._cond.notify_all()
        return behaviour

    def _track(self, sock: Any, thread: threading.Thread, alive: bool) -> None:
        with self._cond:
            if alive:
                self._connections[sock] = thread
            else:
                self._connections.pop(sock, None)

    def _next_connection_id(self) -> int:
        with self._cond:
            return next(self._connection_ids)

    def __repr__(self) -> str:
        state = self.url if self._server is not None else "stopped"
        return f"<FakeProvider {self.name} {state} requests={len(self.requests)}>"
