"""The four wire formats a tool or a provider speaks, and which pairs can be translated."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from ccswitch_addon.wire.api import Api

__all__ = [
    "FORMAT_API",
    "PROVIDER_PATHS",
    "SUPPORTED_PAIRS",
    "Format",
    "provider_formats",
    "tool_format",
]


class Format(enum.StrEnum):
    ANTHROPIC = "anthropic"  # Messages: POST /v1/messages
    OPENAI_CHAT = "openai_chat"  # Chat Completions: POST /v1/chat/completions
    OPENAI_RESPONSES = "openai_responses"  # Responses: POST /v1/responses
    GEMINI = "gemini"  # generateContent / streamGenerateContent


# (tool format, provider format) pairs with a translator; identity is always allowed.
SUPPORTED_PAIRS: frozenset[tuple[Format, Format]] = frozenset(
    {
        (Format.ANTHROPIC, Format.OPENAI_CHAT),
        (Format.ANTHROPIC, Format.OPENAI_RESPONSES),
        (Format.ANTHROPIC, Format.GEMINI),
        (Format.OPENAI_RESPONSES, Format.OPENAI_CHAT),
        (Format.OPENAI_RESPONSES, Format.ANTHROPIC),
        (Format.GEMINI, Format.OPENAI_CHAT),
        (Format.GEMINI, Format.ANTHROPIC),
    }
)

# The API family of each format: its error shape, default auth and probe.
FORMAT_API: Mapping[Format, Api] = {
    Format.ANTHROPIC: Api.ANTHROPIC,
    Format.OPENAI_CHAT: Api.OPENAI,
    Format.OPENAI_RESPONSES: Api.OPENAI,
    Format.GEMINI: Api.GEMINI,
}

# Where a translated request goes on the provider (joined to base_url by the usual rule).
PROVIDER_PATHS: Mapping[Format, str] = {
    Format.OPENAI_CHAT: "/v1/chat/completions",
    Format.OPENAI_RESPONSES: "/v1/responses",
    Format.ANTHROPIC: "/v1/messages",
}


def tool_format(api: Api, path: str) -> Format:
    """The format a tool's request is in, from its app's API and the request path.

    An OpenAI app sends Responses on ``…/responses`` and Chat Completions (or the legacy
    completions) anywhere else.
    """
    if api is Api.ANTHROPIC:
        return Format.ANTHROPIC
    if api is Api.GEMINI:
        return Format.GEMINI
    route = path.split("?", 1)[0].rstrip("/")
    return Format.OPENAI_RESPONSES if route.endswith("/responses") else Format.OPENAI_CHAT


def provider_formats(api: Api) -> tuple[Format, ...]:
    """Every provider format an app of this API can use, in the enum's order."""
    tools = {f for f, family in FORMAT_API.items() if family is api}
    usable = tools | {provider for tool, provider in SUPPORTED_PAIRS if tool in tools}
    return tuple(f for f in Format if f in usable)
