"""Fake providers that answer with a tool call in their own API: Anthropic Messages, OpenAI
Responses and Gemini, streamed the way each streams it (or one JSON body when not asked to).
Chat Completions has its own in ``fakes.ChatToolCall``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .fakes import FakeHandler, Received, _dumps, _sse, model_of


@dataclass
class ToolCall:
    api: str  # "anthropic", "openai_responses", "gemini"
    name: str
    arguments: Mapping[str, Any]
    text: str = "Let me check."
    call_id: str = "call_fake_1"
    input_tokens: int = 23
    output_tokens: int = 9

    def run(self, h: FakeHandler, received: Received) -> None:
        model = model_of(received)
        if self.api == "gemini":
            streamed = "streamGenerateContent" in received.path
        else:
            streamed = bool(received.json().get("stream"))
        if not streamed:
            body = {
                "anthropic": self._anthropic_json,
                "openai_responses": self._responses_json,
                "gemini": self._gemini_json,
            }[self.api](model)
            h.send_full(200, _dumps(body).encode(), {"Content-Type": "application/json"})
            return
        events = {
            "anthropic": self._anthropic_sse,
            "openai_responses": self._responses_sse,
            "gemini": self._gemini_sse,
        }[self.api](model)
        h.start_chunked(200, {"Content-Type": "text/event-stream"})
        for event in events:
            h.send_chunk(event)
        h.end_chunked()

    def _pieces(self) -> list[str]:
        arguments = _dumps(dict(self.arguments))
        third = max(1, len(arguments) // 3)
        return [arguments[i : i + third] for i in range(0, len(arguments), third)]

    # --- Anthropic --------------------------------------------------------------------------

    def _anthropic_json(self, model: str) -> dict[str, Any]:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [
                {"type": "text", "text": self.text},
                {
                    "type": "tool_use",
                    "id": self.call_id,
                    "name": self.name,
                    "input": self.arguments,
                },
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
        }

    def _anthropic_sse(self, model: str) -> list[bytes]:
        message = {**self._anthropic_json(model), "content": [], "stop_reason": None}
        message["usage"] = {"input_tokens": self.input_tokens, "output_tokens": 1}
        tool = {"type": "tool_use", "id": self.call_id, "name": self.name, "input": {}}

        def ev(kind: str, **data: Any) -> bytes:
            return _sse({"type": kind, **data}, kind)

        out = [
            ev("message_start", message=message),
            ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
            ev("content_block_delta", index=0, delta={"type": "text_delta", "text": self.text}),
            ev("content_block_stop", index=0),
            ev("content_block_start", index=1, content_block=tool),
        ]
        out += [
            ev(
                "content_block_delta",
                index=1,
                delta={"type": "input_json_delta", "partial_json": p},
            )
            for p in self._pieces()
        ]
        out += [
            ev("content_block_stop", index=1),
            ev(
                "message_delta",
                delta={"stop_reason": "tool_use", "stop_sequence": None},
                usage={"output_tokens": self.output_tokens},
            ),
            ev("message_stop"),
        ]
        return out

    # --- Responses --------------------------------------------------------------------------

    def _responses_json(self, model: str) -> dict[str, Any]:
        return {
            "id": "resp_fake",
            "object": "response",
            "status": "completed",
            "model": model,
            "output": [
                {
                    "type": "message",
                    "id": "msg_fake",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": self.text, "annotations": []}],
                },
                {
                    "type": "function_call",
                    "id": "fc_fake",
                    "call_id": self.call_id,
                    "name": self.name,
                    "arguments": _dumps(dict(self.arguments)),
                    "status": "completed",
                },
            ],
            "usage": {
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "total_tokens": self.input_tokens + self.output_tokens,
            },
        }

    def _responses_sse(self, model: str) -> list[bytes]:
        done = self._responses_json(model)
        message, call = done["output"]
        started = {**done, "status": "in_progress", "output": [], "usage": None}

        def ev(kind: str, **data: Any) -> bytes:
            return _sse({"type": kind, **data}, kind)

        out = [
            ev("response.created", response=started),
            ev("response.output_item.added", output_index=0, item={**message, "content": []}),
            ev("response.output_text.delta", item_id="msg_fake", output_index=0, delta=self.text),
            ev("response.output_item.done", output_index=0, item=message),
            ev("response.output_item.added", output_index=1, item={**call, "arguments": ""}),
        ]
        out += [
            ev("response.function_call_arguments.delta", item_id="fc_fake", output_index=1, delta=p)
            for p in self._pieces()
        ]
        out += [
            ev(
                "response.function_call_arguments.done",
                item_id="fc_fake",
                output_index=1,
                arguments=call["arguments"],
            ),
            ev("response.output_item.done", output_index=1, item=call),
            ev("response.completed", response=done),
        ]
        return out

    # --- Gemini -----------------------------------------------------------------------------

    def _gemini_json(self, model: str) -> dict[str, Any]:
        call = {"name": self.name, "args": dict(self.arguments)}  # Gemini often sends no id
        parts = [{"text": self.text}, {"functionCall": call, "thoughtSignature": "c2lnLWZha2U="}]
        return {
            "candidates": [
                {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": self.input_tokens,
                "candidatesTokenCount": self.output_tokens,
                "totalTokenCount": self.input_tokens + self.output_tokens,
            },
            "modelVersion": model,
            "responseId": "gemini-fake-1",
        }

    def _gemini_sse(self, model: str) -> list[bytes]:
        whole = self._gemini_json(model)
        text, call = whole["candidates"][0]["content"]["parts"]
        first = {
            "candidates": [{"content": {"role": "model", "parts": [text]}, "index": 0}],
            "modelVersion": model,
            "responseId": "gemini-fake-1",
        }
        last = {**whole}
        last["candidates"] = [
            {**whole["candidates"][0], "content": {"role": "model", "parts": [call]}}
        ]
        return [_sse(first), _sse(last)]


def tool_call(
    api: str, name: str, arguments: Mapping[str, Any], *, text: str = "Let me check."
) -> ToolCall:
    """An answer of ``api`` calling tool ``name`` (streamed when the request asks)."""
    return ToolCall(api, name, arguments, text)
