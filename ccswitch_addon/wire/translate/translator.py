"""The one entry point per attempt: ``translator_for(tool, provider)`` and what it returns."""

from __future__ import annotations

import abc
import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from ccswitch_addon.wire.translate import anthropic_chat, gemini_chat, responses_chat
from ccswitch_addon.wire.translate.anthropic_chat_stream import ChatToAnthropicStream
from ccswitch_addon.wire.translate.collect import collect
from ccswitch_addon.wire.translate.common import (
    BadAnswer,
    JsonObject,
    ToolNames,
    TranslationError,
    UntranslatableRequest,
    dumps,
    loads_object,
    shape_errors,
)
from ccswitch_addon.wire.translate.count_tokens import estimate_tokens
from ccswitch_addon.wire.translate.formats import (
    FORMAT_API,
    PROVIDER_PATHS,
    SUPPORTED_PAIRS,
    Format,
)
from ccswitch_addon.wire.translate.gemini_chat_stream import ChatToGeminiStream
from ccswitch_addon.wire.translate.memory import ConversationMemory
from ccswitch_addon.wire.translate.pivot import (
    PROVIDER_SIDES,
    PivotStream,
    ProviderSide,
    thinking_effort,
)
from ccswitch_addon.wire.translate.responses_chat_stream import ChatToResponsesStream

__all__ = [
    "AnthropicToChat",
    "GeminiToChat",
    "Pivot",
    "ResponsesToChat",
    "StreamTranslator",
    "Translator",
    "UnsupportedPair",
    "translator_for",
]


class UnsupportedPair(ValueError):
    """No translator between these formats."""


class StreamTranslator(Protocol):
    def feed(self, chunk: bytes) -> bytes: ...
    def close(self) -> bytes: ...
    @property
    def finished(self) -> bool: ...  # the stream ended properly (its end marker was sent)
    @property
    def failure(self) -> str | None: ...  # why it failed, e.g. "…without a finish_reason"


