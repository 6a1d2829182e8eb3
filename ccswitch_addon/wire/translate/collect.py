"""A whole event stream read back into the one JSON answer of its format.

For a relay that streams to a request that asked for no stream (``stream: false``, Gemini's
``:generateContent``): the tool gets one JSON message, as it asked. An error event becomes
the format's error document (the answer path treats it as the provider's error); a stream
without its end raises BadAnswer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from ccswitch_addon.wire.translate.chat_form import chat_message
from ccswitch_addon.wire.translate.common import BadAnswer, JsonObject
from ccswitch_addon.wire.translate.formats import Format
from ccswitch_addon.wire.translate.sse import SseEvent, SseParser

__all__ = ["collect"]


def _documents(body: bytes) -> Iterator[tuple[str | None, JsonObject]]:
    parser = SseParser()
    events: list[SseEvent] = [*parser.feed(body), *parser.close()]
    for event in events:
        data = event.data.strip()
        if not data or data == "[DONE]":
            continue
        try:
            document = json.loads(data)
        except ValueError:
            continue  # a keep-alive
        if isinstance(document, dict):
            yield event.event, document


def _chat(body: bytes) -> JsonObject:
    answer: JsonObject = {"object": "chat.completion"}
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, JsonObject] = {}
    slots: dict[int, int] = {}
    finish: Any = None
    for _, chunk in _documents(body):
        if chunk.get("error"):
            return {"error": chunk["error"]}
        for key in ("id", "model", "created"):
            answer.setdefault(key, chunk.get(key))
        if chunk.get("usage"):
            answer["usage"] = chunk["usage"]
        choices = chunk.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            continue
        choice = choices[0]
        delta = choice.get("delta") or choice.get("message") or {}
        if isinstance(delta.get("content"), str):
            text.append(delta["content"])
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(thought, str):
            reasoning.append(thought)
        for position, call in enumerate(delta.get("tool_calls") or []):
            index = call.get("index", position)
            slot = slots.get(index)
            known = calls[slot].get("id") if slot is not None else None
            if slot is None or (call.get("id") and known and call["id"] != known):
                slot = slots[index] = len(calls)
                function_part = {"name": "", "arguments": ""}
                calls[slot] = {"id": "", "type": "function", "function": function_part}
            entry, function = calls[slot], call.get("function") or {}
            entry["id"] = entry["id"] or call.get("id") or ""
            entry["function"]["name"] = entry["function"]["name"] or function.get("name") or ""
            entry["function"]["arguments"] += function.get("arguments") or ""
        finish = finish or choice.get("finish_reason")
    if finish is None:
        raise BadAnswer("the provider's stream ended without a finish_reason")
    message = chat_message(text, reasoning, [calls[i] for i in sorted(calls)])
    answer["choices"] = [{"index": 0, "message": message, "finish_reason": finish}]
    return answer


_DELTA_FIELDS = {
    "text_delta": ("text", "text"),
    "thinking_delta": ("thinking", "thinking"),
    "signature_delta": ("signature", "signature"),
    "input_json_delta": ("partial_json", "_json"),
}


def _anthropic(body: bytes) -> JsonObject:
    message: JsonObject | None = None
    blocks: dict[int, JsonObject] = {}
    for kind, event in _documents(body):
        kind = event.get("type") or kind
        if kind == "error":
            return {"type": "error", "error": event.get("error") or {}}
        if kind == "message_start":
            message = dict(event.get("message") or {})
        elif kind == "content_block_start":
            blocks[event["index"]] = dict(event.get("content_block") or {})
        elif kind == "content_block_delta":
            block, delta = blocks[event["index"]], event.get("delta") or {}
            source, target = _DELTA_FIELDS.get(str(delta.get("type")), ("", ""))
            if source:
                block[target] = block.get(target, "") + (delta.get(source) or "")
        elif kind == "message_delta" and message is not None:
            message.update(event.get("delta") or {})
            message["usage"] = {**(message.get("usage") or {}), **(event.get("usage") or {})}
        elif kind == "message_stop" and message is not None:
            content = []
            for index in sorted(blocks):
                block = blocks[index]
                if "_json" in block:
                    raw = block.pop("_json")
                    block["input"] = json.loads(raw) if raw.strip() else {}
                content.append(block)
            message["content"] = content
            return message
    raise BadAnswer("the provider's stream ended without message_stop")


def _responses(body: bytes) -> JsonObject:
    for kind, event in _documents(body):
        kind = event.get("type") or kind
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            response = event.get("response")
            if isinstance(response, dict):
                if kind == "response.failed":
                    return {"error": response.get("error") or {"message": "response.failed"}}
                return response
        if kind == "error":
            return {"error": event.get("error") or event}
    raise BadAnswer("the provider's stream ended without response.completed")


def _mergeable(last: JsonObject, part: Any) -> bool:
    """Two plain text parts of the same kind (thought or not) read as one."""
    plain = {"text", "thought"}
    return (
        isinstance(part, dict)
        and set(last) <= plain
        and set(part) <= plain
        and isinstance(last.get("text"), str)
        and isinstance(part.get("text"), str)
        and bool(last.get("thought")) == bool(part.get("thought"))
    )


def _gemini(body: bytes) -> JsonObject:
    answer: JsonObject = {}
    parts: list[JsonObject] = []
    finish: Any = None
    for _, chunk in _documents(body):
        if chunk.get("error"):
            return {"error": chunk["error"]}
        for key in ("usageMetadata", "modelVersion", "responseId", "promptFeedback"):
            if chunk.get(key):
                answer[key] = chunk[key]
        for candidate in chunk.get("candidates") or []:
            for part in (candidate.get("content") or {}).get("parts") or []:
                if parts and _mergeable(parts[-1], part):
                    parts[-1]["text"] += part["text"]
                    continue
                parts.append(dict(part))
            finish = candidate.get("finishReason") or finish
    if finish is None:
        raise BadAnswer("the provider's stream ended without a finishReason")
    candidate = {"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}
    return {"candidates": [candidate], **answer}


_COLLECTORS: dict[Format, Callable[[bytes], JsonObject]] = {
    Format.OPENAI_CHAT: _chat,
    Format.ANTHROPIC: _anthropic,
    Format.OPENAI_RESPONSES: _responses,
    Format.GEMINI: _gemini,
}


def collect(fmt: Format, body: bytes) -> JsonObject:
    """The stream ``body`` (in ``fmt``) as that format's whole JSON answer."""
    try:
        return _COLLECTORS[fmt](body)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as e:
        if isinstance(e, BadAnswer):
            raise
        raise BadAnswer(f"the provider's stream cannot be read whole ({type(e).__name__})") from e
