"""Codex CLI (OpenAI Responses) served by a Chat Completions provider: request, answer, errors.

The stream direction is in ``responses_chat_stream``; how Codex's tools (namespaces, custom
tools) are offered and their calls turned back is in ``responses_tools``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from ccswitch_addon.wire.translate.chat_form import ask_to_stream
from ccswitch_addon.wire.translate.common import (
    ChatUsage,
    JsonObject,
    UntranslatableRequest,
    dumps,
    error_message,
    split_think,
    token_limit_field,
)
from ccswitch_addon.wire.translate.responses_tools import (
    ResponsesTools,
    chat_tool_choice,
    chat_tools,
)

__all__ = [
    "ERROR_CODES",
    "FINISH_STATUS",
    "ResponsesTools",
    "answer_to_responses",
    "error_to_responses",
    "finish_status",
    "input_items",
    "output_items",
    "request_to_chat",
]

logger = logging.getLogger(__name__)

# Chat finish_reason → (Responses status, incomplete reason).
FINISH_STATUS: Mapping[str, tuple[str, str | None]] = {
    "stop": ("completed", None),
    "tool_calls": ("completed", None),
    "function_call": ("completed", None),
    "length": ("incomplete", "max_output_tokens"),
    "content_filter": ("incomplete", "content_filter"),
}

# HTTP status → (error type, code) when the provider's own error does not say.
ERROR_CODES: Mapping[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("not_found_error", "not_found"),
    408: ("timeout_error", "timeout"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "server_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}

# Codex compacts the conversation on this code; Chat servers only say it in words.
_CONTEXT_FULL = re.compile(r"context.{0,20}(length|window)|maximum context|too many tokens", re.I)


def finish_status(reason: Any) -> tuple[str, str | None]:
    mapped = FINISH_STATUS.get(reason) if isinstance(reason, str) else None
    if mapped is None:
        logger.warning("unknown finish_reason %r from the provider; sent as completed", reason)
        return "completed", None
    return mapped


# --- request ------------------------------------------------------------------------------


def _part(part: Any) -> JsonObject | None:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "summary_text"):
        return {"type": "text", "text": part.get("text", "")}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal", "")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise UntranslatableRequest("an input_image by file_id has no Chat form")
        image: JsonObject = {"url": url}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file" and part.get("file_data"):
        return {
            "type": "file",
            "file": {"filename": part.get("filename") or "file", "file_data": part["file_data"]},
        }
    if kind == "input_file":
        raise UntranslatableRequest("an input_file by file_id or URL has no Chat form")
    return None


def _content(content: Any) -> str | list[JsonObject]:
    if isinstance(content, str):
        return content
    parts = [p for p in (_part(x) for x in content or []) if p is not None]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_text(output: Any) -> tuple[str, list[JsonObject]]:
    """A tool output as a string (Chat tool messages take nothing else) and its images."""
    if isinstance(output, str):
        return output, []
    if isinstance(output, list):
        parts = [p for p in (_part(x) for x in output) if p is not None]
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        return text, [p for p in parts if p["type"] != "text"]
    return dumps(output), []


class _Builder:
    """Responses input items → Chat messages, keeping Chat's order rules."""

    def __init__(self, tools: ResponsesTools, replay_reasoning: bool) -> None:
        self.tools = tools
        self.replay = replay_reasoning
        self.system: list[str] = []
        self.messages: list[JsonObject] = []
        self.reasoning: list[str] = []  # waiting for the next assistant message
        self.images: list[JsonObject] = []  # from tool outputs, for the next user message
        self.tools_declared: list[Any] = []  # from ``additional_tools`` input items

    def item(self, item: Any) -> None:
        if not isinstance(item, dict):
            raise UntranslatableRequest("an input item is not a JSON object")
        kind = item.get("type", "message")
        if kind == "message":
            self.message(item.get("role"), item.get("content"))
        elif kind in ("function_call", "custom_tool_call"):
            arguments = (
                item.get("arguments") or "{}"
                if kind == "function_call"
                else dumps({"input": item.get("input", "")})
            )
            if not isinstance(arguments, str):
                arguments = dumps(arguments)
            call = {
                "id": item.get("call_id", ""),
                "type": "function",
                "function": {
                    "name": self.tools.chat_name(item.get("name", ""), item.get("namespace")),
                    "arguments": arguments,
                },
            }
            self.assistant().setdefault("tool_calls", []).append(call)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            text, images = _output_text(item.get("output"))
            self.messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id", ""), "content": text}
            )
            self.images += images
        elif kind == "additional_tools":  # Codex's default model sends its tools here
            self.tools_declared += item.get("tools") or []
        elif kind == "reasoning":
            summary = item.get("summary") or []
            self.reasoning.append(
                "".join(p.get("text", "") for p in summary if isinstance(p, dict))
            )
        # other items (web_search_call, local_shell_call, …) have no Chat form; Codex keeps
        # them only as history, and dropping them loses nothing the provider could use

    def message(self, role: Any, content: Any) -> None:
        if role in ("system", "developer"):
            text = _content(content)
            self.system.append(text if isinstance(text, str) else dumps(text))
            return
        if role == "assistant":
            message = {"role": "assistant", "content": _content(content) or None}
            self._flush_images()
            self.messages.append(message)
            self._attach_reasoning(message)
            return
        if role != "user":
            raise UntranslatableRequest(f"unknown message role {role!r}")
        self.reasoning = []  # reasoning never crosses a user turn
        body = _content(content)
        if self.images:
            parts = body if isinstance(body, list) else [{"type": "text", "text": body}]
            body = self.images + parts
            self.images = []
        self.messages.append({"role": "user", "content": body})

    def assistant(self) -> JsonObject:
        """The assistant message tool calls attach to: the last one, unless something followed."""
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant":
            return last
        self._flush_images()
        message: JsonObject = {"role": "assistant", "content": None}
        self.messages.append(message)
        self._attach_reasoning(message)
        return message

    def _attach_reasoning(self, message: JsonObject) -> None:
        if self.replay and self.reasoning:
            message["reasoning_content"] = "\n".join(self.reasoning)
        self.reasoning = []

    def _flush_images(self) -> None:
        if self.images:
            self.messages.append({"role": "user", "content": self.images})
            self.images = []

    def finish(self) -> list[JsonObject]:
        self._flush_images()
        if self.replay and self.reasoning:  # a trailing reasoning item: the previous answer's
            for message in reversed(self.messages):
                if message["role"] == "assistant":
                    message.setdefault("reasoning_content", "\n".join(self.reasoning))
                    break
        if self.replay:  # thinking providers refuse a tool-call turn without its reasoning
            for message in self.messages:
                tool_turn = message["role"] == "assistant" and message.get("tool_calls")
                if tool_turn and not message.get("reasoning_content"):
                    message["reasoning_content"] = "(reasoning omitted)"
        head = [{"role": "system", "content": "\n\n".join(self.system)}] if self.system else []
        return head + self.messages


