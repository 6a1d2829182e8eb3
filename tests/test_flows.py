"""What flows.py does to mitmproxy objects: stream or buffer, masking, loopback, restoring."""

from __future__ import annotations

import json

import pytest
from mitmproxy import http

from ccswitch_addon.core.config import Api, parse_config
from ccswitch_addon.flows import (
    Original,
    edit_headers,
    is_loopback,
    label,
    mask_key,
    rewrite_request,
    should_stream,
    watch_body,
)

CONFIG = parse_config(
    """\
apps:
  claude:
    queue: [keyed]
    providers:
      keyed: {base_url: "https://b.example/api", auth: bearer, api_key: "${K}"}
      open: {base_url: "http://127.0.0.1:9", auth: passthrough}
""",
    "p.yaml",
    env={"K": "sk-secret-0123456789"},
)
APP = CONFIG.apps["claude"]


def response(headers: dict[str, str], body: bytes = b"") -> http.Response:
    made = http.Response.make(200, body)
    del made.headers["content-length"]  # make() sets it from the body; use the given one
    for name, value in headers.items():
        made.headers[name] = value
    return made


@pytest.mark.parametrize(
    ("headers", "streams"),
    [
        ({"content-type": "text/event-stream"}, True),
        ({"content-type": "text/event-stream; charset=utf-8", "content-length": "10"}, True),
        ({"content-type": "application/json", "content-length": "2048"}, False),
        ({"content-type": "application/json", "content-length": str(2 * 1024 * 1024)}, True),
        ({"content-type": "application/json"}, True),  # unknown length: relay as it comes
        ({"content-type": "application/json", "content-length": "bogus"}, True),
    ],
)
def test_what_streams(headers: dict[str, str], streams: bool) -> None:
    assert should_stream(response(headers)) is streams


def test_watch_body_reads_usage_of_a_buffered_answer() -> None:
    body = json.dumps(
        {
            "type": "message",
            "content": [{"type": "text", "text": "hi"}],
            "usage": {"input_tokens": 5, "output_tokens": 2},
        }
    ).encode()
    result = watch_body(Api.ANTHROPIC, response({"content-type": "application/json"}, body))
    assert (result.usage.input_tokens, result.usage.output_tokens) == (5, 2)
    assert result.result().problem() is None


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        (("127.0.0.1", 1), True),
        (("::1", 1), True),
        (("::ffff:127.0.0.1", 1), True),
        (("192.0.2.1", 1), False),
        (("not-an-ip", 1), False),
        (None, False),
        ((), False),
    ],
)
def test_is_loopback(peer: object, loopback: bool) -> None:
    assert is_loopback(peer) is loopback


def test_rewrite_then_restore_for_the_next_provider() -> None:
    request = http.Request.make(
        "POST",
        "https://api.anthropic.com/v1/messages?key=client",
        b'{"model": "m"}',
        {"x-api-key": "client-key", "authorization": "Bearer client"},
    )
    original = Original.of(request)
    rewrite_request(request, APP, APP.providers["keyed"])
    assert request.headers.get_all("authorization") == ["Bearer sk-secret-0123456789"]
    assert "key" not in request.query
    assert request.host_header == "b.example"
    mask_key(request, APP.providers["keyed"])
    assert request.headers["authorization"] == "Bearer sk-s…6789"

    again = original.restored(request)
    assert again.headers["x-api-key"] == "client-key"
    assert again.path == "/v1/messages?key=client"
    rewrite_request(again, APP, APP.providers["open"])
    assert (again.scheme, again.host, again.port) == ("http", "127.0.0.1", 9)
    assert again.headers["x-api-key"] == "client-key"  # passthrough keeps the tool's own
    assert again.host_header == "127.0.0.1:9"


def test_edit_headers_in_one_pass() -> None:
    headers = http.Headers(
        [
            (b"Host", b"api.anthropic.com"),
            (b"X-Api-Key", b"client"),
            (b"accept", b"*/*"),
            (b"x-api-key", b"second"),
            (b"Authorization", b"Bearer client"),
            (b"X-Title", b"old"),
        ]
    )
    edit_headers(
        headers,
        [(b"authorization", b"Bearer mine"), (b"X-Title", b"ccswitch")],
        {b"x-api-key", b"authorization", b"x-title"},
        host=b"b.example:8443",
    )
    assert headers.fields == (
        (b"Host", b"b.example:8443"),  # Host keeps its place
        (b"accept", b"*/*"),
        (b"authorization", b"Bearer mine"),
        (b"X-Title", b"ccswitch"),
    )


def test_edit_headers_adds_host_only_where_asked() -> None:
    headers = http.Headers([(b"accept", b"*/*")])
    edit_headers(headers, [], host=b"b.example", add_host=False)  # HTTP/2: :authority carries it
    assert "host" not in headers
    edit_headers(headers, [], host=b"b.example", add_host=True)
    assert headers.fields[0] == (b"Host", b"b.example")


def test_rewrite_of_an_http2_request_sets_the_authority() -> None:
    request = http.Request.make("POST", "https://api.anthropic.com/v1/messages", b"{}")
    request.http_version = "HTTP/2.0"
    request.authority = "api.anthropic.com"
    request.headers.pop("host", None)
    rewrite_request(request, APP, APP.providers["keyed"])
    assert request.authority == "b.example"
    assert "host" not in request.headers  # not added beside :authority
    assert request.path == "/api/v1/messages"


def test_label_replaces_what_an_upstream_sent() -> None:
    made = response({"X-Ccswitch-Provider": "spoofed", "content-type": "application/json"})
    label(made, "backup", 2)
    assert made.headers.get_all("x-ccswitch-provider") == ["backup"]
    assert made.headers["x-ccswitch-attempts"] == "2"
    assert made.headers["content-type"] == "application/json"
