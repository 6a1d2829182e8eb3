"""The Chat form of a turn, sent to a Gemini (generateContent) provider and read back.

One side of the pivot (see ``pivot``): Claude Code's requests reach a Gemini provider through
the Chat form ``anthropic_chat`` makes. Gemini 3 refuses a replayed ``functionCall`` without
the ``thoughtSignature`` it was answered with; the tools' own formats have no place for one,
so the signatures are kept here by call id (``ThoughtSignatures``) and put back on replay,
with Gemini's documented skip value for a call it never made.
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from ccswitch_addon.wire.translate.chat_form import (
    append_turn,
    chat_answer,
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
    "SKIP_SIGNATURE",
    "GeminiChunks",
    "ThoughtSignatures",
    "answer_to_chat",
    "provider_path",
    "request_from_chat",
    "usage_to_chat",
]

SKIP_SIGNATURE = "skip_thought_signature_validator"

# Gemini finishReason → Chat finish_reason (a call made makes it tool_calls).
FINISH_REASONS: Mapping[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "SPII": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_MODES: Mapping[str, str] = {"auto": "AUTO", "required": "ANY", "none": "NONE"}


class ThoughtSignatures:
    """Gemini's signature of each function call it made, by call id (newest 4096 kept)."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._by_id: OrderedDict[str, str] = OrderedDict()

    def keep(self, call_id: str, signature: str) -> None:
        self._by_id[call_id] = signature
        self._by_id.move_to_end(call_id)
        while len(self._by_id) > self._limit:
            self._by_id.popitem(last=False)

    def get(self, call_id: str) -> str | None:
        return self._by_id.get(call_id)


SIGNATURES = ThoughtSignatures()  # one per process: a conversation's calls come back to any attempt
_CALL_IDS = itertools.count(1)
_RUN = os.urandom(3).hex()  # ids made up here stay unique across restarts


def _new_call_id(response_id: Any, index: int) -> str:
    """An id for a call Gemini gave none: from its response's id, else unique to this run."""
    if isinstance(response_id, str) and response_id:
        return f"call_{response_id}_{index}"
    return f"call_{_RUN}_{next(_CALL_IDS)}"


def provider_path(model: Any, stream: bool) -> str:
    name = str(model or "gemini")
    if stream:
        return f"/v1beta/models/{name}:streamGenerateContent?alt=sse"
    return f"/v1beta/models/{name}:generateContent"


# --- request ------------------------------------------------------------------------------


def _parts(content: Any) -> list[JsonObject]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[JsonObject] = []
    for part in content or []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and part.get("text"):
            parts.append({"text": part["text"]})
        elif part.get("type") in ("image_url", "file"):
            url = (
                (part.get("image_url") or {}).get("url", "")
                if part["type"] == "image_url"
                else (part.get("file") or {}).get("file_data", "")
            )
            inline = data_url(url)
            if inline is not None:
                parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
            elif url:
                parts.append({"fileData": {"fileUri": url}})
    return parts


def _call_part(call: JsonObject, signatures: ThoughtSignatures) -> JsonObject:
    function = call.get("function") or {}
    call_id = call.get("id") or ""
    part: JsonObject = {
        "functionCall": {"name": function.get("name", ""), "args": history_arguments(function)}
    }
    if call_id:
        part["functionCall"]["id"] = call_id
    part["thoughtSignature"] = signatures.get(call_id) or SKIP_SIGNATURE
    return part


def request_from_chat(chat: JsonObject, signatures: ThoughtSignatures = SIGNATURES) -> JsonObject:
    """A Chat Completions request as a Gemini generateContent request (the model goes in the
    path: ``provider_path``)."""
    system: list[str] = []
    contents: list[JsonObject] = []
    names: dict[str, str] = {}  # call id → function name, for the results
    for message in chat.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(text_of(message.get("content")))
        elif role == "user":
            append_turn(contents, "user", "parts", _parts(message.get("content")))
        elif role == "assistant":
            parts = _parts(message.get("content"))
            for call in message.get("tool_calls") or []:
                names[call.get("id", "")] = (call.get("function") or {}).get("name", "")
                parts.append(_call_part(call, signatures))
            append_turn(contents, "model", "parts", parts)
        elif role == "tool":
            call_id = message.get("tool_call_id", "")
            text, failed = tool_error(text_of(message.get("content")))
            response = {"error": text} if failed else {"output": text}
            result = {"name": names.get(call_id, ""), "response": response}
            if call_id:
                result["id"] = call_id
            append_turn(contents, "user", "parts", [{"functionResponse": result}])
    body: JsonObject = {"contents": contents}
    if any(system):
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(s for s in system if s)}]}
    config: JsonObject = {}
    limit = chat.get("max_completion_tokens") or chat.get("max_tokens")
    if limit:
        config["maxOutputTokens"] = limit
    for chat_key, gemini_key in (("temperature", "temperature"), ("top_p", "topP")):
        if chat.get(chat_key) is not None:
            config[gemini_key] = chat[chat_key]
    stop = chat.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else stop
    fmt = chat.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    if chat.get("reasoning_effort"):  # the thoughts come back as the tool's thinking
        config["thinkingConfig"] = {"includeThoughts": True}
    if config:
        body["generationConfig"] = config
    declarations = []
    for tool in chat.get("tools") or []:
        function = tool.get("function") or {}
        declaration: JsonObject = {
            "name": function.get("name", ""),
            "parametersJsonSchema": function.get("parameters") or {"type": "object"},
        }
        if function.get("description"):
            declaration["description"] = function["description"]
        declarations.append(declaration)
    if declarations:
        body["tools"] = [{"functionDeclarations": declarations}]
        choice = chat.get("tool_choice")
        if isinstance(choice, str) and choice in _MODES:
            body["toolConfig"] = {"functionCallingConfig": {"mode": _MODES[choice]}}
        elif isinstance(choice, dict) and choice.get("type") == "function":
            name = (choice.get("function") or {}).get("name", "")
            calling = {"mode": "ANY", "allowedFunctionNames": [name]}
            body["toolConfig"] = {"functionCallingConfig": calling}
    return body


