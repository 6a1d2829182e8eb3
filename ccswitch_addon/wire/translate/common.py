"""What both directions share: errors, tool names, argument repair, `<think>` splitting, usage."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SHAPE_ERRORS",
    "BadAnswer",
    "ChatChoiceReader",
    "ChatUsage",
    "ThinkSplitter",
    "ToolNames",
    "TranslationError",
    "UntranslatableRequest",
    "close_open",
    "dumps",
    "error_message",
    "loads_object",
    "parse_arguments",
    "shape_errors",
    "token_limit_field",
]

JsonObject = dict[str, Any]


class TranslationError(ValueError):
    """A body that cannot be translated; the message is one clear line for the user."""


class UntranslatableRequest(TranslationError):
    """The tool's request cannot be expressed in the provider's format (answer it with a 400)."""

    def __init__(self, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.code = code


class BadAnswer(TranslationError):
    """The provider's answer cannot be turned into a valid answer for the tool (a failure)."""


# What reading a JSON document of an unexpected shape raises (a list where a dict was due, …).
SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError)


@contextmanager
def shape_errors(error: type[TranslationError], what: str) -> Iterator[None]:
    """Turn a surprise in a document's shape into one clear TranslationError."""
    try:
        yield
    except SHAPE_ERRORS as e:
        raise error(f"{what} has an unexpected shape ({type(e).__name__}: {e})") from e


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads_object(body: bytes | str, what: str) -> JsonObject:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise UntranslatableRequest(f"{what} is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise UntranslatableRequest(f"{what} is not a JSON object")
    return value


# o-series and gpt-5 take max_completion_tokens and reject max_tokens.
_COMPLETION_TOKENS_MODELS = re.compile(r"^(?:[\w.-]+/)?(?:o\d|gpt-5)", re.IGNORECASE)


def token_limit_field(model: Any) -> str:
    if isinstance(model, str) and _COMPLETION_TOKENS_MODELS.match(model):
        return "max_completion_tokens"
    return "max_tokens"


# --- tool names ---------------------------------------------------------------------------

_NAME_LIMIT = 64
_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")


class ToolNames:
    """Names as Chat servers accept them (``^[A-Za-z0-9_-]{1,64}$``), and back.

    A name that is too long or holds other characters (namespaced MCP tools like
    ``mcp.server/tool``) is flattened and, when still too long, cut with a hash suffix; the
    answer's names are restored from the map built while translating the request.
    """

    def __init__(self) -> None:
        self._back: dict[str, str] = {}

    def short(self, name: str) -> str:
        flat = _NAME_BAD.sub("_", name) or "tool"
        if len(flat) > _NAME_LIMIT:
            digest = hashlib.sha1(name.encode()).hexdigest()[:8]
            flat = f"{flat[: _NAME_LIMIT - 9]}_{digest}"
        if flat != name:
            self._back[flat] = name
        return flat

    def restore(self, name: str) -> str:
        return self._back.get(name, name)


# --- tool-call arguments ------------------------------------------------------------------

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def close_open(text: str) -> str:
    """Close the strings, objects and lists a truncated JSON text left open."""
    stack: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]" and stack:
            stack.pop()
    return text + ('"' if in_string else "") + "".join(reversed(stack))


def parse_arguments(text: str | None, tool: str) -> JsonObject:
    """A tool call's arguments as an object: repaired where the damage is recognisable.

    Empty arguments are a call without parameters. Anything that stays unparseable raises
    BadAnswer: an empty ``{}`` in its place would run the tool with no input.
    """
    if text is None or not text.strip():
        return {}
    candidates = [text]
    fenced = _FENCE.match(text)
    if fenced:
        candidates.append(fenced.group(1))
    candidates += [_TRAILING_COMMA.sub(r"\1", c) for c in list(candidates)]
    candidates += [close_open(c) for c in list(candidates)]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise BadAnswer(f"the provider's arguments for tool {tool!r} are not a JSON object")


# --- <think> in content -----------------------------------------------------------------

_OPEN, _CLOSE = "<think>", "</think>"


class ThinkSplitter:
    """Separate a leading ``<think>…</think>`` in streamed content from the visible text.

    ``feed`` returns (thinking, text) for each content fragment; text that could still be
    the start of a tag is held until the next fragment decides it.
    """

    def __init__(self) -> None:
        self._state = "start"  # start → thinking → text
        self._held = ""

    def feed(self, fragment: str) -> tuple[str, str]:
        held = self._held + fragment
        self._held = ""
        if self._state == "start":
            stripped = held.lstrip()
            if not stripped or (_OPEN.startswith(stripped) and stripped != _OPEN):
                self._held = held
                return "", ""
            if not stripped.startswith(_OPEN):
                self._state = "text"
                return "", held
            self._state = "thinking"
            held = stripped[len(_OPEN) :]
        if self._state == "thinking":
            end = held.find(_CLOSE)
            if end >= 0:
                self._state = "text"
                return held[:end], held[end + len(_CLOSE) :].lstrip("\r\n")
            keep = _partial_suffix(held, _CLOSE)
            if keep:
                self._held = held[-keep:]
                held = held[:-keep]
            return held, ""
        return "", held

    def flush(self) -> tuple[str, str]:
        """At the end: whatever was held is what it looked like."""
        held, self._held = self._held, ""
        return (held, "") if self._state == "thinking" else ("", held)


