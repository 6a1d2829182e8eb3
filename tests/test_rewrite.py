"""Rewriting a request for a provider: path join, model mapping, credentials, masking."""

from __future__ import annotations

import json

import pytest

from ccswitch_addon.core.config import Api, ProviderConfig, parse_config
from ccswitch_addon.core.rewrite import (
    credential_headers,
    join_path,
    map_model,
    mask,
    peek_model,
    probe_request,
    rewrite_body_model,
    rewrite_gemini_path,
)


@pytest.mark.parametrize(
    ("base", "path", "joined"),
    [
        ("/v1", "/v1/chat/completions", "/v1/chat/completions"),
        ("/api", "/v1/messages", "/api/v1/messages"),
        ("", "/v1/messages", "/v1/messages"),
        ("/v1beta", "/v1beta/models/x:generateContent", "/v1beta/models/x:generateContent"),
        ("/api/v1", "/v1/responses", "/api/v1/responses"),
        ("/anthropic", "/v1/messages", "/anthropic/v1/messages"),
        ("/v1", "/v1", "/v1"),
        ("/v1", "/v10/x", "/v1/v10/x"),  # a different version is not the same segment
        ("/v1", "/v1beta/models/x", "/v1/v1beta/models/x"),
        ("/openai/v2", "/v1/chat/completions", "/openai/v2/v1/chat/completions"),
    ],
)
def test_join_path(base: str, path: str, joined: str) -> None:
    assert join_path(base, path) == joined


MODELS = {"claude-sonnet-4-5": "vendor/sonnet", "*": "vendor/default"}


@pytest.mark.parametrize(
    ("models", "requested", "mapped"),
    [
        (MODELS, "claude-sonnet-4-5", "vendor/sonnet"),
        (MODELS, "claude-opus-4-1", "vendor/default"),
        ({"claude-sonnet-4-5": "vendor/sonnet"}, "claude-opus-4-1", None),
        ({"x": "x"}, "x", None),  # mapped to itself: nothing to change
        ({"*": "same"}, "same", None),
        ({}, "anything", None),
        (MODELS, None, None),
    ],
)
def test_map_model(models: dict[str, str], requested: str | None, mapped: str | None) -> None:
    assert map_model(models, requested) == mapped


def test_rewrite_body_model_keeps_everything_else() -> None:
    original = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": True,
        "temperature": 0.7,
        "metadata": {"user_id": "ü-42"},
        "messages": [{"role": "user", "content": "Grüße, 世界 🌍 \u2028"}],
    }
    body = json.dumps(original, ensure_ascii=False).encode()
    new, requested = rewrite_body_model(body, MODELS)
    assert requested == "claude-sonnet-4-5"
    assert new is not None
    assert json.loads(new) == {**original, "model": "vendor/sonnet"}
    assert "Grüße, 世界 🌍".encode() in new  # not escaped to \\u sequences
    assert list(json.loads(new)) == list(original)  # key order kept


def test_rewrite_body_model_leaves_unmapped_bodies_alone() -> None:
    body = b'{"model": "gpt-5", "input": "hi"}'
    assert rewrite_body_model(body, {"other": "x"}) == (None, "gpt-5")
    assert rewrite_body_model(body, {}) == (None, "gpt-5")
    assert rewrite_body_model(b'{"input": "hi"}', MODELS) == (None, None)
    assert rewrite_body_model(b'{"oops', MODELS) == (None, None)
    # What follows the model is not parsed at all: the provider judges the rest as sent.
    assert rewrite_body_model(b'{"model": "x", oops', MODELS) == (
        b'{"model": "vendor/default", oops',
        "x",
    )
    assert rewrite_body_model(b'["model"]', MODELS) == (None, None)
    assert rewrite_body_model(b'{"model": 5}', MODELS) == (None, None)


def test_rewrite_body_model_keeps_every_other_byte() -> None:
    body = (
        b'{ "stream" : true,\n  "model":"claude-x" , '
        b'"messages": [{"content": "caf\\u00e9 \xc3\xa9"}]}'
    )
    new, requested = rewrite_body_model(body, {"claude-x": "vendor/x"})
    assert requested == "claude-x"
    assert new == body.replace(b'"claude-x"', b'"vendor/x"')


