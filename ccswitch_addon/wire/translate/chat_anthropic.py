"""The Chat form of a turn, sent to an Anthropic Messages provider and read back.

One side of the pivot (see ``pivot``): Codex CLI and Gemini CLI requests reach an Anthropic
provider through the Chat form ``responses_chat``/``gemini_chat`` already make. Thinking is
not asked for: Anthropic refuses a tool-use turn replayed without its signed thinking block,
and signatures never survive a trip through another format.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ccswitch_addon.wire.translate.chat_form import (
    append_turn,
    chat_answer,
    chat_chunk,
    chat_usage,
    data_url,
    event_object,
    history_arguments,
    text_of,
    tool_error,
)
from ccswitch_addon.wire.translate.common import JsonObject, dumps
from ccswitch_addon.wire.translate.sse import SseEvent

__all__ = [
    "FINISH_REASONS",
    "AnthropicChunks",
    "answer_to_chat",
    "json_instruction",
    "request_from_chat",
    "usage_to_chat",
]

# Anthropic stop_reason → Chat finish_reason.
FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_TOOL_CHOICE: Mapping[str, JsonObject] = {
    "auto": {"type": "auto"},
    "required": {"type": "any"},
    "none": {"type": "none"},
}
DEFAULT_MAX_TOKENS = 8192  # Anthropic requires max_tokens; Chat and Gemini requests may not say


def json_instruction(response_format: Any) -> str:
    """What a Chat ``response_format`` asks, as words for a provider with no such field."""
    if not isinstance(response_format, dict):
        return ""
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return (
            "Reply with only a JSON value that matches this JSON schema, "
            f"with no other text and no code fence:\n{dumps(schema)}"
        )
    if response_format.get("type") == "json_object":
        return "Reply with only a JSON object, with no other text and no code fence."
    return ""


def _image(url: str) -> JsonObject:
    inline = data_url(url)
    if inline is not None:
        media, data = inline
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[JsonObject]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[JsonObject] = []
    for part in content or []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            blocks.append(_image(url))
        elif part.get("type") == "file":
            inline = data_url((part.get("file") or {}).get("file_data", ""))
            if inline is not None:
                source = {"type": "base64", "media_type": inline[0], "data": inline[1]}
                blocks.append({"type": "document", "source": source})
    return blocks


def _tool_result(message: JsonObject) -> JsonObject:
    text, failed = tool_error(text_of(message.get("content")))
    block: JsonObject = {"type": "tool_result", "tool_use_id": message.get("tool_call_id", "")}
    if failed:
        block["is_error"] = True
    block["content"] = text
    return block


def _tool_use(call: JsonObject) -> JsonObject:
    function = call.get("function") or {}
    name, arguments = function.get("name", ""), history_arguments(function)
    return {"type": "tool_use", "id": call.get("id", ""), "name": name, "input": arguments}


def request_from_chat(chat: JsonObject) -> JsonObject:
    """A Chat Completions request as an Anthropic Messages request."""
    system: list[str] = []
    messages: list[JsonObject] = []
    for message in chat.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(text_of(message.get("content")))
        elif role == "user":
            append_turn(messages, "user", "content", _blocks(message.get("content")))
        elif role == "tool":
            # results first in their user turn, as Anthropic requires
            append_turn(messages, "user", "content", [_tool_result(message)])
        elif role == "assistant":
            blocks = _blocks(message.get("content"))
            blocks += [_tool_use(c) for c in message.get("tool_calls") or []]
            append_turn(messages, "assistant", "content", blocks)
    instruction = json_instruction(chat.get("response_format"))
    if instruction:
        system.append(instruction)
    limit = chat.get("max_tokens") or chat.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
    body: JsonObject = {"model": chat.get("model"), "max_tokens": limit, "messages": messages}
    if any(system):
        body["system"] = "\n\n".join(s for s in system if s)
    for key in ("temperature", "top_p"):
        if chat.get(key) is not None:
            body[key] = chat[key]
    stop = chat.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    if isinstance(chat.get("user"), str):
        body["metadata"] = {"user_id": chat["user"]}
    tools = [
        {
            "name": t["function"]["name"],
            "description": t["function"].get("description", ""),
            "input_schema": t["function"].get("parameters") or {"type": "object"},
        }
        for t in chat.get("tools") or []
        if isinstance(t, dict) and t.get("type") == "function"
    ]
    if tools:
        body["tools"] = tools
        choice = chat.get("tool_choice")
        chosen: JsonObject | None = None
        if isinstance(choice, str):
            chosen = dict(_TOOL_CHOICE.get(choice, {"type": "auto"}))
        elif isinstance(choice, dict) and choice.get("type") == "function":
            chosen = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
        if chat.get("parallel_tool_calls") is False and (chosen or {}).get("type") != "none":
            chosen = {**(chosen or {"type": "auto"}), "disable_parallel_tool_use": True}
        if chosen is not None:
            body["tool_choice"] = chosen
    if chat.get("stream"):
        body["stream"] = True
    return body


# --- answers ------------------------------------------------------------------------------


def usage_to_chat(usage: Any) -> JsonObject:
    """Anthropic counts input without the cached part; Chat's prompt includes it."""
    usage = usage if isinstance(usage, dict) else {}
    read = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + read + written
    completion = usage.get("output_tokens") or 0
    return chat_usage(prompt, completion, read, cache_creation_input_tokens=written)


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def answer_to_chat(message: JsonObject) -> JsonObject:
    """An Anthropic message as a Chat Completions answer."""
    text: list[str] = []
    thinking: list[str] = []
    calls: list[JsonObject] = []
    for block in message.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text", ""))
        elif kind == "thinking":
            thinking.append(block.get("thinking", ""))
        elif kind == "tool_use":
            function = {"name": block.get("name", ""), "arguments": dumps(block.get("input", {}))}
            calls.append({"id": block.get("id", ""), "type": "function", "function": function})
    return chat_answer(
        message.get("id", ""),
        message.get("model", ""),
        text,
        thinking,
        calls,
        finish_reason(message.get("stop_reason")),
        usage_to_chat(message.get("usage")),
    )


