"""Claude Code (Anthropic Messages) served by a Chat Completions provider: request, answer, errors.

The stream direction is in ``anthropic_chat_stream``. Every function is pure; tool names
shortened in the request are restored through the same ``ToolNames``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from ccswitch_addon.wire.translate.chat_form import ERROR_MARK, ask_to_stream
from ccswitch_addon.wire.translate.common import (
    ChatUsage,
    JsonObject,
    ToolNames,
    UntranslatableRequest,
    dumps,
    error_message,
    parse_arguments,
    split_think,
    token_limit_field,
)

__all__ = [
    "ERROR_TYPES",
    "STOP_REASONS",
    "answer_to_anthropic",
    "clean_schema",
    "error_to_anthropic",
    "error_type",
    "request_to_chat",
    "stop_reason",
]

logger = logging.getLogger(__name__)

# Chat finish_reason → Anthropic stop_reason; anything else is end_turn with a warning.
STOP_REASONS: Mapping[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# HTTP status → Anthropic error type (docs.claude.com/en/api/errors).
ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
    529: "overloaded_error",
}

_BILLING_LINE = re.compile(r"^x-anthropic-billing-header:.*(?:\n|$)", re.MULTILINE)
_TOOL_CHOICE: Mapping[str, str] = {"auto": "auto", "any": "required", "none": "none"}


def stop_reason(finish_reason: Any, tool_calls: bool) -> str:
    """Never null: a null stop reason makes Claude Code drop the end of the message."""
    if tool_calls and finish_reason in ("stop", "tool_calls", "function_call", None):
        return "tool_use"
    mapped = STOP_REASONS.get(finish_reason) if isinstance(finish_reason, str) else None
    if mapped is None:
        logger.warning(
            "unknown finish_reason %r from the provider; sent as end_turn", finish_reason
        )
        return "end_turn"
    return mapped


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


# --- request ------------------------------------------------------------------------------


def _image_part(block: JsonObject) -> JsonObject:
    source = block.get("source") or {}
    if source.get("type") == "url":
        url = source.get("url", "")
    else:
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: JsonObject) -> JsonObject:
    source = block.get("source") or {}
    if source.get("type") == "text":
        return {"type": "text", "text": source.get("data", "")}
    if source.get("type") == "base64":
        data = f"data:{source.get('media_type', 'application/pdf')};base64,{source.get('data', '')}"
        return {
            "type": "file",
            "file": {"filename": block.get("title") or "document", "file_data": data},
        }
    raise UntranslatableRequest(f"a document from a {source.get('type')!r} source has no Chat form")


def _parts(blocks: list[Any]) -> list[JsonObject]:
    parts: list[JsonObject] = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append(_image_part(block))
        elif kind == "document":
            parts.append(_document_part(block))
    return parts


def _content(parts: list[JsonObject]) -> str | list[JsonObject]:
    """A single text part collapses to a string, as every Chat server accepts."""
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts) if len(parts) != 1 else parts[0]["text"]
    return parts


def _system(system: Any) -> str:
    if isinstance(system, str):
        text = system
    elif isinstance(system, list):
        texts = [
            b.get("text", "") for b in system if isinstance(b, dict) and b.get("type") == "text"
        ]
        text = "\n\n".join(t for t in texts if t)
    else:
        return ""
    # Claude Code's per-request billing line would defeat the provider's prefix cache.
    return _BILLING_LINE.sub("", text).strip("\n")


def _tool_result(block: JsonObject) -> tuple[str, list[JsonObject]]:
    """A tool result's text, and its images (a tool message cannot carry them)."""
    content = block.get("content")
    images: list[JsonObject] = []
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text":
                texts.append(part.get("text", ""))
            elif part.get("type") == "image":
                images.append(_image_part(part))
        text = "\n".join(texts)
    else:
        text = ""
    if block.get("is_error"):
        text = ERROR_MARK + text
    return text, images


def _user(content: Any) -> list[JsonObject]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    messages: list[JsonObject] = []
    images: list[JsonObject] = []
    rest: list[Any] = []
    for block in content or []:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            text, found = _tool_result(block)
            messages.append(
                {"role": "tool", "tool_call_id": block.get("tool_use_id", ""), "content": text}
            )
            images += found
        else:
            rest.append(block)
    # tool messages must follow the assistant's tool_calls directly; the rest comes after
    parts = images + _parts(rest)
    if parts:
        messages.append({"role": "user", "content": _content(parts)})
    return messages


