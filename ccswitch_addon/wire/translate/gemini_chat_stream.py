"""A Chat Completions stream as the streamGenerateContent stream Gemini CLI reads.

Sent: one ``data:`` chunk per piece of text or thought as it comes; each tool call whole (a
``functionCall`` part with parsed ``args``) once the finish reason came, since Gemini never
streams a call in pieces; then a last chunk with the ``finishReason`` and the usage. A stream
that fails ends with Google's ``{"error": {...}}`` chunk and no finishReason.
"""

from __future__ import annotations

from typing import Any

from ccswitch_addon.wire.translate.chat_stream import State, WholeCallsStream
from ccswitch_addon.wire.translate.common import BadAnswer, JsonObject, dumps
from ccswitch_addon.wire.translate.gemini_chat import call_part, finish_reason, usage_metadata
from ccswitch_addon.wire.translate.sse import encode_event

__all__ = ["ChatToGeminiStream"]


class ChatToGeminiStream(WholeCallsStream):
    """``feed(bytes) -> bytes`` for each read, ``close() -> bytes`` at the end of the stream."""

    def __init__(self) -> None:
        super().__init__()
        self._meta: JsonObject = {}
        self._finish = "STOP"

    def _send(self, parts: list[JsonObject], finish: str | None = None, **extra: Any) -> None:
        candidate: JsonObject = {"content": {"role": "model", "parts": parts}}
        if finish is not None:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        chunk = {"candidates": [candidate], **extra, **self._meta}
        self._out.append(encode_event(None, dumps(chunk)))

    def on_first(self, chunk: JsonObject) -> None:
        self._meta = {"modelVersion": chunk.get("model", ""), "responseId": chunk.get("id", "")}

    def on_reasoning(self, text: str) -> None:
        self._send([{"text": text, "thought": True}])

    def on_text(self, text: str) -> None:
        self._send([{"text": text}])

    def on_finish(self, reason: Any) -> None:
        calls = self.whole_calls(self._meta.get("responseId") or "gemini")
        if calls is None:
            return
        parts = []
        for call_id, name, arguments in calls:
            try:
                parts.append(call_part(call_id, name, arguments))
            except BadAnswer as e:
                self.fail(str(e))
                return
        if parts:
            self._send(parts)
        self._finish = finish_reason(reason)
        self.state = State.FINISHING

    def on_complete(self) -> None:
        self._send([{"text": ""}], self._finish, usageMetadata=usage_metadata(self._usage))

    def on_failed(self, why: str) -> None:
        error = {"code": 502, "message": f"ccswitch: {why}", "status": "UNAVAILABLE"}
        self._out.append(encode_event(None, dumps({"error": error})))
