"""A Chat Completions stream as the streamGenerateContent stream Gemini CLI reads.

Sent: one ``data:`` chunk per piece of text or thought as it comes; each tool call whole (a
``functionCall`` part with parsed ``args``) once the finish reason came, since Gemini never
streams a call in pieces; then a last chunk with the ``finishReason`` and the usage. A stream
that fails ends with Google's ``{"error": {...}}`` chunk and no finishReason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ccswitch_addon.wire.translate.chat_stream import ChatStreamTranslator, State
from ccswitch_addon.wire.translate.common import BadAnswer, JsonObject, dumps
from ccswitch_addon.wire.translate.gemini_chat import call_part, finish_reason, usage_metadata
from ccswitch_addon.wire.translate.sse import encode_event

__all__ = ["ChatToGeminiStream"]


@dataclass(slots=True)
class _Call:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChatToGeminiStream(ChatStreamTranslator):
    """``feed(bytes) -> bytes`` for each read, ``close() -> bytes`` at the end of the stream."""

    def __init__(self) -> None:
        super().__init__()
        self._meta: JsonObject = {}
        self._calls: dict[int, _Call] = {}
        self._finish = "STOP"

    def _send(self, parts: list[JsonObject], **extra: Any) -> None:
        candidate: JsonObject = {"content": {"role": "model", "parts": parts}, "index": 0}
        if "finishReason" in extra:
            candidate["finishReason"] = extra.pop("finishReason")
        chunk = {"candidates": [candidate], **extra, **self._meta}
        self._out.append(encode_event(None, dumps(chunk)))

    def on_first(self, chunk: JsonObject) -> None:
        self._meta = {"modelVersion": chunk.get("model", ""), "responseId": chunk.get("id", "")}

    def on_reasoning(self, text: str) -> None:
        self._send([{"text": text, "thought": True}])

    def on_text(self, text: str) -> None:
        self._send([{"text": text}])

    def on_tool_call(self, call: JsonObject, slot: int) -> None:
        entry = self._calls.setdefault(slot, _Call())
        if call.get("id") and not entry.id:
            entry.id = str(call["id"])
        function = call.get("function") or {}
        if function.get("name") and not entry.name:
            entry.name = str(function["name"])
        if isinstance(function.get("arguments"), str):
            entry.arguments.append(function["arguments"])

    def on_finish(self, reason: Any) -> None:
        named = [(slot, c) for slot, c in sorted(self._calls.items()) if c.name]
        if self._calls and not named:
            self.fail("every tool call came without a name")
            return
        parts = []
        for slot, call in named:
            call_id = call.id or f"call_{self._meta.get('responseId') or 'gemini'}_{slot}"
            try:
                parts.append(call_part(call_id, call.name, "".join(call.arguments)))
            except BadAnswer as e:
                self.fail(str(e))
                return
        if parts:
            self._send(parts)
        self._finish = finish_reason(reason)
        self.state = State.FINISHING

    def on_complete(self) -> None:
        chunk = {"usageMetadata": usage_metadata(self._usage)}
        content = {"role": "model", "parts": [{"text": ""}]}
        candidate = {"content": content, "finishReason": self._finish, "index": 0}
        self._out.append(
            encode_event(None, dumps({"candidates": [candidate], **chunk, **self._meta}))
        )

    def on_failed(self, why: str) -> None:
        error = {"code": 502, "message": f"ccswitch: {why}", "status": "UNAVAILABLE"}
        self._out.append(encode_event(None, dumps({"error": error})))