class AnthropicChunks:
    """An Anthropic Messages stream, event by event, as the Chat chunks it amounts to."""

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._usage: JsonObject = {}
        self._tools: dict[int, int] = {}  # Anthropic block index → Chat tool-call index

    def _chunk(self, delta: JsonObject, finish: str | None = None) -> JsonObject:
        return chat_chunk(self._id, self._model, delta, finish)

    def chunks(self, event: SseEvent) -> list[JsonObject | str]:
        data = event_object(event)
        if data is None:
            return []
        kind = data.get("type") or event.event
        if kind == "message_start":
            message = data.get("message") or {}
            self._id, self._model = message.get("id", ""), message.get("model", "")
            self._usage = dict(message.get("usage") or {})
            return [{**self._chunk({"role": "assistant"}), "usage": usage_to_chat(self._usage)}]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tools[data["index"]] = len(self._tools)
                function = {"name": block.get("name", ""), "arguments": ""}
                call = {"index": index, "id": block.get("id", ""), "function": function}
                return [self._chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "message_delta":
            self._usage.update(data.get("usage") or {})
            reason = finish_reason((data.get("delta") or {}).get("stop_reason"))
            usage = {"id": self._id, "choices": [], "usage": usage_to_chat(self._usage)}
            return [self._chunk({}, reason), usage]
        if kind == "message_stop":
            return ["[DONE]"]
        if kind == "error":
            return [{"error": data.get("error") or {"message": "error event"}}]
        return []  # ping, content_block_stop

    def _delta(self, data: JsonObject) -> list[JsonObject | str]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            return [self._chunk({"content": delta.get("text", "")})]
        if kind == "thinking_delta":
            return [self._chunk({"reasoning_content": delta.get("thinking", "")})]
        if kind == "input_json_delta" and data.get("index") in self._tools:
            function = {"arguments": delta.get("partial_json", "")}
            call = {"index": self._tools[data["index"]], "function": function}
            return [self._chunk({"tool_calls": [call]})]
        return []  # signature_delta: a signature means nothing outside Anthropic
