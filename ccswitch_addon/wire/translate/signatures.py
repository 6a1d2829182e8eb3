"""Thinking signatures across a failover: recognise the rejection, strip what caused it.

A thinking block's signature is valid only at the provider (and account) that produced it.
After a failover moves a conversation, the next provider may reject the history with a 400;
the engine then strips the thinking and retries once on the same provider, counted neither
as a failure nor as an attempt.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ccswitch_addon.wire.translate.common import dumps

__all__ = ["is_signature_rejection", "strip_thinking"]

# The 400 bodies seen from Anthropic, Bedrock, Vertex and the relays in front of them.
_REJECTION = re.compile(
    r"invalid\W{0,3}signature\W{0,3}in\W{0,3}(?:redacted_)?thinking"
    r"|thinking[^\"]{0,40}signature[^\"]{0,40}(?:invalid|not valid|mismatch|verif)"
    r"|signature[^\"]{0,40}(?:invalid|not valid|mismatch|verification failed)"
    r"|thought[\s_]?signature[^\"]{0,40}(?:invalid|not valid|missing)"
    r"|missing[^\"]{0,20}thought[\s_]?signature",
    re.IGNORECASE,
)


def is_signature_rejection(status: int, body: bytes) -> bool:
    """A provider's 400 that refuses the request because of a thinking signature."""
    if status != 400:
        return False
    return _REJECTION.search(body[:65536].decode("utf-8", "replace")) is not None


def strip_thinking(body: bytes) -> bytes:
    """An Anthropic request without thinking blocks or signatures in its history.

    When thinking is enabled and the last assistant turn ends up starting with a tool call
    (its thinking gone), Anthropic refuses the request; ``thinking`` is then dropped too.
    Returns the body unchanged when there is nothing to strip or it is not a JSON object.
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body
    if not isinstance(document, dict) or not isinstance(document.get("messages"), list):
        return body
    changed = False
    for message in document["messages"]:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        kept: list[Any] = []
        for block in content:
            if isinstance(block, dict) and block.get("type") in ("thinking", "redacted_thinking"):
                changed = True
                continue
            if isinstance(block, dict) and "signature" in block:
                block = {k: v for k, v in block.items() if k != "signature"}
                changed = True
            kept.append(block)
        message["content"] = kept
    last = next(
        (
            m
            for m in reversed(document["messages"])
            if isinstance(m, dict) and m.get("role") == "assistant"
        ),
        None,
    )
    first = (last or {}).get("content") or [{}]
    if (
        isinstance(document.get("thinking"), dict)
        and document["thinking"].get("type") in ("enabled", "adaptive")
        and isinstance(first, list)
        and isinstance(first[0], dict)
        and first[0].get("type") == "tool_use"
    ):
        del document["thinking"]
        changed = True
    return dumps(document).encode() if changed else body
