"""Gemini CLI (generateContent) served by a Chat Completions provider: request, answer, errors.

The model and whether to stream are in the path (``/v1beta/models/{model}:generateContent``
or ``:streamGenerateContent``), not the body. Gemini CLI's routing classifier asks for JSON
(``responseMimeType: application/json`` with ``responseJsonSchema``): that becomes Chat's
``response_format: json_schema``, so the classifier gets JSON it can parse instead of prose it
retries five times. Calls without an id (Gemini leaves them out) get one, and results are
matched to calls by id, else by name in order. The stream direction is in
``gemini_chat_stream``.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from typing import Any

from ccswitch_addon.wire.translate.chat_form import ERROR_MARK, ask_to_stream
from ccswitch_addon.wire.translate.common import (
    ChatUsage,
    JsonObject,
    UntranslatableRequest,
    dumps,
    error_message,
    parse_arguments,
    split_think,
    token_limit_field,
)

__all__ = [
    "FINISH_REASONS",
    "answer_to_gemini",
    "error_to_gemini",
    "model_of",
    "request_to_chat",
    "usage_metadata",
]

# Chat finish_reason → Gemini finishReason.
FINISH_REASONS: Mapping[str, str] = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "function_call": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
}
# HTTP status → google.rpc status name.
STATUS_NAMES: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MODES: Mapping[str, str] = {"AUTO": "auto", "ANY": "required", "NONE": "none"}
_MODEL = re.compile(r"/models/([^/:?]+):")


def model_of(path: str) -> str:
    match = _MODEL.search(path)
    if match is None:
        raise UntranslatableRequest("the path names no model (/models/{model}:…)")
    return match.group(1)


def _schema(node: Any) -> Any:
    """Gemini's OpenAPI-style schema (``type: OBJECT``) as JSON Schema (``type: object``)."""
    if isinstance(node, dict):
        out = {k: _schema(v) for k, v in node.items()}
        if isinstance(out.get("type"), str):
            out["type"] = out["type"].lower()
        return out
    if isinstance(node, list):
        return [_schema(v) for v in node]
    return node


def _user_parts(parts: list[Any]) -> str | list[JsonObject]:
    chat_parts: list[JsonObject] = []
    for part in parts:
        if isinstance(part.get("text"), str):
            chat_parts.append({"type": "text", "text": part["text"]})
        elif isinstance(part.get("inlineData"), dict):
            data = part["inlineData"]
            url = f"data:{data.get('mimeType', 'image/png')};base64,{data.get('data', '')}"
            if str(data.get("mimeType", "")).startswith("image/"):
                chat_parts.append({"type": "image_url", "image_url": {"url": url}})
            else:
                file = {"filename": "file", "file_data": url}
                chat_parts.append({"type": "file", "file": file})
        elif isinstance(part.get("fileData"), dict):
            url = part["fileData"].get("fileUri", "")
            chat_parts.append({"type": "image_url", "image_url": {"url": url}})
    if all(p["type"] == "text" for p in chat_parts):
        return "".join(p["text"] for p in chat_parts)
    return chat_parts


def _result_text(response: Any) -> str:
    """A functionResponse's response as the tool message's text (Gemini CLI: ``output``)."""
    if isinstance(response, dict):
        if set(response) == {"output"} and isinstance(response["output"], str):
            return str(response["output"])
        if "error" in response:
            error = response["error"]
            return ERROR_MARK + (error if isinstance(error, str) else dumps(error))
    return dumps(response)


class _Builder:
    """Gemini contents → Chat messages, with the ids Chat needs to pair calls and results."""

    def __init__(self) -> None:
        self.messages: list[JsonObject] = []
        self._open: dict[str, deque[str]] = {}  # name → ids of calls not yet answered
        self._made = 0

    def model_turn(self, parts: list[Any]) -> None:
        text: list[str] = []
        calls: list[JsonObject] = []
        for part in parts:
            call = part.get("functionCall")
            if isinstance(call, dict):
                name = call.get("name", "")
                call_id = call.get("id") or f"call_gemini_{self._made}"
                self._made += 1
                self._open.setdefault(name, deque()).append(call_id)
                function = {"name": name, "arguments": dumps(call.get("args") or {})}
                calls.append({"id": call_id, "type": "function", "function": function})
            elif isinstance(part.get("text"), str) and not part.get("thought"):
                text.append(part["text"])
        message: JsonObject = {"role": "assistant", "content": "".join(text) or None}
        if calls:
            message["tool_calls"] = calls
        if text or calls:
            self.messages.append(message)

    def user_turn(self, parts: list[Any]) -> None:
        results = [
            p["functionResponse"] for p in parts if isinstance(p.get("functionResponse"), dict)
        ]
        for result in results:
            name = result.get("name", "")
            waiting = self._open.get(name) or deque()
            call_id = result.get("id") or (waiting[0] if waiting else f"call_{name}")
            if call_id in waiting:
                waiting.remove(call_id)
            text = _result_text(result.get("response"))
            self.messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
        rest = [p for p in parts if not isinstance(p.get("functionResponse"), dict)]
        if rest:
            content = _user_parts(rest)
            if content:
                self.messages.append({"role": "user", "content": content})


