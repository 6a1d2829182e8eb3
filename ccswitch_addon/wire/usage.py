"""Watch a response body as it passes: token usage, error events inside a 200, a clean end.

The watcher sees every chunk of a streamed response and hands it on unchanged; it parses
JSON only for the few SSE events that carry usage, an error or the end marker.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ccswitch_addon.wire.api import Api

__all__ = ["BodyWatch", "StreamResult", "Usage"]

_JSON_LIMIT = 4 * 1024 * 1024  # a JSON body larger than this is passed on but not inspected
_LINE_LIMIT = 4 * 1024 * 1024  # an SSE line longer than this is passed on but not read
# A data line worth parsing: one search in C instead of a generator over the names
_INTERESTING = re.compile(rb'"(?:usage|usageMetadata|error|finishReason)"')
_ERROR_EVENTS = {"error", "response.failed"}
_END_EVENTS = {"message_stop", "response.completed", "response.incomplete"}
_CONTENT_EVENTS = {
    "content_block_delta",
    "response.output_text.delta",
    "response.function_call_arguments.delta",
    "response.refusal.delta",
    "response.reasoning_text.delta",
    "response.reasoning_summary_text.delta",
}
# In a data line with ': ' already made ':'. An empty string or list is no content.
_CONTENT_MARKERS = (
    b'"parts":[{',  # Gemini
    b'"tool_calls":[{',  # OpenAI Chat
    b'"type":"function_call"',  # Responses output item
    b'"type":"tool_use"',  # Anthropic content_block_start of a tool call
    b'"type":"reasoning"',  # Responses reasoning item
)
_TEXT_FIELDS = (b'"content":"', b'"reasoning_content":"', b'"reasoning":"')


@dataclass(slots=True)
class Usage:
    input_tokens: int | None = None  # as the provider counts it (see input_includes_cache)
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    # OpenAI and Gemini count cached tokens inside the prompt's total; Anthropic apart
    input_includes_cache: bool = False

    def uncached_input(self) -> int:
        """Input tokens billed at the full input price."""
        total = self.input_tokens or 0
        if self.input_includes_cache:
            total -= (self.cache_read_tokens or 0) + (self.cache_write_tokens or 0)
        return max(0, total)


@dataclass(frozen=True)
class StreamResult:
    usage: Usage
    error: str | None  # an error the provider reported inside a successful response
    ended: bool  # the end marker arrived (always true for a complete JSON body)
    sse: bool
    content: bool  # any output (text or tool call) was seen

    def problem(self) -> str | None:
        """Why a 2xx answer still failed the provider, if it did."""
        return _problem(self.error, self.sse, self.ended, self.usage, self.content)


def _problem(error: str | None, sse: bool, ended: bool, usage: Usage, content: bool) -> str | None:
    if error:
        return error
    if sse and not ended:
        return "stream ended before its end marker"
    if ended and usage.output_tokens == 0 and not content:
        return "empty completion"
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_text(document: dict[str, Any]) -> str:
    error = document.get("error")
    if isinstance(error, dict):
        kind = error.get("type") or error.get("status") or error.get("code") or "error"
        message = error.get("message") or ""
        return f"{kind}: {message}"[:200] if message else str(kind)
    return "error"


_FIELDS = (b"event:", b"data:", b"id:", b"retry:", b":")


class BodyWatch:
    """Callable for ``flow.response.stream``: returns each chunk as it came."""

    def __init__(self, api: Api, content_type: str) -> None:
        self.api = api
        self.sse = "text/event-stream" in content_type.lower()
        self.usage = Usage()
        self.error: str | None = None
        self.ended = False
        self.content = False
        self.fields = 0  # SSE field lines read (event:, data:, id:, retry:, a comment)
        self._carry = b""
        self._long = False  # inside a line longer than _LINE_LIMIT
        self._event = ""
        self._json = bytearray()
        self._too_big = False

    def __call__(self, chunk: bytes) -> bytes:
        if not chunk:
            if not self.sse:
                self._finish_json()
            elif self._carry:
                self._line(self._carry)
                self._carry = b""
            return chunk
        if self.sse:
            lines = chunk.split(b"\n")
            if self._long:  # the rest of a line past the limit: not read
                if len(lines) == 1:
                    return chunk
                self._long = False
                del lines[0]
            else:
                lines[0] = self._carry + lines[0]
            self._carry = lines.pop()
            if len(self._carry) > _LINE_LIMIT:  # a line without end (NULs): bounded, skipped
                self._carry, self._long = b"", True
            for line in lines:
                self._line(line)
        elif not self._too_big:
            self._json += chunk
            if len(self._json) > _JSON_LIMIT:
                self._too_big = True
                self._json.clear()
        return chunk

    def result(self) -> StreamResult:
        return StreamResult(self.usage, self.error, self.ended, self.sse, self.content)

    def problem(self) -> str | None:
        """Why a 2xx answer still failed the provider, if it did (as ``result().problem()``)."""
        return _problem(self.error, self.sse, self.ended, self.usage, self.content)

    def complete(self, body: bytes) -> None:
        """The whole body at once: a buffered answer."""
        if self.sse:
            self(body)
            self(b"")
        elif body and len(body) <= _JSON_LIMIT:
            self._document_of_json(body)

    # --- SSE ---------------------------------------------------------------------------

    def _line(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if line.startswith(_FIELDS):
            self.fields += 1
        if line.startswith(b"event:"):
            self._event = line[6:].strip().decode("utf-8", "replace")
            if self._event in _ERROR_EVENTS and self.error is None:
                self.error = self._event
            if self._event in _END_EVENTS:
                self.ended = True
            elif self._event in _CONTENT_EVENTS:
                self.content = True
        elif line.startswith(b"data:"):
            data = line[5:].strip()
            if data == b"[DONE]":
                self.ended = True
                return
            if not self.content and _content_in(data):
                self.content = True
            if (
                self._event in _END_EVENTS
                or self._event in _ERROR_EVENTS
                or self._event in ("message_start", "message_delta")
                or _INTERESTING.search(data) is not None
            ):
                self._document(data)
        elif not line:
            self._event = ""

    def _document(self, data: bytes) -> None:
        try:
            document = json.loads(data)
        except (ValueError, RecursionError):  # a provider's JSON nested past the limit too
            return
        if isinstance(document, dict):
            self._read(document)

    # --- JSON ------------------------------------------------------------------------------

    def _finish_json(self) -> None:
        if self._too_big or not self._json:
            return
        body = bytes(self._json)
        self._json.clear()
        self._document_of_json(body)

    def _document_of_json(self, body: bytes) -> None:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return
        if isinstance(document, dict):
            self.ended = True
            self._read(document)

    def _read(self, document: dict[str, Any]) -> None:
        """Usage, errors and end markers from one JSON object of any of the three APIs."""
        kind = document.get("type")
        # An error event's name came first; its data says what went wrong.
        vague = self.error is None or self.error in _ERROR_EVENTS
        if document.get("error") and kind != "response.completed" and vague:
            self.error = _error_text(document)
        response = document.get("response")
        if isinstance(response, dict):  # Responses API events wrap the response object
            if kind == "response.failed" and self.error is None:
                self.error = "response.failed"
            if kind == "response.incomplete" and response.get("error") and self.error is None:
                self.error = "response.incomplete"
            document = response
        if kind == "message_start" and isinstance(document.get("message"), dict):
            document = document["message"]
        usage = document.get("usage")
        if isinstance(usage, dict):
            self._tokens(
                usage.get("input_tokens", usage.get("prompt_tokens")),
                usage.get("output_tokens", usage.get("completion_tokens")),
            )
            self._cache(usage)
        metadata = document.get("usageMetadata")
        if isinstance(metadata, dict):
            self._tokens(metadata.get("promptTokenCount"), metadata.get("candidatesTokenCount"))
            if _int(metadata.get("cachedContentTokenCount")) is not None:
                self.usage.cache_read_tokens = metadata["cachedContentTokenCount"]
                self.usage.input_includes_cache = True
        if kind == "message_stop":
            self.ended = True
        if not self.content and _has_content(document):
            self.content = True
        candidates = document.get("candidates")
        if isinstance(candidates, list) and any(
            isinstance(c, dict) and c.get("finishReason") for c in candidates
        ):
            self.ended = True

    def _cache(self, usage: dict[str, Any]) -> None:
        """Cache reads and writes: Anthropic's own fields, or OpenAI's cached_tokens detail."""
        read = _int(usage.get("cache_read_input_tokens"))
        write = _int(usage.get("cache_creation_input_tokens"))
        if read is not None or write is not None:
            if read is not None:
                self.usage.cache_read_tokens = read
            if write is not None:
                self.usage.cache_write_tokens = write
            return
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
        if isinstance(details, dict) and _int(details.get("cached_tokens")) is not None:
            self.usage.cache_read_tokens = details["cached_tokens"]
            self.usage.input_includes_cache = True

    def _tokens(self, input_tokens: Any, output_tokens: Any) -> None:
        if _int(input_tokens) is not None:
            self.usage.input_tokens = input_tokens
        if _int(output_tokens) is not None:
            self.usage.output_tokens = output_tokens


def _content_in(data: bytes) -> bool:
    """Output in one SSE data line: text, reasoning or a tool call, not just an empty field."""
    compact = data.replace(b'": "', b'":"').replace(b'": [', b'":[').replace(b'":[ {', b'":[{')
    if any(marker in compact for marker in _CONTENT_MARKERS):
        return True
    for field in _TEXT_FIELDS:
        start = compact.find(field)
        while start != -1:
            after = start + len(field)
            if compact[after : after + 1] not in (b'"', b""):
                return True
            start = compact.find(field, after)
    return False


def _has_content(document: dict[str, Any]) -> bool:
    """Output in a complete JSON answer of any of the three APIs."""
    if document.get("content"):  # Anthropic message
        return True
    if document.get("output"):  # Responses API
        return True
    for choice in document.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and (message.get("content") or message.get("tool_calls")):
            return True
    for candidate in document.get("candidates") or ():
        content = candidate.get("content") if isinstance(candidate, dict) else None
        if isinstance(content, dict) and content.get("parts"):
            return True
    return False
