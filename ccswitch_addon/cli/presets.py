"""The built-in catalogue of providers behind `ccswitch presets` and `ccswitch add`.

A preset says, for each app (API) it can serve, where the provider is, in which format, how
its key is sent, which variable holds the key, and a model mapping that survives new model
versions (globs). Base URLs end where the request path is joined without doubling a
version segment (``…/v1`` + ``/v1/chat/completions``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ccswitch_addon.wire.api import Api

__all__ = ["PRESETS", "Preset", "Variant", "find"]


@dataclass(frozen=True)
class Variant:
    """How one preset serves tools of one API."""

    base_url: str
    format: str
    auth: str
    models: Mapping[str, str] = field(default_factory=dict)
    replay_reasoning: bool = False


@dataclass(frozen=True)
class Preset:
    id: str
    name: str
    key_var: str | None  # None: no key (a local server)
    key_url: str  # where to get a key, or what to run
    variants: Mapping[Api, Variant]
    aliases: tuple[str, ...] = ()

    def apis(self) -> str:
        return ", ".join(api.value for api in self.variants)


_CLAUDE_ON_OPENROUTER = {
    "*opus*": "anthropic/claude-opus-4.1",
    "*haiku*": "anthropic/claude-haiku-4.5",
    "*": "anthropic/claude-sonnet-4.5",
}

PRESETS: tuple[Preset, ...] = (
    Preset(
        "anthropic",
        "Anthropic API (a key of its own)",
        "ANTHROPIC_API_KEY",
        "https://console.anthropic.com/settings/keys",
        {
            Api.ANTHROPIC: Variant("https://api.anthropic.com", "anthropic", "x-api-key"),
            Api.OPENAI: Variant(
                "https://api.anthropic.com/v1",
                "openai_chat",
                "bearer",
                {"*mini*": "claude-haiku-4-5", "*": "claude-sonnet-4-5"},
            ),
        },
    ),
    Preset(
        "openai",
        "OpenAI API",
        "OPENAI_API_KEY",
        "https://platform.openai.com/api-keys",
        {
            Api.OPENAI: Variant("https://api.openai.com", "openai_responses", "bearer"),
            Api.ANTHROPIC: Variant(
                "https://api.openai.com/v1",
                "openai_chat",
                "bearer",
                {"*haiku*": "gpt-5-mini", "*": "gpt-5"},
            ),
        },
    ),
    Preset(
        "gemini",
        "Google AI Studio (Gemini API)",
        "GEMINI_API_KEY",
        "https://aistudio.google.com/apikey",
        {
            Api.GEMINI: Variant(
                "https://generativelanguage.googleapis.com", "gemini", "x-goog-api-key"
            ),
        },
    ),
    Preset(
        "openrouter",
        "OpenRouter",
        "OPENROUTER_API_KEY",
        "https://openrouter.ai/settings/keys",
        {
            Api.ANTHROPIC: Variant(
                "https://openrouter.ai/api", "anthropic", "bearer", _CLAUDE_ON_OPENROUTER
            ),
            Api.OPENAI: Variant(
                "https://openrouter.ai/api/v1", "openai_responses", "bearer", {"*": "openai/gpt-5"}
            ),
        },
    ),
    Preset(
        "deepseek",
        "DeepSeek",
        "DEEPSEEK_API_KEY",
        "https://platform.deepseek.com/api_keys",
        {
            Api.ANTHROPIC: Variant(
                "https://api.deepseek.com/anthropic",
                "anthropic",
                "x-api-key",
                {"*": "deepseek-chat"},
            ),
            Api.OPENAI: Variant(
                "https://api.deepseek.com/v1", "openai_chat", "bearer", {"*": "deepseek-chat"}
            ),
        },
    ),
    Preset(
        "moonshot",
        "Moonshot AI (Kimi)",
        "MOONSHOT_API_KEY",
        "https://platform.moonshot.ai/console/api-keys",
        {
            Api.ANTHROPIC: Variant(
                "https://api.moonshot.ai/anthropic",
                "anthropic",
                "bearer",
                {"*": "kimi-k2-turbo-preview"},
            ),
            Api.OPENAI: Variant(
                "https://api.moonshot.ai/v1",
                "openai_chat",
                "bearer",
                {"*": "kimi-k2-turbo-preview"},
                replay_reasoning=True,
            ),
        },
        aliases=("kimi",),
    ),
    Preset(
        "zhipu",
        "Z.ai / Zhipu (GLM)",
        "ZHIPU_API_KEY",
        "https://z.ai/manage-apikey/apikey-list",
        {
            Api.ANTHROPIC: Variant(
                "https://api.z.ai/api/anthropic",
                "anthropic",
                "bearer",
                {"*haiku*": "glm-4.5-air", "*": "glm-4.6"},
            ),
        },
        aliases=("glm", "zai"),
    ),
    Preset(
        "qwen",
        "Alibaba Cloud Model Studio (Qwen, DashScope)",
        "DASHSCOPE_API_KEY",
        "https://modelstudio.console.alibabacloud.com/?tab=playground#/api-key",
        {
            Api.ANTHROPIC: Variant(
                "https://dashscope-intl.aliyuncs.com/apps/anthropic",
                "anthropic",
                "x-api-key",
                {"*": "qwen3-coder-plus"},
            ),
            Api.OPENAI: Variant(
                "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
                "openai_chat",
                "bearer",
                {"*": "qwen3-coder-plus"},
            ),
        },
        aliases=("dashscope",),
    ),
    Preset(
        "groq",
        "Groq",
        "GROQ_API_KEY",
        "https://console.groq.com/keys",
        {
            api: Variant(
                "https://api.groq.com/openai/v1",
                "openai_chat",
                "bearer",
                {"*": "openai/gpt-oss-120b"},
            )
            for api in (Api.ANTHROPIC, Api.OPENAI)
        },
    ),
    Preset(
        "ollama",
        "Ollama on this machine (no key)",
        None,
        "https://ollama.com/download, then `ollama pull qwen3-coder`",
        {
            api: Variant(
                "http://127.0.0.1:11434/v1",
                "openai_chat",
                "passthrough",
                {"*": "qwen3-coder"},
            )
            for api in (Api.ANTHROPIC, Api.OPENAI)
        },
    ),
)


def find(name: str) -> Preset | None:
    """A preset by id or alias, case-insensitively."""
    wanted = name.lower()
    for preset in PRESETS:
        if wanted == preset.id or wanted in preset.aliases:
            return preset
    return None
