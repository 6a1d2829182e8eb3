"""The request one attempt sends: URL, model, credentials, headers, and what may be shown."""

from __future__ import annotations

import json

import pytest

from ccswitch_addon.core.config import parse_config
from ccswitch_addon.upstream.outgoing import Outgoing, build, shown_headers

SECRET = "sk-backup-secret-0123456789"
TITLE_SECRET = "org-secret-title-987654321"
CONFIG = parse_config(
    """\
apps:
  claude:
    queue: [open, keyed, relay, xkey]
    providers:
      open: {base_url: "http://127.0.0.1:9001", auth: passthrough}
      keyed:
        base_url: https://backup.example/api
        auth: bearer
        api_key: ${K}
        models: {claude-sonnet-4-5: vendor/sonnet}
        headers: {X-Title: ccswitch, X-Org: "${ORG}"}
      relay: {base_url: "https://relay.example:8443/v1", auth: x-api-key, api_key: "${K}"}
      xkey: {base_url: "https://x.example", api_key: "${K}", models: {"*": fallback}}
      literal:
        base_url: http://127.0.0.1:9002
        auth: passthrough
        headers: {Authorization: "Bearer literal-secret-0000000"}
  codex:
    queue: [deepseek]
    providers:
      deepseek: {base_url: "https://api.deepseek.com/v1", api_key: "${K}"}
  gemini:
    queue: [g1, gopen]
    providers:
      g1:
        base_url: http://127.0.0.1:9004
        api_key: ${K}
        models: {gemini-2.5-pro: gemini-2.5-flash}
      gopen: {base_url: "http://127.0.0.1:9005", auth: passthrough}
""",
    "p.yaml",
    env={"K": SECRET, "ORG": TITLE_SECRET},
)
CLAUDE, CODEX, GEMINI = (CONFIG.apps[name] for name in ("claude", "codex", "gemini"))
BODY = json.dumps(
    {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "héllo"}]}
).encode()
CLIENT_CREDENTIALS = [
    (b"x-api-key", b"client-key-1"),
    (b"Authorization", b"Bearer client-key-2"),
    (b"x-goog-api-key", b"client-key-3"),
]


def headers_of(out: Outgoing) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in out.headers:
        found.setdefault(name.lower(), []).append(value)
    return found


def claude(pid: str, path: str = "/v1/messages", headers: list[tuple[bytes, bytes]] | None = None):
    given = [(b"content-type", b"application/json"), *CLIENT_CREDENTIALS, *(headers or [])]
    return build(CLAUDE, CLAUDE.providers[pid], "POST", path, given, BODY)


def test_passthrough_keeps_the_clients_credentials_path_and_body() -> None:
    out = claude("open", "/v1/messages?beta=true")
    assert out.url == "http://127.0.0.1:9001/v1/messages?beta=true"
    sent = headers_of(out)
    assert sent["x-api-key"] == ["client-key-1"]
    assert sent["authorization"] == ["Bearer client-key-2"]
    assert out.body is BODY  # no mapping: the body is not parsed, let alone rebuilt
    assert (out.model_requested, out.model_sent) == ("claude-sonnet-4-5", "claude-sonnet-4-5")


def test_a_keyed_provider_gets_its_own_key_only() -> None:
    out = claude("keyed")
    sent = headers_of(out)
    assert sent["authorization"] == [f"Bearer {SECRET}"]
    assert "x-api-key" not in sent
    assert "x-goog-api-key" not in sent
    assert not any("client-key" in value for _, value in out.headers)


@pytest.mark.parametrize("pid", ["relay", "xkey"])
def test_an_x_api_key_provider_replaces_the_clients_key(pid: str) -> None:
    sent = headers_of(claude(pid))
    assert sent["x-api-key"] == [SECRET]
    assert "authorization" not in sent
    assert "x-goog-api-key" not in sent


def test_the_key_query_parameter_goes_for_a_keyed_provider_only() -> None:
    keyed = claude("keyed", "/v1/messages?key=client-query&beta=true")
    assert keyed.url == "https://backup.example/api/v1/messages?beta=true"
    only_key = claude("keyed", "/v1/messages?key=client-query")
    assert only_key.url == "https://backup.example/api/v1/messages"
    kept = claude("open", "/v1/messages?key=client-query")
    assert kept.url.endswith("?key=client-query")  # passthrough: the tool's own, as it sent it


def test_the_model_is_mapped_in_the_body_and_the_rest_kept() -> None:
    out = claude("keyed")
    body = json.loads(out.body or b"")
    assert body["model"] == "vendor/sonnet"
    assert body["messages"][0]["content"] == "héllo"
    assert (out.model_requested, out.model_sent) == ("claude-sonnet-4-5", "vendor/sonnet")


