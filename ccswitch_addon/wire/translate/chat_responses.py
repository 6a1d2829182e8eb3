"""The Chat form of a turn, sent to an OpenAI Responses provider and read back.

One side of the pivot (see ``pivot``): Claude Code's requests reach a Responses provider
through the Chat form ``anthropic_chat`` makes. Nothing is stored at the provider
(``store: false``): every request carries its whole conversation, as Claude Code sends it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ccswitch_addon.wire.translate.chat_form import (
    chat_answer,
    chat_chunk,
    chat_usage,
    event_object,
)
from ccswitch_addon.wire.translate.common import JsonObject, dumps
from ccswitch_addon.wire.translate.sse import SseEvent

__all__ = ["ResponsesChunks", "answer_to_chat", "request_from_chat", "usage_to_chat"]

# Models that reason (and take ``reasoning``); others answer 400 to it.
_REASONING_MODELS = re.compile(r"^(?:[\w.-]+/)?(?:o\d|gpt-5|gpt-6|codex)", re.IGNORECASE)

# Responses incomplete_details.reason → Chat finish_reason.
_INCOMPLETE: Mapping[str, str] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
}


def _content(content: Any, role: str) -> list[JsonObject]:
    kind = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        return [{"type": kind, "text": content}] if content else []
    parts: list[JsonObject] = []
    for part in content or []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            parts.append({"type": kind, "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            image = part.get("image_url") or {}
            parts.append({"type": "input_image", "image_url": image.get("url", "")})
        elif part.get("type") == "file":
            file = part.get("file") or {}
            parts.append(
                {
                    "type": "input_file",
                    "filename": file.get("filename") or "file",
                    "file_data": file.get("file_data", ""),
                }
            )
    return parts


def _items(messages: list[Any]) -> tuple[list[str], list[JsonObject]]:
    system: list[str] = []
    items: list[JsonObject] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.append(content if isinstance(content, str) else dumps(content))
        elif role == "tool":
            output = content if isinstance(content, str) else dumps(content)
            call_id = message.get("tool_call_id", "")
            items.append({"type": "function_call_output", "call_id": call_id, "output": output})
        elif role in ("user", "assistant"):
            parts = _content(content, role)
            if parts:
                items.append({"type": "message", "role": role, "content": parts})
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                arguments = function.get("arguments")
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call.get("id", ""),
                        "name": function.get("name", ""),
                        # always a string: a dict here is a 400 at several providers
                        "arguments": arguments if isinstance(arguments, str) else dumps(arguments),
                    }
                )
    return system, items


def request_from_chat(chat: JsonObject) -> JsonObject:
    """A Chat Completions request as a Responses request."""
    system, items = _items(chat.get("messages") or [])
    body: JsonObject = {"model": chat.get("model"), "input": items, "store": False}
    if system:
        body["instructions"] = "\n\n".join(system)
    limit = chat.get("max_completion_tokens") or chat.get("max_tokens")
    if limit:
        body["max_output_tokens"] = limit
    # not ``user``: Claude Code's is a JSON document, longer than OpenAI takes there
    for key in ("temperature", "top_p", "parallel_tool_calls"):
        if chat.get(key) is not None:
            body[key] = chat[key]
    if chat.get("reasoning_effort") and _REASONING_MODELS.match(str(chat.get("model") or "")):
        # a summary, so the tool sees the reasoning; models that do not reason refuse the field
        body["reasoning"] = {"effort": chat["reasoning_effort"], "summary": "auto"}
    fmt = chat.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("json_schema") or {}
        body["text"] = {"format": {"type": "json_schema", "name": "response", **schema}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        body["text"] = {"format": {"type": "json_object"}}
    tools = []
    for tool in chat.get("tools") or []:
        function = tool.get("function") or {}
        declared: JsonObject = {
            "type": "function",
            "name": function.get("name", ""),
            "parameters": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            declared["description"] = function["description"]
        declared["strict"] = bool(function.get("strict", False))
        tools.append(declared)
    if tools:
        body["tools"] = tools
        choice = chat.get("tool_choice")
        if isinstance(choice, str):
            body["tool_choice"] = choice
        elif isinstance(choice, dict) and choice.get("type") == "function":
            name = (choice.get("function") or {}).get("name", "")
            body["tool_choice"] = {"type": "function", "name": name}
    if chat.get("stream"):
        body["stream"] = True
    return body


# --- answers ------------------------------------------------------------------------------


def usage_to_chat(usage: Any) -> JsonObject:
    usage = usage if isinstance(usage, dict) else {}
    prompt = usage.get("input_tokens") or 0
    completion = usage.get("output_tokens") or 0
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    return chat_usage(
        prompt, completion, cached, completion_tokens_details={"reasoning_tokens": reasoning}
    )


def _finish(response: JsonObject, calls: bool) -> str:
    reason = (response.get("incomplete_details") or {}).get("reason")
    if response.get("status") == "incomplete":
        return _INCOMPLETE.get(str(reason), "length")
    return "tool_calls" if calls else "stop"


def _summary(item: JsonObject) -> str:
    parts = [*(item.get("summary") or []), *(item.get("content") or [])]
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict))


def answer_to_chat(response: JsonObject) -> JsonObject:
    """A Responses ``response`` object as a Chat Completions answer."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[JsonObject] = []
    for item in response.get("output") or []:
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or []:
                text.append(part.get("text") or part.get("refusal") or "")
        elif kind == "reasoning":
            reasoning.append(_summary(item))
        elif kind == "function_call":
            function = {"name": item.get("name", ""), "arguments": item.get("arguments") or ""}
            calls.append({"id": item.get("call_id", ""), "type": "function", "function": function})
    return chat_answer(
        response.get("id", ""),
        response.get("model", ""),
        text,
        [r for r in reasoning if r],  # empty summaries are no reasoning
        calls,
        _finish(response, bool(calls)),
        usage_to_chat(response.get("usage")),
    )


