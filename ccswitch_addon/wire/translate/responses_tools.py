"""Codex's tools as a Chat Completions provider is offered them, and its calls back.

Codex groups tools in namespaces (``functions``, ``clock``, MCP servers) and declares some as
custom (freeform: the input is raw text, e.g. JavaScript for ``exec`` or a patch): a Chat
server takes one flat list of functions, so a namespace member is offered as
``namespace__name`` (at most 64 ``[A-Za-z0-9_-]``, shortened with a hash) and a custom tool as
a function of one string ``input`` whose grammar the description carries. ``ResponsesTools``
remembers what it flattened, so a call comes back with the name, ``namespace`` and item type
(``function_call`` or ``custom_tool_call`` with the raw ``input``) Codex declared.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ccswitch_addon.wire.translate.common import (
    BadAnswer,
    JsonObject,
    ToolNames,
    dumps,
    parse_arguments,
)

__all__ = ["ResponsesTools", "chat_tool_choice", "chat_tools"]

logger = logging.getLogger(__name__)

_WARNED: set[Any] = set()  # tool kinds already logged as having no Chat form


class ResponsesTools:
    """The names of one request's tools: flattened for Chat, and which ones are custom.

    Codex groups tools in namespaces (``functions``, ``clock``, MCP servers); a Chat server
    takes one flat list of names of at most 64 ``[A-Za-z0-9_-]``, so a member is offered as
    ``namespace__name`` (shortened with a hash when too long) and its calls come back with
    the name and ``namespace`` they had.
    """

    def __init__(self) -> None:
        self.names = ToolNames()
        self.custom: set[str] = set()  # Chat names of custom (freeform) tools
        self._namespaced: dict[str, tuple[str, str]] = {}  # Chat name → (namespace, name)

    def chat_name(self, name: str, namespace: str | None = None) -> str:
        if not namespace:
            return self.names.short(name)
        flat = self.names.short(f"{namespace}__{name}")
        self._namespaced[flat] = (namespace, name)
        return flat

    def original(self, chat_name: str) -> tuple[str | None, str]:
        """(namespace or None, name) of a tool as Codex declared it."""
        if chat_name in self._namespaced:
            return self._namespaced[chat_name]
        return None, self.names.restore(chat_name)

    def call_item(self, call_id: str, chat_name: str, arguments: str, item_id: str) -> JsonObject:
        """A Chat tool call as the Responses output item Codex runs."""
        namespace, name = self.original(chat_name)
        where = {"namespace": namespace} if namespace else {}
        if chat_name in self.custom:
            return {
                "id": item_id,
                "type": "custom_tool_call",
                "status": "completed",
                "call_id": call_id,
                "name": name,
                **where,
                "input": _custom_input(arguments, name),
            }
        try:
            valid = isinstance(json.loads(arguments or "{}"), dict)
        except ValueError:
            valid = False
        text = arguments if valid and arguments else dumps(parse_arguments(arguments, name))
        return {
            "id": item_id,
            "type": "function_call",
            "status": "completed",
            "call_id": call_id,
            "name": name,
            **where,
            "arguments": text,
        }


def _custom_input(arguments: str, name: str) -> str:
    """A custom tool's raw input from the one-string function it was offered as; a model that
    sent the raw text itself, not wrapped in JSON, is taken at its word."""
    try:
        value = parse_arguments(arguments, name).get("input", "")
    except BadAnswer:
        return arguments
    return value if isinstance(value, str) else dumps(value)


def _function(tool: JsonObject, registry: ResponsesTools, namespace: str | None) -> JsonObject:
    name = tool.get("name", "")
    function: JsonObject = {
        "name": registry.chat_name(name, namespace),
        "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    return function


def _custom(tool: JsonObject, registry: ResponsesTools, namespace: str | None) -> JsonObject:
    """A freeform tool as a function of one string, its grammar told in the description."""
    chat_name = registry.chat_name(tool.get("name", ""), namespace)
    registry.custom.add(chat_name)
    grammar = tool.get("format")
    description = tool.get("description", "")
    if isinstance(grammar, dict) and grammar.get("definition"):
        description += (
            f"\n\nThe input follows this {grammar.get('syntax', '')} grammar:\n"
            f"{grammar['definition']}"
        )
    return {
        "name": chat_name,
        "description": description.strip(),
        "parameters": {
            "type": "object",
            "properties": {"input": {"type": "string", "description": "the raw input"}},
            "required": ["input"],
        },
    }


def chat_tools(
    tools: Any, registry: ResponsesTools, namespace: str | None = None
) -> list[JsonObject]:
    out: list[JsonObject] = []
    for tool in tools or []:
        if not isinstance(tool, dict):
            continue
        kind = tool.get("type")
        if kind == "function":
            out.append({"type": "function", "function": _function(tool, registry, namespace)})
        elif kind == "custom":
            out.append({"type": "function", "function": _custom(tool, registry, namespace)})
        elif kind == "namespace" and namespace is None:
            out += chat_tools(tool.get("tools"), registry, str(tool.get("name") or "tools"))
        elif kind not in _WARNED:  # hosted tools (web_search, file_search, …) run at OpenAI
            _WARNED.add(kind)
            logger.warning(
                "Codex's %s tool has no Chat Completions form; Chat providers are not offered it",
                kind,
            )
    unique = {tool["function"]["name"]: tool for tool in out}  # history repeats declarations
    return list(unique.values())


def chat_tool_choice(choice: Any, tools: ResponsesTools) -> Any:
    if isinstance(choice, str):
        return choice if choice in ("auto", "none", "required") else None
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
        name = tools.chat_name(choice.get("name", ""), choice.get("namespace"))
        return {"type": "function", "function": {"name": name}}
    return None
