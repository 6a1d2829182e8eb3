"""A Chat Completions stream as the Responses event sequence Codex CLI reads.

Sent: ``response.created``, ``response.in_progress``; a reasoning item (summary part and
text deltas) and a message item (content part and text deltas) as they stream; tool calls
buffered whole and sent at the finish (added, arguments delta and done, item done), custom
tools as ``custom_tool_call`` items; then ``response.completed``, ``response.incomplete``
(length, content filter) or ``response.failed``. A turn whose tool calls all lack a name
fails: "completed" without a call would silently stop Codex's agent loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ccswitch_addon.wire.translate.chat_stream import State, WholeCallsStream
from ccswitch_addon.wire.translate.common import BadAnswer, JsonObject, dumps
from ccswitch_addon.wire.translate.responses_chat import ResponsesTools, finish_status
from ccswitch_addon.wire.translate.sse import encode_event

__all__ = ["ChatToResponsesStream"]


class ChatToResponsesStream(WholeCallsStream):
    """``feed(bytes) -> bytes`` for each read, ``close() -> bytes`` at the end of the stream.

    ``on_complete(response)`` is called with the final response object (for the
    conversation memory) when the stream completes.
    """

    def __init__(
        self,
        tools: ResponsesTools | None = None,
        *,
        created_at: int = 0,
        on_complete: Callable[[JsonObject], None] | None = None,
    ) -> None:
        super().__init__()
        self.tools = tools or ResponsesTools()
        self._created_at = created_at
        self._on_complete = on_complete
        self._sequence = 0
        self._response: JsonObject = {}
        self._output: list[JsonObject] = []  # finished items
        self._open: JsonObject | None = None  # the streaming reasoning or message item
        self._open_text: list[str] = []
        self._visible = False
        self._status: tuple[str, str | None] = ("completed", None)

    # --- output --------------------------------------------------------------------------

    def _send(self, kind: str, data: JsonObject) -> None:
        payload = {"type": kind, "sequence_number": self._sequence, **data}
        self._sequence += 1
        self._out.append(encode_event(kind, dumps(payload)))

    def on_first(self, chunk: JsonObject) -> None:
        rid = f"resp_{chunk.get('id') or 'ccswitch'}"
        created = chunk.get("created")
        self._response = {
            "id": rid,
            "object": "response",
            "created_at": created if isinstance(created, int) else self._created_at,
            "status": "in_progress",
            "error": None,
            "incomplete_details": None,
            "model": chunk.get("model", ""),
            "output": [],
        }
        self._send("response.created", {"response": self._response})
        self._send("response.in_progress", {"response": self._response})

    def on_reasoning(self, text: str) -> None:
        if self._visible:
            return  # late reasoning would split the answer
        if self._open is None:
            item = {"id": f"rs_{self._response['id']}", "type": "reasoning", "summary": []}
            self._open_item(item)
            self._send(
                "response.reasoning_summary_part.added",
                {**self._where(), "summary_index": 0, "part": {"type": "summary_text", "text": ""}},
            )
        self._open_text.append(text)
        self._send(
            "response.reasoning_summary_text.delta",
            {**self._where(), "summary_index": 0, "delta": text},
        )

    def on_text(self, text: str) -> None:
        self._visible = True
        if self._open is not None and self._open["type"] != "message":
            self._close_item()
        if self._open is None:
            item = {
                "id": f"msg_{self._response['id']}_{len(self._output)}",
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            self._open_item(item)
            self._send(
                "response.content_part.added",
                {
                    **self._where(),
                    "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []},
                },
            )
        self._open_text.append(text)
        self._send(
            "response.output_text.delta", {**self._where(), "content_index": 0, "delta": text}
        )

    def on_finish(self, reason: Any) -> None:
        self._close_item()
        calls = self.whole_calls(self._response["id"])
        if calls is None:
            return
        for call_id, name, arguments in calls:
            try:
                item = self.tools.call_item(call_id, name, arguments, f"fc_{call_id}")
            except BadAnswer as e:
                self.fail(str(e))
                return
            self._tool_item(item)
        self._status = finish_status(reason)
        self.state = State.FINISHING

    def on_complete(self) -> None:
        status, reason = self._status
        response = {
            **self._response,
            "status": status,
            "incomplete_details": {"reason": reason} if reason else None,
            "output": self._output,
            "usage": self._usage.responses(),
        }
        kind = "response.completed" if status == "completed" else "response.incomplete"
        self._send(kind, {"response": response})
        if self._on_complete is not None:
            self._on_complete(response)

    def on_failed(self, why: str) -> None:
        error = {"code": "server_error", "message": f"ccswitch: {why}"}
        response = {**self._response, "status": "failed", "error": error, "output": self._output}
        self._send("response.failed", {"response": response})

    # --- items ------------------------------------------------------------------------

    def _where(self) -> JsonObject:
        assert self._open is not None
        return {"item_id": self._open["id"], "output_index": len(self._output)}

    def _open_item(self, item: JsonObject) -> None:
        self._open = item
        self._open_text = []
        self._send("response.output_item.added", {"output_index": len(self._output), "item": item})

    def _close_item(self) -> None:
        item, text = self._open, "".join(self._open_text)
        if item is None:
            return
        where = self._where()
        part: JsonObject
        if item["type"] == "reasoning":
            part = {"type": "summary_text", "text": text}
            self._send(
                "response.reasoning_summary_text.done", {**where, "summary_index": 0, "text": text}
            )
            self._send(
                "response.reasoning_summary_part.done", {**where, "summary_index": 0, "part": part}
            )
            done = {**item, "summary": [part]}
        else:
            part = {"type": "output_text", "text": text, "annotations": []}
            self._send("response.output_text.done", {**where, "content_index": 0, "text": text})
            self._send("response.content_part.done", {**where, "content_index": 0, "part": part})
            done = {**item, "status": "completed", "content": [part]}
        self._send(
            "response.output_item.done", {"output_index": where["output_index"], "item": done}
        )
        self._output.append(done)
        self._open = None

    def _tool_item(self, item: JsonObject) -> None:
        index = len(self._output)
        custom = item["type"] == "custom_tool_call"
        value = item["input"] if custom else item["arguments"]
        key = "input" if custom else "arguments"
        prefix = "response.custom_tool_call_input" if custom else "response.function_call_arguments"
        where = {"item_id": item["id"], "output_index": index}
        self._send(
            "response.output_item.added",
            {"output_index": index, "item": {**item, "status": "in_progress", key: ""}},
        )
        self._send(f"{prefix}.delta", {**where, "delta": value})
        self._send(f"{prefix}.done", {**where, key: value})
        self._send("response.output_item.done", {"output_index": index, "item": item})
        self._output.append(item)