def _tools(tools: Any) -> list[JsonObject]:
    out = []
    for tool in tools or []:
        for declaration in tool.get("functionDeclarations") or []:
            schema = declaration.get("parametersJsonSchema")
            if schema is None:
                schema = declaration.get("parameters") or {"type": "object"}
            schema = _schema(schema)
            function: JsonObject = {"name": declaration.get("name", ""), "parameters": schema}
            if declaration.get("description"):
                function["description"] = declaration["description"]
            out.append({"type": "function", "function": function})
    return out  # googleSearch, codeExecution, …: Google's own, no Chat form


def _response_format(config: JsonObject) -> JsonObject | None:
    if config.get("responseMimeType") != "application/json":
        return None
    schema = config.get("responseJsonSchema")
    if schema is None:
        schema = config.get("responseSchema")
    if schema is None:
        return {"type": "json_object"}
    # Gemini CLI's classifier writes OpenAPI's upper-case types even in responseJsonSchema
    schema = _schema(schema)
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


def request_to_chat(body: JsonObject, path: str) -> JsonObject:
    """A generateContent request (model and streaming from ``path``) as a Chat request."""
    if not isinstance(body.get("contents"), list):
        raise UntranslatableRequest("the request has no contents list")
    model = model_of(path)
    builder = _Builder()
    system = body.get("systemInstruction") or body.get("system_instruction")
    if isinstance(system, dict):
        text = "".join(p.get("text", "") for p in system.get("parts") or [])
        if text:
            builder.messages.append({"role": "system", "content": text})
    for content in body["contents"]:
        parts = content.get("parts") or []
        if content.get("role") == "model":
            builder.model_turn(parts)
        else:
            builder.user_turn(parts)
    chat: JsonObject = {"model": model, "messages": builder.messages}
    config = body.get("generationConfig") or {}
    if config.get("maxOutputTokens"):
        chat[token_limit_field(model)] = config["maxOutputTokens"]
    for gemini_key, chat_key in (("temperature", "temperature"), ("topP", "top_p")):
        if config.get(gemini_key) is not None:
            chat[chat_key] = config[gemini_key]
    if config.get("stopSequences"):
        chat["stop"] = config["stopSequences"]
    response_format = _response_format(config)
    if response_format is not None:
        chat["response_format"] = response_format
    tools = _tools(body.get("tools"))
    if tools:
        chat["tools"] = tools
        calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        allowed = calling.get("allowedFunctionNames") or []
        if calling.get("mode") == "ANY" and len(allowed) == 1:
            chat["tool_choice"] = {"type": "function", "function": {"name": allowed[0]}}
        elif calling.get("mode") in _MODES:
            chat["tool_choice"] = _MODES[calling["mode"]]
    if ":streamGenerateContent" in path:
        ask_to_stream(chat)
    return chat


# --- answer -------------------------------------------------------------------------------


def usage_metadata(usage: ChatUsage) -> JsonObject:
    """Gemini counts thoughts apart from the candidates; Chat's completion includes them."""
    metadata = {
        "promptTokenCount": usage.prompt,
        "candidatesTokenCount": max(0, usage.completion - usage.reasoning),
        "totalTokenCount": usage.prompt + usage.completion,
    }
    if usage.cache_read:
        metadata["cachedContentTokenCount"] = usage.cache_read
    if usage.reasoning:
        metadata["thoughtsTokenCount"] = usage.reasoning
    return metadata


def finish_reason(reason: Any) -> str:
    return FINISH_REASONS.get(reason, "STOP") if isinstance(reason, str) else "STOP"


def call_part(call_id: str, name: str, arguments: str | None) -> JsonObject:
    """A Chat tool call as a functionCall part; arguments Gemini CLI cannot parse raise."""
    args = parse_arguments(arguments, name)
    return {"functionCall": {"id": call_id, "name": name, "args": args}}


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)


def unfenced(text: str) -> str:
    """JSON a model wrapped in a code fence although asked for JSON alone: the JSON."""
    match = _FENCE.match(text)
    return match.group(1) if match else text


def answer_to_gemini(answer: JsonObject, *, json_mode: bool = False) -> JsonObject:
    """A Chat Completions answer as a generateContent answer; with ``json_mode`` the text is
    freed of a code fence (Gemini CLI's classifier parses it as JSON and retries otherwise)."""
    choices = answer.get("choices") or []
    choice = choices[0] if choices else {}
    message = choice.get("message") or {}
    content = message.get("content")
    thinking, text = split_think(content if isinstance(content, str) else "")
    reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
    parts: list[JsonObject] = []
    if (reasoning if isinstance(reasoning, str) else "") + thinking:
        parts.append({"text": f"{reasoning or ''}{thinking}", "thought": True})
    if text:
        parts.append({"text": unfenced(text) if json_mode else text})
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        call_id = call.get("id") or f"call_{answer.get('id', 'gemini')}_{index}"
        parts.append(call_part(call_id, function.get("name", ""), function.get("arguments")))
    candidate = {
        "content": {"role": "model", "parts": parts or [{"text": ""}]},
        "finishReason": finish_reason(choice.get("finish_reason")),
        "index": 0,
    }
    return {
        "candidates": [candidate],
        "usageMetadata": usage_metadata(ChatUsage.of(answer.get("usage"))),
        "modelVersion": answer.get("model", ""),
        "responseId": answer.get("id", ""),
    }


def error_to_gemini(status: int, body: bytes) -> JsonObject:
    """A provider's error in Google's ``{"error": {code, message, status}}`` shape."""
    message, _ = error_message(body)
    name = STATUS_NAMES.get(status) or ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    return {"error": {"code": status, "message": message, "status": name}}
