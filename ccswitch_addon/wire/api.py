"""The wire formats the tools speak."""

from __future__ import annotations

import enum

__all__ = ["Api"]


class Api(enum.StrEnum):
    """The wire format an app speaks: where the model sits and what an error looks like."""

    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    GEMINI = "gemini"
