"""The Chat form of a turn as the translators share it: one shape of answer, chunk and usage
for the provider sides (``chat_anthropic``, ``chat_gemini``, ``chat_responses``), so the tool
side's machines see the same Chat whichever provider answered; how the tool sides ask for a
stream; and how a Chat request's pieces that Chat itself leaves vague (a failed tool result, a
data URL, arguments that never parsed) are read by every side alike.
"""

from __future__ import annotations

import json
from typing import Any

from ccswitch_addon.wire.translate.common import BadAnswer, JsonObject, parse_arguments
from ccswitch_addon.wire.translate.sse import SseEvent

__all__ = [
    "ERROR_MARK",
    "append_turn",
    "ask_to_stream",
    "chat_answer",
    "chat_chunk",
    "chat_message",
    "chat_usage",
    "data_url",
    "event_object",
    "history_arguments",
    "text_of",
    "tool_error",
]

# How a failed tool result reads in the Chat form, which has no flag for it: the tool sides
# write it, the provider sides with such a flag (Anthropic, Gemini) take it off again.
ERROR_MARK = "[tool error] "


def text_of(content: Any) -> str:
    """A Chat message's content as plain text (a string, or the text of its parts)."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def tool_error(text: str) -> tuple[str, bool]:
    """A tool result's text without the error mark, and whether it had one."""
    if text.startswith(ERROR_MARK):
        return text[len(ERROR_MARK) :], True
    return text, False


def data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a ``data:…;base64,`` URL; None for any other."""
    if url.startswith("data:") and ";base64," in url:
        media, data = url[5:].split(";base64,", 1)
        return media, data
    return None


def history_arguments(function: JsonObject) -> JsonObject:
    """A replayed call's arguments as an object; arguments that never parsed stay as they
    were said, under ``arguments`` (history is not the place to refuse them)."""
    try:
        return parse_arguments(function.get("arguments"), function.get("name", ""))
    except BadAnswer:
        return {"arguments": function.get("arguments")}


def append_turn(turns: list[JsonObject], role: str, key: str, items: list[JsonObject]) -> None:
    """Consecutive turns of one role merge (under ``key``: Anthropic's ``content``, Gemini's
    ``parts``): both want user and model turns alternating."""
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][key] += items
    else:
        turns.append({"role": role, key: items})


def ask_to_stream(chat: JsonObject) -> None:
    """Make a Chat request stream, with its usage: without ``include_usage`` a Chat server
    sends none, and the tool would read the usage as zero."""
    chat["stream"] = True
    chat["stream_options"] = {"include_usage": True}


def chat_usage(prompt: int, completion: int, cached: int, **more: Any) -> JsonObject:
    """A Chat ``usage`` object; ``more`` holds what one provider counts beyond the rest."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        **more,
    }


def chat_answer(
    answer_id: Any,
    model: Any,
    text: list[str],
    reasoning: list[str],
    calls: list[JsonObject],
    finish: str,
    usage: JsonObject,
) -> JsonObject:
    """A Chat Completions answer with its one choice (see ``chat_message``)."""
    message = chat_message(text, reasoning, calls)
    return {
        "id": answer_id,
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


def chat_message(text: list[str], reasoning: list[str], calls: list[JsonObject]) -> JsonObject:
    """An answer's assistant message: no reasoning, no calls and no text each leave their
    field out (``content`` as null)."""
    message: JsonObject = {"role": "assistant", "content": "".join(text) or None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


def chat_chunk(
    answer_id: str, model: str, delta: JsonObject, finish: str | None = None
) -> JsonObject:
    """One Chat stream chunk with its one choice."""
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": answer_id, "model": model, "choices": [choice]}


def event_object(event: SseEvent) -> JsonObject | None:
    """A provider's stream event as its JSON object; None for anything else (a keep-alive)."""
    try:
        data = json.loads(event.data)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