def _assistant(content: Any, names: ToolNames, replay_reasoning: bool) -> JsonObject:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[JsonObject] = []
    for block in content or []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            thinking.append(block.get("thinking", ""))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {
                        "name": names.short(block.get("name", "")),
                        "arguments": dumps(block.get("input", {})),
                    },
                }
            )
    message: JsonObject = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    if replay_reasoning and (thinking or calls):
        # thinking providers reject a tool-call turn without its reasoning
        message["reasoning_content"] = "\n".join(thinking) or "(reasoning omitted)"
    if message["content"] is None and not calls:
        message["content"] = ""
    return message


_SCHEMA_DROP = frozenset({"$schema"})


def clean_schema(schema: Any) -> JsonObject:
    """An input schema as Chat servers take it: an object at the root, no ``$schema``, no
    ``format: uri`` (rejected by several)."""

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: clean(v)
                for k, v in node.items()
                if k not in _SCHEMA_DROP and not (k == "format" and v == "uri")
            }
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    root = clean(schema) if isinstance(schema, dict) else {}
    root.setdefault("type", "object")
    if root["type"] == "object":
        root.setdefault("properties", {})
    return root


def _tools(tools: Any, names: ToolNames) -> list[JsonObject]:
    out = []
    for tool in tools or []:
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
            continue  # server tools (web_search_…, code_execution_…) have no Chat form
        function: JsonObject = {
            "name": names.short(tool.get("name", "")),
            "parameters": clean_schema(tool.get("input_schema")),
        }
        if tool.get("description"):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any, names: ToolNames) -> Any:
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": names.short(choice.get("name", ""))}}
    return _TOOL_CHOICE.get(kind) if isinstance(kind, str) else None


def request_to_chat(
    body: JsonObject, names: ToolNames, *, replay_reasoning: bool = False
) -> JsonObject:
    """An Anthropic Messages request as a Chat Completions request."""
    if not isinstance(body.get("messages"), list):
        raise UntranslatableRequest("the request has no messages list")
    messages: list[JsonObject] = []
    system = _system(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in body["messages"]:
        if not isinstance(message, dict):
            raise UntranslatableRequest("a message is not a JSON object")
        role = message.get("role")
        if role == "user":
            messages += _user(message.get("content"))
        elif role == "assistant":
            messages.append(_assistant(message.get("content"), names, replay_reasoning))
        elif role == "system":  # Claude Code sends system turns inside messages too
            text = _system(message.get("content"))
            if text:
                messages.append({"role": "system", "content": text})
        else:
            raise UntranslatableRequest(f"unknown message role {role!r}")
    chat: JsonObject = {"model": body.get("model"), "messages": messages}
    if "max_tokens" in body:
        chat[token_limit_field(body.get("model"))] = body["max_tokens"]
    for key in ("temperature", "top_p"):
        if key in body:
            chat[key] = body[key]
    if body.get("stop_sequences"):
        chat["stop"] = body["stop_sequences"]
    user = (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and user:
        chat["user"] = user
    tools = _tools(body.get("tools"), names)
    if tools:
        chat["tools"] = tools
        choice_value = body.get("tool_choice")
        choice = _tool_choice(choice_value, names)
        if choice is not None:
            chat["tool_choice"] = choice
        if isinstance(choice_value, dict) and choice_value.get("disable_parallel_tool_use"):
            chat["parallel_tool_calls"] = False
    if body.get("stream"):
        ask_to_stream(chat)
    return chat


# --- answer -------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def answer_to_anthropic(answer: JsonObject, names: ToolNames) -> JsonObject:
    """A Chat Completions answer as an Anthropic message: thinking, text and tool calls kept."""
    choices = answer.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message") or {}
    thinking = message.get("reasoning_content") or message.get("reasoning") or ""
    leading, text = split_think(_text_of(message.get("content")))
    thinking = thinking if isinstance(thinking, str) else ""
    thinking += leading
    content: list[JsonObject] = []
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    refusal = message.get("refusal")
    if text or (isinstance(refusal, str) and refusal):
        content.append({"type": "text", "text": text or refusal})
    calls = list(message.get("tool_calls") or [])
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        calls.append({"id": "", "function": legacy})
    for index, call in enumerate(calls):
        function = call.get("function") or {}
        name = names.restore(function.get("name") or "")
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{answer.get('id', 'call')}_{index}",
                "name": name,
                "input": parse_arguments(function.get("arguments"), name),
            }
        )
    return {
        "id": f"msg_{answer.get('id') or 'ccswitch'}",
        "type": "message",
        "role": "assistant",
        "model": answer.get("model", ""),
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason"), bool(calls)),
        "stop_sequence": None,
        "usage": ChatUsage.of(answer.get("usage")).anthropic(),
    }


def error_to_anthropic(status: int, body: bytes) -> JsonObject:
    """A provider's error, reshaped as Anthropic's; the status stays what it was."""
    message, _ = error_message(body)
    return {"type": "error", "error": {"type": error_type(status), "message": message}}