def test_a_wildcard_mapping_takes_any_other_model() -> None:
    out = claude("xkey")
    assert json.loads(out.body or b"")["model"] == "fallback"
    assert out.model_sent == "fallback"


def test_the_version_segment_is_not_doubled() -> None:
    body = b'{"model": "gpt-5"}'
    out = build(CODEX, CODEX.providers["deepseek"], "POST", "/v1/chat/completions", [], body)
    assert out.url == "https://api.deepseek.com/v1/chat/completions"
    relay = claude("relay")
    assert relay.url == "https://relay.example:8443/v1/messages"  # a port other than 443 kept


def test_gemini_model_in_the_path_and_key_query_removed() -> None:
    path = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?key=client-key&alt=sse"
    given = [(b"x-goog-api-key", b"client-key")]
    out = build(GEMINI, GEMINI.providers["g1"], "POST", path, given, b'{"contents": []}')
    assert out.url == (
        "http://127.0.0.1:9004/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    )
    assert headers_of(out)["x-goog-api-key"] == [SECRET]
    assert (out.model_requested, out.model_sent) == ("gemini-2.5-pro", "gemini-2.5-flash")
    assert out.body == b'{"contents": []}'


def test_gemini_passthrough_keeps_its_key_query() -> None:
    path = "/v1beta/models/gemini-2.5-pro:generateContent?key=client-key"
    out = build(GEMINI, GEMINI.providers["gopen"], "POST", path, [], b"{}")
    assert out.url.endswith("/v1beta/models/gemini-2.5-pro:generateContent?key=client-key")


def test_extra_headers_replace_the_clients_of_the_same_name() -> None:
    out = claude("keyed", headers=[(b"x-title", b"from-the-tool"), (b"accept", b"*/*")])
    sent = headers_of(out)
    assert sent["x-title"] == ["ccswitch"]
    assert sent["x-org"] == [TITLE_SECRET]
    assert sent["accept"] == ["*/*"]


def test_hop_by_hop_framing_and_own_headers_are_dropped() -> None:
    dropped = [
        (b"Host", b"api.anthropic.com"),
        (b"Connection", b"keep-alive"),
        (b"keep-alive", b"timeout=5"),
        (b"proxy-connection", b"keep-alive"),
        (b"Proxy-Authorization", b"Basic dXNlcjpwYXNz"),
        (b"te", b"trailers"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"content-length", b"12"),
        (b"accept-encoding", b"br, zstd"),
        (b"expect", b"100-continue"),
        (b"http2-settings", b"AAMAAABkAAQAoAAAAAIAAAAA"),
        (b"x-ccswitch-relay", b"token"),
        (b"X-Ccswitch-Job", b"job"),
    ]
    out = claude("open", headers=dropped)
    sent = headers_of(out)
    for name, _ in dropped:
        if name.lower() != b"accept-encoding":
            assert name.decode().lower() not in sent, name
    # The client library decodes the body, so it offers only what it can decode.
    assert sent["accept-encoding"] == ["gzip, deflate"]
    assert sent["content-type"] == ["application/json"]


def test_shown_headers_mask_the_providers_key_and_secret_headers() -> None:
    out = claude("keyed")
    shown = dict(shown_headers(out))
    assert shown["authorization"] == "Bearer sk-b…6789"
    assert shown["X-Org"] == "org-…4321"
    assert shown["X-Title"] == "ccswitch"  # not from ${VAR}: shown as it is
    assert all(SECRET not in v and TITLE_SECRET not in v for v in shown.values())
    relay = dict(shown_headers(claude("relay")))
    assert relay["x-api-key"] == "sk-b…6789"


def test_shown_headers_mask_the_tools_own_key_passed_on() -> None:
    out = claude("open")
    shown = shown_headers(out)
    values = [value for _, value in shown]
    assert not any("client-key" in value for value in values)
    assert ("Authorization", "Bearer clie…ey-2") in shown
    assert ("x-api-key", "clie…ey-1") in shown


def test_shown_headers_keep_the_order_and_the_rest() -> None:
    out = claude("keyed", headers=[(b"anthropic-version", b"2023-06-01")])
    shown = shown_headers(out)
    assert [name for name, _ in shown] == [name for name, _ in out.headers]
    assert ("anthropic-version", "2023-06-01") in shown


def test_a_credential_written_into_extra_headers_is_masked_too() -> None:
    out = claude("literal")
    assert headers_of(out)["authorization"] == ["Bearer literal-secret-0000000"]
    shown = dict(shown_headers(out))
    assert shown["Authorization"] == "Bearer lite…0000"
