"""What every translation of a Chat Completions stream shares: reading it.

Each ``data:`` line is a chunk; ``[DONE]`` or the end of the stream ends it; an ``error``
chunk or a malformed one fails it. The first chunk with a choice opens the answer, each
choice is read in order (ChatChoiceReader), and usage may come in any chunk, also after the
finish reason. A subclass says how the answer opens (``on_first``), what each part of a
choice becomes, how it closes (``on_complete``) and how it fails (``on_failed``). A tool
call's fragments gather in a ``ToolCall``; an API that takes calls only whole gets them at the
finish from ``WholeCallsStream``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field

from ccswitch_addon.wire.translate.common import (
    SHAPE_ERRORS,
    ChatChoiceReader,
    ChatUsage,
    JsonObject,
    ThinkSplitter,
    dumps,
    error_message,
)
from ccswitch_addon.wire.translate.sse import SseEvent, SseTranslator

__all__ = ["ChatStreamTranslator", "State", "ToolCall", "WholeCallsStream"]


class State(enum.Enum):
    START = "start"  # nothing sent yet
    STREAMING = "streaming"  # the answer's opening events sent, output flowing
    FINISHING = "finishing"  # finish_reason seen, output closed; waiting for usage and the end
    DONE = "done"  # the closing events sent
    FAILED = "failed"  # the API's own error event sent


@dataclass(slots=True)
class ToolCall:
    """One tool call gathered from its fragments: the first id and name win, the arguments
    come in pieces."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def take(self, fragment: JsonObject) -> str:
        """Keep the fragment's id and name where still unknown; its piece of the arguments."""
        if fragment.get("id") and not self.id:
            self.id = str(fragment["id"])
        function = fragment.get("function") or {}
        if function.get("name") and not self.name:
            self.name = str(function["name"])
        piece = function.get("arguments")
        if not isinstance(piece, str):
            return ""
        self.arguments.append(piece)
        return piece


class ChatStreamTranslator(SseTranslator, ChatChoiceReader):
    """A Chat Completions stream read for another API's stream."""

    def __init__(self) -> None:
        super().__init__()
        self.state = State.START
        self.failure: str | None = None  # why the stream failed, once it has
        self._think = ThinkSplitter()
        self._usage = ChatUsage()
        self._slots, self._slot_ids, self._slot_count = {}, {}, 0

    @property
    def finished(self) -> bool:
        """The stream ended properly: the client got the API's closing events."""
        return self.state is State.DONE

    def _event(self, event: SseEvent) -> None:
        data = event.data.strip()
        if data == "[DONE]":
            self.take(data)
            return
        if not data:
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            return  # a provider's non-JSON keep-alive
        if isinstance(chunk, dict):
            self.take(chunk)

    def take(self, chunk: JsonObject | str) -> None:
        """One parsed chunk, or the ``[DONE]`` marker (also what another format's stream
        amounts to: see ``pivot``)."""
        if self.state in (State.DONE, State.FAILED):
            return
        if isinstance(chunk, str):
            self.on_end()
            return
        if chunk.get("error"):  # "error": null is a placeholder some gateways send
            message, _ = error_message(dumps(chunk).encode())
            self.fail(f"the provider reported an error: {message}")
            return
        try:
            self.on_chunk(chunk)
        except SHAPE_ERRORS as e:
            self.fail(f"the provider sent a malformed chunk ({type(e).__name__})")

    def on_chunk(self, chunk: JsonObject) -> None:
        if chunk.get("usage"):
            self._usage = ChatUsage.of(chunk["usage"])
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return  # a usage-only chunk
        if self.state is State.START:
            self.on_first(chunk)
            self.state = State.STREAMING
        if self.state is not State.STREAMING:
            return  # after the first finish_reason only usage counts
        self.read_choice(choices[0])

    def on_end(self) -> None:
        if self.state is State.STREAMING:
            # the held text of an unfinished <think> is lost with the stream anyway
            self.fail("the stream ended without a finish_reason")
        elif self.state is State.START:
            self.fail("the stream ended before any answer")
        elif self.state is State.FINISHING:
            self.state = State.DONE
            self.on_complete()

    def fail(self, why: str) -> None:
        self.failure = why
        self.on_failed(why)
        self.state = State.FAILED

    # --- what a subclass says ---------------------------------------------------------------

    def on_first(self, chunk: JsonObject) -> None:
        """The first chunk with a choice: send the answer's opening events."""
        raise NotImplementedError

    def on_complete(self) -> None:
        """After the finish reason and the end: send the answer's closing events."""
        raise NotImplementedError

    def on_failed(self, why: str) -> None:
        """Send the API's own error event."""
        raise NotImplementedError


class WholeCallsStream(ChatStreamTranslator):
    """For an API that takes each tool call whole (Gemini, Responses): the fragments are
    gathered until the finish reason, then ``whole_calls`` hands them over."""

    def __init__(self) -> None:
        super().__init__()
        self._calls: dict[int, ToolCall] = {}

    def on_tool_call(self, call: JsonObject, slot: int) -> None:
        self._calls.setdefault(slot, ToolCall()).take(call)

    def whole_calls(self, made_up: str) -> list[tuple[str, str, str]] | None:
        """(id, name, arguments) of each named call in order, a missing id made up as
        ``call_{made_up}_{slot}``; None, with the stream failed, when every call came without
        a name (an answer without its calls would silently end the tool's agent loop)."""
        named = [(slot, call) for slot, call in sorted(self._calls.items()) if call.name]
        if self._calls and not named:
            self.fail("every tool call came without a name")
            return None
        return [
            (call.id or f"call_{made_up}_{slot}", call.name, "".join(call.arguments))
            for slot, call in named
        ]