def _route(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/")


def _json_answer(body: bytes) -> JsonObject:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadAnswer("the provider's answer is not JSON") from None
    if not isinstance(value, dict):
        raise BadAnswer("the provider's answer is not a JSON object")
    return value


class Translator(abc.ABC):
    """One attempt's translation. Make a new one per attempt: it remembers the request's
    tool names (to restore them in the answer) between ``request`` and ``answer``/``stream``."""

    tool: Format
    provider: Format
    headers: tuple[tuple[bytes, bytes], ...] = ()  # what the provider's API requires besides
    # The tool's token-count endpoint (path suffix, answer field): no provider of another
    # format can count for it, so ``local`` answers it with an estimate.
    count_tokens: tuple[str, str] | None = None

    def local(self, path: str, body: bytes) -> tuple[int, bytes] | None:
        """An answer given without contacting the provider (status, JSON body), or None."""
        if self.count_tokens is None:
            return None
        suffix, field = self.count_tokens
        if not _route(path).endswith(suffix):
            return None
        try:
            document = loads_object(body, "the request")
        except UntranslatableRequest as e:
            return self.reject(e)
        return 200, dumps({field: estimate_tokens(document)}).encode()

    @abc.abstractmethod
    def request(self, path: str, body: bytes) -> tuple[str, bytes]:
        """The provider's path and body; raises UntranslatableRequest (see ``reject``)."""

    @abc.abstractmethod
    def answer(self, status: int, content_type: str, body: bytes) -> bytes:
        """A whole answer (success or error) as the tool's JSON; an event stream given whole
        (to a request that asked for no stream) is read as one answer. Raises BadAnswer when a
        success cannot be made valid."""

    @abc.abstractmethod
    def stream(self) -> StreamTranslator:
        """A fresh state machine for a streamed success (``text/event-stream``)."""

    @abc.abstractmethod
    def reject(self, error: TranslationError) -> tuple[int, bytes]:
        """The tool's own 400 error body for a request that cannot be translated."""

    def _document(self, content_type: str, body: bytes) -> JsonObject:
        """A JSON answer, or a stream sent to a request that asked for none, read whole."""
        if "text/event-stream" in content_type.lower():
            return collect(self.provider, body)
        return _json_answer(body)


class AnthropicToChat(Translator):
    """Claude Code's Messages requests to a Chat Completions provider."""

    tool = Format.ANTHROPIC
    provider = Format.OPENAI_CHAT
    count_tokens = ("/count_tokens", "input_tokens")

    def __init__(self, *, replay_reasoning: bool = False) -> None:
        self.names = ToolNames()
        self.replay_reasoning = replay_reasoning

    def request(self, path: str, body: bytes) -> tuple[str, bytes]:
        if _route(path).endswith("/count_tokens"):
            raise UntranslatableRequest("count_tokens is answered locally (see local())")
        document = loads_object(body, "the request")
        with shape_errors(UntranslatableRequest, "the request"):
            chat = anthropic_chat.request_to_chat(
                document, self.names, replay_reasoning=self.replay_reasoning
            )
        return PROVIDER_PATHS[self.provider], dumps(chat).encode()

    def answer(self, status: int, content_type: str, body: bytes) -> bytes:
        if status >= 400:
            return dumps(anthropic_chat.error_to_anthropic(status, body)).encode()
        document = self._document(content_type, body)
        if document.get("error") and not document.get("choices"):
            return dumps(anthropic_chat.error_to_anthropic(502, body)).encode()
        with shape_errors(BadAnswer, "the provider's answer"):
            return dumps(anthropic_chat.answer_to_anthropic(document, self.names)).encode()

    def stream(self) -> ChatToAnthropicStream:
        return ChatToAnthropicStream(self.names)

    def reject(self, error: TranslationError) -> tuple[int, bytes]:
        message = f"ccswitch: cannot translate this request for the provider: {error}"
        body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
        return 400, dumps(body).encode()


class ResponsesToChat(Translator):
    """Codex CLI's Responses requests to a Chat Completions provider.

    With a ``ConversationMemory``, each completed answer is remembered (unless the request
    said ``store: false``) so a later ``previous_response_id`` can be expanded.
    """

    tool = Format.OPENAI_RESPONSES
    provider = Format.OPENAI_CHAT

    def __init__(
        self,
        memory: ConversationMemory | None = None,
        *,
        replay_reasoning: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.memory = memory
        self.tools = responses_chat.ResponsesTools()
        self.replay_reasoning = replay_reasoning
        self.clock = clock
        self._previous: str | None = None
        self._input: list[Any] = []
        self._store = False

    def request(self, path: str, body: bytes) -> tuple[str, bytes]:
        document = loads_object(body, "the request")
        history: list[Any] | None = None
        previous = document.get("previous_response_id")
        if previous:
            history = self.memory.history(str(previous)) if self.memory is not None else None
            if history is None:
                raise UntranslatableRequest(
                    f"previous response {previous!r} is not remembered; "
                    "send the whole conversation",
                    code="previous_response_not_found",
                )
        with shape_errors(UntranslatableRequest, "the request"):
            chat = responses_chat.request_to_chat(
                document, self.tools, history, replay_reasoning=self.replay_reasoning
            )
        self._previous = str(previous) if previous else None
        self._input = responses_chat.input_items(document)
        self._store = self.memory is not None and document.get("store") is not False
        return PROVIDER_PATHS[self.provider], dumps(chat).encode()

    def answer(self, status: int, content_type: str, body: bytes) -> bytes:
        if status >= 400:
            return dumps(responses_chat.error_to_responses(status, body)).encode()
        document = self._document(content_type, body)
        if document.get("error") and not document.get("choices"):
            return dumps(responses_chat.error_to_responses(502, body)).encode()
        created = document.get("created")
        with shape_errors(BadAnswer, "the provider's answer"):
            response = responses_chat.answer_to_responses(
                document,
                self.tools,
                f"resp_{document.get('id') or 'ccswitch'}",
                created if isinstance(created, int) else int(self.clock()),
            )
        self._remember(response)
        return dumps(response).encode()

    def stream(self) -> ChatToResponsesStream:
        return ChatToResponsesStream(
            self.tools, created_at=int(self.clock()), on_complete=self._remember
        )

    def reject(self, error: TranslationError) -> tuple[int, bytes]:
        code = error.code if isinstance(error, UntranslatableRequest) else "invalid_request"
        message = f"ccswitch: cannot translate this request for the provider: {error}"
        body = {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "code": code,
                "param": None,
            }
        }
        return 400, dumps(body).encode()

    def _remember(self, response: JsonObject) -> None:
        if self._store and self.memory is not None:
            self.memory.remember(
                response["id"], self._previous, [*self._input, *response["output"]]
            )


class GeminiToChat(Translator):
    """Gemini CLI's generateContent requests to a Chat Completions provider."""

    tool = Format.GEMINI
    provider = Format.OPENAI_CHAT
    count_tokens = (":countTokens", "totalTokens")

    def __init__(self) -> None:
        self.json_mode = False  # the request asked for JSON (Gemini CLI's routing classifier)

    def request(self, path: str, body: bytes) -> tuple[str, bytes]:
        document = loads_object(body, "the request")
        with shape_errors(UntranslatableRequest, "the request"):
            chat = gemini_chat.request_to_chat(document, path)
        self.json_mode = "response_format" in chat
        return PROVIDER_PATHS[self.provider], dumps(chat).encode()

    def answer(self, status: int, content_type: str, body: bytes) -> bytes:
        if status >= 400:
            return dumps(gemini_chat.error_to_gemini(status, body)).encode()
        document = self._document(content_type, body)
        if document.get("error") and not document.get("choices"):
            return dumps(gemini_chat.error_to_gemini(502, body)).encode()
        with shape_errors(BadAnswer, "the provider's answer"):
            answer = gemini_chat.answer_to_gemini(document, json_mode=self.json_mode)
        return dumps(answer).encode()

    def stream(self) -> ChatToGeminiStream:
        return ChatToGeminiStream()

    def reject(self, error: TranslationError) -> tuple[int, bytes]:
        message = f"ccswitch: cannot translate this request for the provider: {error}"
        body = {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
        return 400, dumps(body).encode()


ChatSide = AnthropicToChat | ResponsesToChat | GeminiToChat


class Pivot(Translator):
    """A pair through the Chat form: the tool's side to Chat, Chat to the provider's side."""

    def __init__(self, tool_side: ChatSide, side: ProviderSide) -> None:
        self.tool_side = tool_side
        self.side = side
        self.tool = tool_side.tool
        self.provider = side.format
        self.headers = side.headers

    def local(self, path: str, body: bytes) -> tuple[int, bytes] | None:
        return self.tool_side.local(path, body)

    def request(self, path: str, body: bytes) -> tuple[str, bytes]:
        _, chat_body = self.tool_side.request(path, body)
        chat = json.loads(chat_body)
        with shape_errors(UntranslatableRequest, "the request"):
            effort = thinking_effort(self.tool, json.loads(body))
            if effort is not None:
                chat.setdefault("reasoning_effort", effort)
            return self.side.path(chat), dumps(self.side.request(chat)).encode()

    def answer(self, status: int, content_type: str, body: bytes) -> bytes:
        if status >= 400:
            return self.tool_side.answer(status, "application/json", body)
        document = self._document(content_type, body)
        if document.get("error") or document.get("type") == "error":
            # an error in a 200 (a gateway's, or an error event): the tool's error shape
            return self.tool_side.answer(200, "application/json", dumps(document).encode())
        with shape_errors(BadAnswer, "the provider's answer"):
            chat = self.side.answer(document)
        return self.tool_side.answer(200, "application/json", dumps(chat).encode())

    def stream(self) -> PivotStream:
        return PivotStream(self.side.reader(), self.tool_side.stream())

    def reject(self, error: TranslationError) -> tuple[int, bytes]:
        return self.tool_side.reject(error)


def translator_for(
    tool: Format,
    provider: Format,
    *,
    memory: ConversationMemory | None = None,
    replay_reasoning: bool = False,
    clock: Callable[[], float] = time.time,
) -> Translator | None:
    """The translator for one attempt, or None when the provider takes the tool's format.

    Two OpenAI formats without a translator between them pass through untranslated, as
    before translation existed (an OpenAI server answers every OpenAI endpoint); any other
    pair raises UnsupportedPair.
    """
    if tool is provider:
        return None
    if (tool, provider) not in SUPPORTED_PAIRS:
        if FORMAT_API[tool] is FORMAT_API[provider]:
            return None
        supported = ", ".join(f"{t.value} ← {p.value}" for t, p in sorted(SUPPORTED_PAIRS))
        raise UnsupportedPair(
            f"no translation from {tool.value} to {provider.value}; supported: {supported}"
        )
    tool_side: ChatSide
    if tool is Format.ANTHROPIC:
        tool_side = AnthropicToChat(replay_reasoning=replay_reasoning)
    elif tool is Format.OPENAI_RESPONSES:
        tool_side = ResponsesToChat(memory, replay_reasoning=replay_reasoning, clock=clock)
    else:
        tool_side = GeminiToChat()
    if provider is Format.OPENAI_CHAT:
        return tool_side
    return Pivot(tool_side, PROVIDER_SIDES[provider])