class ResponsesChunks:
    """A Responses stream, event by event, as the Chat chunks it amounts to.

    Arguments that come only whole (in ``…arguments.done`` or the item's ``done``, never as
    deltas) are sent whole; a call is never left with empty arguments it had.
    """

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._calls: dict[str, int] = {}  # item id → Chat tool-call index
        self._argued: set[str] = set()  # items whose arguments were sent

    def _chunk(self, delta: JsonObject, finish: str | None = None) -> JsonObject:
        return chat_chunk(self._id, self._model, delta, finish)

    def _arguments(self, item_id: str, text: str) -> list[JsonObject | str]:
        if item_id not in self._calls or not text:
            return []
        self._argued.add(item_id)
        call = {"index": self._calls[item_id], "function": {"arguments": text}}
        return [self._chunk({"tool_calls": [call]})]

    def chunks(self, event: SseEvent) -> list[JsonObject | str]:
        data = event_object(event)
        if data is None:
            return []
        kind = data.get("type") or event.event or ""
        if kind == "response.created":
            response = data.get("response") or {}
            self._id, self._model = response.get("id", ""), response.get("model", "")
            return [self._chunk({"role": "assistant"})]
        if kind == "response.output_text.delta":
            return [self._chunk({"content": data.get("delta", "")})]
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return [self._chunk({"reasoning_content": data.get("delta", "")})]
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") != "function_call":
                return []
            index = self._calls[item.get("id", "")] = len(self._calls)
            function = {"name": item.get("name", ""), "arguments": ""}
            call = {"index": index, "id": item.get("call_id", ""), "function": function}
            return [self._chunk({"tool_calls": [call]})]
        if kind == "response.function_call_arguments.delta":
            return self._arguments(data.get("item_id", ""), data.get("delta", ""))
        if kind in ("response.function_call_arguments.done", "response.output_item.done"):
            item = data.get("item") or {}
            item_id = data.get("item_id") or item.get("id", "")
            if item_id in self._argued:
                return []
            return self._arguments(item_id, data.get("arguments") or item.get("arguments") or "")
        if kind in ("response.completed", "response.incomplete"):
            response = data.get("response") or {}
            finish = _finish(response, bool(self._calls))
            usage = {"id": self._id, "choices": [], "usage": usage_to_chat(response.get("usage"))}
            return [self._chunk({}, finish), usage, "[DONE]"]
        if kind in ("response.failed", "error"):
            error = (data.get("response") or {}).get("error") or data.get("error") or data
            return [{"error": error if isinstance(error, dict) else {"message": str(error)}}]
        return []
