"""A local answer to Anthropic's ``/v1/messages/count_tokens`` for a provider that has none.

An estimate, not a tokenizer: about four characters per token for ASCII text, one token per
other character (CJK text runs close to that), a fixed cost per image and per message.
Claude Code uses the count to decide when to compact; an estimate on the high side is safe.
"""

from __future__ import annotations

import math
from typing import Any

from ccswitch_addon.wire.translate.common import JsonObject, dumps

__all__ = ["estimate_tokens", "text_tokens"]

_IMAGE_TOKENS = 1600  # Anthropic's cost of a large image
_MESSAGE_TOKENS = 4  # role and framing per message


def text_tokens(text: str) -> int:
    ascii_chars = sum(1 for c in text if c < "\x80")
    return math.ceil(ascii_chars / 4) + (len(text) - ascii_chars)


def _value_tokens(value: Any) -> int:
    if isinstance(value, str):
        return text_tokens(value)
    if isinstance(value, list):
        return sum(_value_tokens(v) for v in value)
    if isinstance(value, dict):
        kind = value.get("type")
        if kind in ("image", "document"):
            return _IMAGE_TOKENS
        if kind == "text":
            return text_tokens(str(value.get("text", "")))
        if kind == "thinking":
            return text_tokens(str(value.get("thinking", "")))
        if kind == "tool_use":
            return text_tokens(str(value.get("name", ""))) + text_tokens(dumps(value.get("input")))
        if kind == "tool_result":
            return _value_tokens(value.get("content", ""))
        return text_tokens(dumps(value))
    return 0


def estimate_tokens(body: JsonObject) -> int:
    """Input tokens of an Anthropic request body (``count_tokens`` takes the same shape)."""
    total = _value_tokens(body.get("system") or "")
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            total += _MESSAGE_TOKENS + _value_tokens(message.get("content", ""))
    for tool in body.get("tools") or []:
        total += text_tokens(dumps(tool))
    return max(1, total)
