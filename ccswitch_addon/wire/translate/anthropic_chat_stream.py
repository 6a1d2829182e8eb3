"""A Chat Completions stream as the Anthropic Messages stream Claude Code reads.

The grammar sent: one ``message_start``, then blocks (``content_block_start``, deltas,
``content_block_stop``; never a delta before a block's start or after its stop), then one
``message_delta`` with the stop reason and usage, then ``message_stop``. A stream that
fails (an error chunk, or the end without a ``finish_reason``) ends with an ``error`` event
instead, never with fake success terminals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ccswitch_addon.wire.translate.anthropic_chat import stop_reason
from ccswitch_addon.wire.translate.chat_stream import ChatStreamTranslator, State, ToolCall
from ccswitch_addon.wire.translate.common import JsonObject, ToolNames, close_open, dumps
from ccswitch_addon.wire.translate.sse import encode_event

__all__ = ["ChatToAnthropicStream"]


@dataclass(slots=True)
class _Tool(ToolCall):
    held: list[str] = field(default_factory=list)  # arguments seen before the block started
    block: int | None = None  # the Anthropic block index, once started
    open: bool = False


class ChatToAnthropicStream(ChatStreamTranslator):
    """``feed(bytes) -> bytes`` for each read, ``close() -> bytes`` at the end of the stream."""

    def __init__(self, names: ToolNames | None = None) -> None:
        super().__init__()
        self.names = names or ToolNames()
        self._next_block = 0
        self._open: tuple[str, int] | None = None  # the open thinking or text block
        self._visible = False  # visible output began: later reasoning is dropped
        self._tools: dict[int, _Tool] = {}
        self._finish: Any = None
        self._message_id = "msg_ccswitch"

    # --- output --------------------------------------------------------------------------

    def _send(self, kind: str, data: JsonObject) -> None:
        self._out.append(encode_event(kind, dumps({"type": kind, **data})))

    def on_first(self, chunk: JsonObject) -> None:
        self._message_id = f"msg_{chunk.get('id') or 'ccswitch'}"
        usage = self._usage.anthropic()
        usage["output_tokens"] = 0
        message = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model", ""),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        self._send("message_start", {"message": message})

    def on_reasoning(self, text: str) -> None:
        if self._visible:
            return  # late reasoning would split the text into fragments
        self._block("thinking")
        self._delta({"type": "thinking_delta", "thinking": text})

    def on_text(self, text: str) -> None:
        self._visible = True
        self._block("text")
        self._delta({"type": "text_delta", "text": text})

    def on_tool_call(self, call: JsonObject, slot: int) -> None:
        tool = self._tools.setdefault(slot, _Tool())
        piece = tool.take(call)
        if piece:
            if tool.open:
                self._tool_delta(tool, piece)
            else:
                tool.held.append(piece)
        if tool.block is None and tool.id and tool.name:
            self._start_tool(tool)

    def on_finish(self, reason: Any) -> None:
        """The first finish_reason wins; message_delta waits for usage and the end."""
        for position, tool in sorted(self._tools.items()):
            if tool.block is None and tool.name:
                tool.id = tool.id or f"toolu_{self._message_id}_{position}"
                self._start_tool(tool)
        self._close_open()
        if self._tools and not any(tool.block is not None for tool in self._tools.values()):
            self.fail("every tool call came without a name")
            return
        for tool in sorted(self._tools.values(), key=lambda t: t.block or 0):
            if tool.open and not self._complete_arguments(tool):
                self.fail(f"the provider's arguments for tool {tool.name!r} are not a JSON object")
                return
            if tool.open:
                self._send("content_block_stop", {"index": tool.block})
                tool.open = False
        started = any(tool.block is not None for tool in self._tools.values())
        self._finish = stop_reason(reason, started)
        self.state = State.FINISHING

    def on_complete(self) -> None:
        self._send(
            "message_delta",
            {
                "delta": {"stop_reason": self._finish, "stop_sequence": None},
                "usage": self._usage.anthropic(),
            },
        )
        self._send("message_stop", {})

    def on_failed(self, why: str) -> None:
        self._send("error", {"error": {"type": "api_error", "message": f"ccswitch: {why}"}})

    # --- blocks -----------------------------------------------------------------------

    def _block(self, kind: str) -> None:
        if self._open is not None and self._open[0] == kind:
            return
        self._close_open()
        start: JsonObject = (
            {"type": "text", "text": ""}
            if kind == "text"
            else {"type": "thinking", "thinking": "", "signature": ""}
        )
        self._send("content_block_start", {"index": self._next_block, "content_block": start})
        self._open = (kind, self._next_block)
        self._next_block += 1

    def _delta(self, delta: JsonObject) -> None:
        assert self._open is not None
        self._send("content_block_delta", {"index": self._open[1], "delta": delta})

    def _close_open(self) -> None:
        if self._open is None:
            return
        self._send("content_block_stop", {"index": self._open[1]})
        self._open = None

    def _start_tool(self, tool: _Tool) -> None:
        self._close_open()
        self._visible = True
        tool.block = self._next_block
        self._next_block += 1
        tool.open = True
        block = {
            "type": "tool_use",
            "id": tool.id,
            "name": self.names.restore(tool.name),
            "input": {},
        }
        self._send("content_block_start", {"index": tool.block, "content_block": block})
        if tool.held:
            self._tool_delta(tool, "".join(tool.held))
            tool.held = []

    def _complete_arguments(self, tool: _Tool) -> bool:
        """Arguments cut off before their end (``{"file_path": "/a"`` then the finish) get the
        missing closers as one more delta; False when no suffix can make them an object."""
        text = "".join(tool.arguments)  # all sent by now: a block starts with what was held
        if not text.strip():
            return True  # no arguments: an empty input
        for candidate in (text, close_open(text)):
            try:
                valid = isinstance(json.loads(candidate), dict)
            except ValueError:
                continue
            if valid and candidate != text:
                self._tool_delta(tool, candidate[len(text) :])
            return valid
        return False

    def _tool_delta(self, tool: _Tool, fragment: str) -> None:
        self._send(
            "content_block_delta",
            {"index": tool.block, "delta": {"type": "input_json_delta", "partial_json": fragment}},
        )