def input_items(body: JsonObject) -> list[Any]:
    """The request's ``input`` as a list of items."""
    value = body.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list):
        return value
    raise UntranslatableRequest("the request has no input")


def request_to_chat(
    body: JsonObject,
    tools: ResponsesTools,
    history: list[Any] | None = None,
    *,
    replay_reasoning: bool = False,
) -> JsonObject:
    """A Responses request (after ``history`` from an earlier response) as a Chat request."""
    builder = _Builder(tools, replay_reasoning)
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        builder.system.append(body["instructions"])
    for item in [*(history or []), *input_items(body)]:
        builder.item(item)
    chat: JsonObject = {"model": body.get("model"), "messages": builder.finish()}
    if body.get("max_output_tokens") is not None:
        chat[token_limit_field(body.get("model"))] = body["max_output_tokens"]
    for key in ("temperature", "top_p", "user"):
        if body.get(key) is not None:
            chat[key] = body[key]
    effort = (body.get("reasoning") or {}).get("effort")
    if isinstance(effort, str):
        chat["reasoning_effort"] = effort
    fmt = (body.get("text") or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    offered = chat_tools([*(body.get("tools") or []), *builder.tools_declared], tools)
    if offered:  # strict servers refuse tool_choice or parallel_tool_calls without tools
        chat["tools"] = offered
        choice = chat_tool_choice(body.get("tool_choice"), tools)
        if choice is not None:
            chat["tool_choice"] = choice
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    if body.get("stream"):
        ask_to_stream(chat)
    return chat


# --- answer -------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def output_items(answer: JsonObject, tools: ResponsesTools, response_id: str) -> list[JsonObject]:
    choices = answer.get("choices")
    message = (choices[0] if isinstance(choices, list) and choices else {}).get("message") or {}
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    leading, text = split_think(_text_of(message.get("content")))
    reasoning = (reasoning if isinstance(reasoning, str) else "") + leading
    items: list[JsonObject] = []
    if reasoning:
        items.append(
            {
                "id": f"rs_{response_id}",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": reasoning}],
            }
        )
    if not text and isinstance(message.get("refusal"), str):
        text = message["refusal"]
    if text:
        items.append(
            {
                "id": f"msg_{response_id}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        if not function.get("name"):
            continue
        call_id = call.get("id") or f"call_{response_id}_{index}"
        items.append(
            tools.call_item(
                call_id, function["name"], function.get("arguments") or "", f"fc_{call_id}"
            )
        )
    return items


def answer_to_responses(
    answer: JsonObject, tools: ResponsesTools, response_id: str, created_at: int
) -> JsonObject:
    """A Chat Completions answer as a Responses ``response`` object."""
    choices = answer.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    status, reason = finish_status(choice.get("finish_reason"))
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "incomplete_details": {"reason": reason} if reason else None,
        "error": None,
        "model": answer.get("model", ""),
        "output": output_items(answer, tools, response_id),
        "usage": ChatUsage.of(answer.get("usage")).responses(),
    }


def error_to_responses(status: int, body: bytes) -> JsonObject:
    """A provider's error in the ``{"error": {message, type, code, param}}`` shape Codex reads."""
    message, original = error_message(body)
    kind, code = ERROR_CODES.get(status) or (
        ("server_error", "server_error") if status >= 500 else ("invalid_request_error", "error")
    )
    if status == 400 and _CONTEXT_FULL.search(message):
        code = "context_length_exceeded"
    own_type = original.get("type")
    own_code = original.get("code")
    return {
        "error": {
            "message": message,
            "type": own_type if isinstance(own_type, str) and own_type else kind,
            "code": own_code if isinstance(own_code, str) and own_code else code,
            "param": original.get("param") if isinstance(original.get("param"), str) else None,
        }
    }
