"""The Chat form of a turn as the provider sides (``chat_anthropic``, ``chat_gemini``,
``chat_responses``) write and read it: one shape of answer, chunk and usage for all three, so
the tool side's machines see the same Chat whichever provider answered.
"""

from __future__ import annotations

import json
from typing import Any

from ccswitch_addon.wire.translate.common import JsonObject
from ccswitch_addon.wire.translate.sse import SseEvent

__all__ = ["append_turn", "chat_answer", "chat_chunk", "chat_usage", "event_object", "text_of"]


def text_of(content: Any) -> str:
    """A Chat message's content as plain text (a string, or the text of its parts)."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def append_turn(turns: list[JsonObject], role: str, key: str, items: list[JsonObject]) -> None:
    """Consecutive turns of one role merge (under ``key``: Anthropic's ``content``, Gemini's
    ``parts``): both want user and model turns alternating."""
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][key] += items
    else:
        turns.append({"role": role, key: items})


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
    """A Chat Completions answer: no reasoning, no calls and no text each leave their field out
    (``content`` as null)."""
    message: JsonObject = {"role": "assistant", "content": "".join(text) or None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return {
        "id": answer_id,
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


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
