"""Pairs that go through the Chat form of a turn: tool format ↔ Chat ↔ provider format.

Chat Completions is the small internal model of a turn: messages, tool calls and results with
their ids, reasoning, usage, a finish reason. Each tool side (``AnthropicToChat``,
``ResponsesToChat``, ``GeminiToChat``) already turns its requests into it and its answers and
streams back; each provider side here turns the Chat request into the provider's and reads
the provider's answer (``answer_to_chat``) or stream (a ``…Chunks`` reader: event in, Chat
chunks out) back into it; ``translator.Pivot`` puts the two sides together. So five pairs
are two tables, and each stream stays one readable state machine per side. Signed
Anthropic thinking never crosses (the pairs that reach Anthropic are not Anthropic tools);
Gemini's thought signatures are kept in ``chat_gemini``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ccswitch_addon.wire.translate import chat_anthropic, chat_gemini, chat_responses
from ccswitch_addon.wire.translate.chat_stream import ChatStreamTranslator
from ccswitch_addon.wire.translate.common import SHAPE_ERRORS, JsonObject
from ccswitch_addon.wire.translate.formats import Format
from ccswitch_addon.wire.translate.sse import SseEvent, SseParser

__all__ = ["PROVIDER_SIDES", "ChunkReader", "PivotStream", "ProviderSide", "thinking_effort"]


class ChunkReader(Protocol):
    def chunks(self, event: SseEvent) -> list[JsonObject | str]: ...


@dataclass(frozen=True, slots=True)
class ProviderSide:
    format: Format
    request: Callable[[JsonObject], JsonObject]  # the Chat request → the provider's body
    path: Callable[[JsonObject], str]  # the provider's path for the Chat request
    answer: Callable[[JsonObject], JsonObject]  # the provider's JSON answer → Chat's
    reader: Callable[[], ChunkReader]  # a fresh reader of the provider's stream
    headers: tuple[tuple[bytes, bytes], ...] = ()  # what the provider's API requires


def _budget_effort(budget: Any) -> str:
    """cc-switch's table: a thinking budget under 4k is low, under 16k medium, else high."""
    if not isinstance(budget, int) or isinstance(budget, bool):
        return "medium"
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def thinking_effort(tool: Format, body: JsonObject) -> str | None:
    """How hard the tool asked the model to think (low, medium, high), if it asked at all.

    Claude Code says it with ``thinking`` (a budget, or adaptive) and ``output_config.effort``;
    Gemini CLI with ``thinkingConfig``; Codex's ``reasoning.effort`` is in the Chat form already.
    """
    if tool is Format.ANTHROPIC:
        thinking = body.get("thinking")
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
            return None
        effort = (body.get("output_config") or {}).get("effort")
        if effort in ("low", "medium", "high"):
            return str(effort)
        if effort == "max" or thinking.get("type") == "adaptive":
            return "high"
        return _budget_effort(thinking.get("budget_tokens"))
    if tool is Format.GEMINI:
        config = (body.get("generationConfig") or {}).get("thinkingConfig")
        if not isinstance(config, dict) or config.get("thinkingBudget") == 0:
            return None
        level = str(config.get("thinkingLevel", "")).lower()
        if level in ("low", "medium", "high"):
            return level
        return _budget_effort(config.get("thinkingBudget")) if config else None
    return None


PROVIDER_SIDES: dict[Format, ProviderSide] = {
    Format.OPENAI_RESPONSES: ProviderSide(
        Format.OPENAI_RESPONSES,
        chat_responses.request_from_chat,
        lambda chat: "/v1/responses",
        chat_responses.answer_to_chat,
        chat_responses.ResponsesChunks,
    ),
    Format.ANTHROPIC: ProviderSide(
        Format.ANTHROPIC,
        chat_anthropic.request_from_chat,
        lambda chat: "/v1/messages",
        chat_anthropic.answer_to_chat,
        chat_anthropic.AnthropicChunks,
        ((b"anthropic-version", b"2023-06-01"),),
    ),
    Format.GEMINI: ProviderSide(
        Format.GEMINI,
        chat_gemini.request_from_chat,
        lambda chat: chat_gemini.provider_path(chat.get("model"), bool(chat.get("stream"))),
        chat_gemini.answer_to_chat,
        chat_gemini.GeminiChunks,
    ),
}


class PivotStream:
    """The provider's stream read into Chat chunks, and those through the tool side's machine."""

    def __init__(self, reader: ChunkReader, machine: ChatStreamTranslator) -> None:
        self._parser = SseParser()
        self._reader = reader
        self.machine = machine

    @property
    def finished(self) -> bool:
        return self.machine.finished

    @property
    def failure(self) -> str | None:
        return self.machine.failure

    def feed(self, chunk: bytes) -> bytes:
        self._events(self._parser.feed(chunk))
        return self.machine.feed(b"")

    def close(self) -> bytes:
        self._events(self._parser.close())
        return self.machine.close()

    def _events(self, events: list[SseEvent]) -> None:
        for event in events:
            try:
                chunks = self._reader.chunks(event)
            except SHAPE_ERRORS as e:
                self.machine.fail(f"the provider sent a malformed event ({type(e).__name__})")
                return
            for chunk in chunks:
                self.machine.take(chunk)