def _partial_suffix(text: str, tag: str) -> int:
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


def split_think(content: str) -> tuple[str, str]:
    """A whole answer's leading ``<think>…</think>`` and the rest."""
    splitter = ThinkSplitter()
    thinking, text = splitter.feed(content)
    more_thinking, more_text = splitter.flush()
    return thinking + more_thinking, text + more_text


# --- usage and errors ---------------------------------------------------------------------


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True, slots=True)
class ChatUsage:
    """A Chat ``usage`` object read once, with the cache fields providers spell differently."""

    prompt: int = 0
    completion: int = 0
    cache_read: int = 0
    cache_creation: int = 0
    reasoning: int = 0

    @classmethod
    def of(cls, usage: Any) -> ChatUsage:
        if not isinstance(usage, Mapping):
            return cls()
        details = usage.get("prompt_tokens_details") or {}
        out_details = usage.get("completion_tokens_details") or {}
        cache_read = (
            _int(usage.get("cache_read_input_tokens"))
            or _int(details.get("cached_tokens"))
            or _int(usage.get("prompt_cache_hit_tokens"))  # DeepSeek
        )
        cache_creation = _int(usage.get("cache_creation_input_tokens")) or _int(
            details.get("cache_write_tokens")
        )
        return cls(
            prompt=_int(usage.get("prompt_tokens")),
            completion=_int(usage.get("completion_tokens")),
            cache_read=cache_read,
            cache_creation=cache_creation,
            reasoning=_int(out_details.get("reasoning_tokens")),
        )

    def anthropic(self) -> JsonObject:
        """Anthropic counts input without the cached part; Chat's prompt includes it."""
        return {
            "input_tokens": max(0, self.prompt - self.cache_read - self.cache_creation),
            "output_tokens": self.completion,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation_input_tokens": self.cache_creation,
        }

    def responses(self) -> JsonObject:
        return {
            "input_tokens": self.prompt,
            "input_tokens_details": {"cached_tokens": self.cache_read},
            "output_tokens": self.completion,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.prompt + self.completion,
        }


def error_message(body: bytes) -> tuple[str, JsonObject]:
    """The provider's error message (never empty) and its ``error`` object, if any."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace").strip()
        return (text[:500] or "the provider answered with an empty error body"), {}
    if not isinstance(document, dict):
        return dumps(document)[:500], {}
    error = document.get("error")
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg") or dumps(error)[:500]
        return str(message), error
    if isinstance(error, str) and error:
        return error, {}
    base = document.get("base_resp")  # MiniMax
    if isinstance(base, dict) and base.get("status_msg"):
        return str(base["status_msg"]), {}
    if isinstance(document.get("message"), str) and document["message"]:
        return document["message"], {}
    return dumps(document)[:500], {}


class ChatChoiceReader:
    """What one choice of a Chat Completions stream chunk carries, handed on in order:
    reasoning, text (a leading ``<think>`` split off as reasoning), tool call fragments, the
    finish reason (after any text the splitter still held). Each stream translator says what
    becomes of them."""

    _think: ThinkSplitter
    _slots: dict[int, int]  # the provider's tool-call index → the call it now continues
    _slot_ids: dict[int, str]  # each call's id, once known
    _slot_count: int

    def read_choice(self, choice: JsonObject) -> None:
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            self.on_reasoning(reasoning)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._split(*self._think.feed(content))
        for position, call in enumerate(delta.get("tool_calls") or []):
            if isinstance(call, dict):
                self.on_tool_call(call, self._slot(call, position))
        if choice.get("finish_reason"):
            self._split(*self._think.flush())  # what was held is what it looked like
            self.on_finish(choice["finish_reason"])

    def _split(self, thinking: str, text: str) -> None:
        if thinking:
            self.on_reasoning(thinking)
        if text:
            self.on_text(text)

    def _slot(self, call: JsonObject, position: int) -> int:
        """Which call a fragment belongs to, numbered in order of appearance.

        Keyed by ``index``, but a new ``id`` at a known index starts a new call: Ollama and
        some relays stream parallel calls all with index 0, or with none at all.
        """
        index = call.get("index")
        key = index if isinstance(index, int) and not isinstance(index, bool) else position
        call_id = call.get("id")
        slot = self._slots.get(key)
        known = self._slot_ids.get(slot, "") if slot is not None else ""
        if slot is None or (isinstance(call_id, str) and call_id and known and call_id != known):
            slot = self._slot_count
            self._slot_count += 1
            self._slots[key] = slot
            known = ""
        if isinstance(call_id, str) and call_id and not known:
            self._slot_ids[slot] = call_id
        return slot

    def on_reasoning(self, text: str) -> None:
        raise NotImplementedError

    def on_text(self, text: str) -> None:
        raise NotImplementedError

    def on_tool_call(self, call: JsonObject, slot: int) -> None:
        raise NotImplementedError

    def on_finish(self, reason: Any) -> None:
        raise NotImplementedError