def test_peek_model() -> None:
    assert peek_model(b'{"stream":true, "model" : "claude-x", "messages": []}') == "claude-x"
    assert peek_model(b"") is None
    assert peek_model(None) is None
    assert peek_model(b'{"messages": []}') is None


@pytest.mark.parametrize(
    ("path", "result"),
    [
        (
            "/v1beta/models/gemini-2.5-pro:generateContent",
            (
                "/v1beta/models/gemini-2.5-flash:generateContent",
                "gemini-2.5-pro",
                "gemini-2.5-flash",
            ),
        ),
        (
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            (
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                "gemini-2.5-pro",
                "gemini-2.5-flash",
            ),
        ),
        (
            "/v1/models/gemini-2.0-flash:countTokens",
            ("/v1/models/gemini-2.0-flash:countTokens", "gemini-2.0-flash", "gemini-2.0-flash"),
        ),
        ("/v1beta/models", ("/v1beta/models", None, None)),
        ("/v1beta/models/gemini-2.5-pro", ("/v1beta/models/gemini-2.5-pro", None, None)),
    ],
)
def test_rewrite_gemini_path(path: str, result: tuple[str, str | None, str | None]) -> None:
    assert rewrite_gemini_path(path, {"gemini-2.5-pro": "gemini-2.5-flash"}) == result


PROVIDERS = """\
apps:
  mytool:
    hosts: [h.example]
    paths: [/]
    queue: [xkey]
    providers:
      xkey: {base_url: "https://a.example", auth: x-api-key, api_key: "${K}"}
      bearer: {base_url: "https://a.example/v1", auth: bearer, api_key: "${K}"}
      goog: {base_url: "https://a.example", auth: x-goog-api-key, api_key: "${K}"}
      pass: {base_url: "https://a.example", auth: passthrough}
      unset: {base_url: "https://a.example", auth: bearer, api_key: "${NOT_SET}"}
"""


def provider(pid: str) -> ProviderConfig:
    config = parse_config(PROVIDERS, "p.yaml", env={"K": "sk-secret-123456"})
    return config.apps["mytool"].providers[pid]


@pytest.mark.parametrize(
    ("pid", "headers"),
    [
        ("xkey", (("x-api-key", "sk-secret-123456"),)),
        ("bearer", (("authorization", "Bearer sk-secret-123456"),)),
        ("goog", (("x-goog-api-key", "sk-secret-123456"),)),
        ("pass", ()),
        ("unset", ()),
    ],
)
def test_credential_headers(pid: str, headers: tuple[tuple[str, str], ...]) -> None:
    assert credential_headers(provider(pid)) == headers


def test_the_key_is_not_in_a_providers_repr() -> None:
    assert "sk-secret-123456" not in repr(provider("bearer"))


@pytest.mark.parametrize(
    ("secret", "masked"),
    [
        ("sk-or-v1-0123456789abcdef2222", "sk-o…2222"),
        ("123456789012", "1234…9012"),
        ("12345678901", "………"),
        ("", "-"),
        (None, "-"),
    ],
)
def test_mask(secret: str | None, masked: str) -> None:
    assert mask(secret) == masked


def test_probe_request_carries_the_key_and_the_mapped_model() -> None:
    text = """\
apps:
  claude:
    queue: [a]
    providers:
      a:
        base_url: https://a.example/api
        api_key: ${K}
        models: {"*": vendor/model}
        probe: true
"""
    config = parse_config(text, "p.yaml", env={"K": "sk-secret-123456"})
    method, path, headers, body = probe_request(Api.ANTHROPIC, config.apps["claude"].providers["a"])
    assert (method, path) == ("POST", "/api/v1/messages/count_tokens")
    assert ("x-api-key", "sk-secret-123456") in headers
    assert ("anthropic-version", "2023-06-01") in headers
    assert body is not None
    assert json.loads(body)["model"] == "vendor/model"