# --- answers ------------------------------------------------------------------------------


def usage_to_chat(metadata: Any) -> JsonObject:
    metadata = metadata if isinstance(metadata, dict) else {}
    prompt = metadata.get("promptTokenCount") or 0
    thoughts = metadata.get("thoughtsTokenCount") or 0
    completion = (metadata.get("candidatesTokenCount") or 0) + thoughts
    cached = metadata.get("cachedContentTokenCount") or 0
    return chat_usage(
        prompt, completion, cached, completion_tokens_details={"reasoning_tokens": thoughts}
    )


def finish_reason(reason: Any, calls: bool) -> str:
    if calls and reason in ("STOP", None):
        return "tool_calls"
    return FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"


def _call(part: JsonObject, signatures: ThoughtSignatures, made_up: str) -> JsonObject:
    """A functionCall part as a Chat tool call; a call without an id gets ``made_up``."""
    call = part["functionCall"]
    call_id = call.get("id") or made_up
    if isinstance(part.get("thoughtSignature"), str):
        signatures.keep(call_id, part["thoughtSignature"])
    function = {"name": call.get("name", ""), "arguments": dumps(call.get("args") or {})}
    return {"id": call_id, "type": "function", "function": function}


def answer_to_chat(answer: JsonObject, signatures: ThoughtSignatures = SIGNATURES) -> JsonObject:
    """A generateContent answer as a Chat Completions answer."""
    candidates = answer.get("candidates") or []
    candidate = candidates[0] if candidates else {}
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[JsonObject] = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if isinstance(part.get("functionCall"), dict):
            made_up = _new_call_id(answer.get("responseId"), len(calls))
            calls.append(_call(part, signatures, made_up))
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else text).append(part["text"])
    reason = candidate.get("finishReason")
    if not candidates and (answer.get("promptFeedback") or {}).get("blockReason"):
        reason = "SAFETY"
    return chat_answer(
        answer.get("responseId", ""),
        answer.get("modelVersion", ""),
        text,
        thoughts,
        calls,
        finish_reason(reason, bool(calls)),
        usage_to_chat(answer.get("usageMetadata")),
    )


class GeminiChunks:
    """A streamGenerateContent stream, chunk by chunk, as the Chat chunks it amounts to.

    Gemini sends each function call whole, and no end marker: the finishReason chunk is the
    last, and the end of the stream after it ends the answer.
    """

    def __init__(self, signatures: ThoughtSignatures = SIGNATURES) -> None:
        self._signatures = signatures
        self._calls = 0
        self._started = False

    def chunks(self, event: SseEvent) -> list[JsonObject | str]:
        data = event_object(event)
        if data is None:
            return []
        if data.get("error"):
            return [{"error": data["error"]}]
        meta = {"id": data.get("responseId", ""), "model": data.get("modelVersion", "")}
        out: list[JsonObject | str] = []
        if not self._started:
            self._started = True
            out.append({**meta, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        if data.get("usageMetadata"):
            out.append({**meta, "choices": [], "usage": usage_to_chat(data["usageMetadata"])})
        candidates = data.get("candidates") or []
        candidate = candidates[0] if candidates else {}
        for part in (candidate.get("content") or {}).get("parts") or []:
            delta: JsonObject = {}
            if isinstance(part.get("functionCall"), dict):
                made_up = _new_call_id(data.get("responseId"), self._calls)
                call = {**_call(part, self._signatures, made_up), "index": self._calls}
                self._calls += 1
                delta = {"tool_calls": [call]}
            elif isinstance(part.get("text"), str) and part["text"]:
                delta = {"reasoning_content" if part.get("thought") else "content": part["text"]}
            if delta:
                out.append({**meta, "choices": [{"index": 0, "delta": delta}]})
        reason = candidate.get("finishReason")
        if not candidates and (data.get("promptFeedback") or {}).get("blockReason"):
            reason = "SAFETY"
        if reason:
            finish = finish_reason(reason, self._calls > 0)
            out.append({**meta, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        return out
