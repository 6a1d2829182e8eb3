"""models: keys as names and globs (core/modelmap.py), as the rewrite applies them."""

from __future__ import annotations

import json

import pytest

from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.modelmap import is_glob, lookup
from ccswitch_addon.core.rewrite import map_model, rewrite_body_model, rewrite_gemini_path

MODELS = {
    "*": "fallback",
    "claude-*-haiku-*": "small",
    "*opus*": "big",
    "claude-opus-4-1": "exact-old-opus",
    "*sonnet*": "medium",
}


@pytest.mark.parametrize(
    ("requested", "sent"),
    [
        ("claude-opus-4-8", "big"),  # a version the file never named
        ("claude-opus-4-1", "exact-old-opus"),  # an exact name wins over an earlier glob
        ("claude-3-5-haiku-20241022", "small"),
        ("claude-haiku-4-5", "fallback"),  # "claude-*-haiku-*" needs something between
        ("claude-sonnet-4-5", "medium"),
        ("gpt-5", "fallback"),  # "*" only when nothing else matched, though written first
        ("CLAUDE-OPUS-4-8", "fallback"),  # case-sensitive, as model ids are
    ],
)
def test_names_then_globs_in_file_order_then_star(requested: str, sent: str) -> None:
    assert lookup(MODELS, requested) == sent


def test_the_first_matching_glob_in_file_order_wins() -> None:
    assert lookup({"*-4-*": "four", "*opus*": "big"}, "claude-opus-4-8") == "four"
    assert lookup({"*opus*": "big", "*-4-*": "four"}, "claude-opus-4-8") == "big"
    assert lookup({"*opus*": "big"}, "claude-sonnet-4-5") is None
    assert map_model({"*opus*": "big"}, "claude-sonnet-4-5") is None


def test_globs_rewrite_bodies_and_gemini_paths() -> None:
    body = json.dumps({"model": "claude-opus-4-8", "messages": []}).encode()
    rewritten, requested = rewrite_body_model(body, {"*opus*": "anthropic/claude-opus-4.1"})
    assert requested == "claude-opus-4-8"
    assert rewritten is not None
    assert json.loads(rewritten)["model"] == "anthropic/claude-opus-4.1"
    path, requested, sent = rewrite_gemini_path(
        "/v1beta/models/gemini-3.5-pro:generateContent", {"gemini-*-pro": "gemini-3.5-flash"}
    )
    assert (path, requested, sent) == (
        "/v1beta/models/gemini-3.5-flash:generateContent",
        "gemini-3.5-pro",
        "gemini-3.5-flash",
    )


def test_is_glob() -> None:
    assert all(is_glob(key) for key in ("*", "claude-?", "[ab]"))
    assert not is_glob("claude-opus-4-1")


def test_the_shipped_example_maps_new_model_versions() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "providers.yaml"
    config = parse_config(example.read_text(), str(example), env={"OPENROUTER_API_KEY": "k"})
    openrouter = config.apps["claude"].providers["openrouter"]
    assert "opus" in (map_model(openrouter.models, "claude-opus-4-8") or "")
    assert "haiku" in (map_model(openrouter.models, "claude-haiku-4-5") or "")
