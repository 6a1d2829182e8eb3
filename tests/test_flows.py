"""What flows.py does to mitmproxy objects: point at the relay and back, stream or buffer,
loopback, the flows that show each attempt."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from ccswitch_addon.core.config import parse_config
from ccswitch_addon.flows import (
    ATTEMPT,
    attempt_flow,
    body_headers,
    exchange_of,
    is_internal,
    is_loopback,
    relay_copy,
    streams,
)
from ccswitch_addon.upstream.answer import HEAD_HEADER
from ccswitch_addon.upstream.job import AttemptRecord
from ccswitch_addon.upstream.relay import JOB_HEADER, TOKEN_HEADER

CONFIG = parse_config(
    """\
apps:
  claude:
    queue: [open]
    providers:
      open: {base_url: "http://127.0.0.1:9", auth: passthrough}
""",
    "p.yaml",
    env={},
)
APP = CONFIG.apps["claude"]


def headers(**values: str) -> http.Headers:
    return http.Headers([(k.replace("_", "-").encode(), v.encode()) for k, v in values.items()])


@pytest.mark.parametrize(
    ("given", "streamed"),
    [
        ({"content_type": "text/event-stream"}, True),
        ({"content_type": "text/event-stream; charset=utf-8", "content_length": "10"}, True),
        ({"content_type": "application/json", "content_length": "2048"}, False),
        ({"content_type": "application/json", "content_length": str(2 * 1024 * 1024)}, True),
        ({"content_type": "application/json"}, True),  # unknown length: relay as it comes
        ({"content_type": "application/json", "content_length": "bogus"}, True),
    ],
)
def test_what_streams(given: dict[str, str], streamed: bool) -> None:
    assert streams(*body_headers(headers(**given))) is streamed


def test_body_headers_take_the_first_of_each() -> None:
    found = body_headers(
        http.Headers(
            [
                (b"Content-Type", b"text/event-stream"),
                (b"content-type", b"application/json"),
                (b"Content-Length", b"5"),
            ]
        )
    )
    assert found == ("text/event-stream", "5")
    assert body_headers(http.Headers()) == ("", None)


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        (("127.0.0.1", 1), True),
        (("127.8.9.10", 1), True),
        (("::1", 1), True),
        (("::ffff:127.0.0.1", 1), True),
        (("192.0.2.1", 1), False),
        (("::ffff:192.0.2.1", 1), False),
        (("not-an-ip", 1), False),
        (None, False),
        ((), False),
    ],
)
def test_is_loopback(peer: object, loopback: bool) -> None:
    assert is_loopback(peer) is loopback


def tool_request(http2: bool = False) -> http.Request:
    request = http.Request.make(
        "POST",
        "https://api.anthropic.com/v1/messages?beta=true",
        b'{"model": "m"}',
        {"x-api-key": "client-key", "anthropic-version": "2023-06-01"},
    )
    if http2:
        request.http_version = "HTTP/2.0"
        request.authority = "api.anthropic.com"
        request.headers.pop("host", None)
    return request


@pytest.mark.parametrize("http2", [False, True])
def test_a_copy_goes_to_the_relay_and_the_tools_request_is_untouched(http2: bool) -> None:
    request = tool_request(http2)
    before = request.get_state()
    copy = relay_copy(request, 4321, "tok", "job-1")
    assert copy.url == "http://127.0.0.1:4321/v1/messages?beta=true"
    assert copy.authority == ""
    assert copy.headers.fields == (
        (b"host", b"127.0.0.1:4321"),
        (TOKEN_HEADER.encode(), b"tok"),
        (JOB_HEADER.encode(), b"job-1"),
        (HEAD_HEADER.encode(), b"later"),
        (b"content-length", b"0"),
    )
    assert copy.content == b""  # the body stays in the exchange, not on the relay's leg
    assert request.get_state() == before  # what mitmweb shows once the relay has the copy


def test_the_exchange_keeps_the_tools_request() -> None:
    request = tool_request()
    exchange = exchange_of(request, APP, APP.endpoints[0])
    assert exchange.method == "POST"
    assert exchange.path == "/v1/messages?beta=true"
    assert (b"x-api-key", b"client-key") in exchange.headers
    assert exchange.body == b'{"model": "m"}'
    assert exchange.app is APP


def record(**changes: object) -> AttemptRecord:
    fields: dict[str, object] = {
        "number": 1,
        "provider": "primary",
        "method": "POST",
        "url": "https://p.example/v1/messages",
        "headers": [("x-api-key", "sk-p…6789")],
        "body": b'{"model": "m"}',
        "started": 1_700_000_000.0,
    }
    fields.update(changes)
    return AttemptRecord(**fields)  # type: ignore[arg-type]


def test_an_attempt_with_an_answer_is_a_flow_of_its_own() -> None:
    flow = tflow.tflow()
    made = attempt_flow(
        flow,
        "claude",
        record(
            status=529,
            response_headers=[("content-type", "application/json")],
            response_body=b'{"type":"error"}',
            error="529",
            failed=True,
            ended=1_700_000_001.0,
        ),
        2,
    )
    assert made.request.url == "https://p.example/v1/messages"
    assert made.request.headers["x-api-key"] == "sk-p…6789"
    assert made.response is not None
    assert made.response.status_code == 529
    assert made.response.content == b'{"type":"error"}'
    assert made.response.timestamp_end == 1_700_000_001.0
    assert made.marked == ":x:"
    assert made.comment == f"claude attempt 1/2 → primary: 529 (for {flow.id[:8]})"
    assert made.metadata[ATTEMPT] == {"of": flow.id, "app": "claude", "provider": "primary",
                                      "attempt": 1}  # fmt: skip
    assert is_internal(made)
    assert not is_internal(flow)


def test_an_attempt_without_an_answer_carries_its_error() -> None:
    made = attempt_flow(tflow.tflow(), "claude", record(error="connect: refused", failed=True), 1)
    assert made.response is None
    assert made.error is not None
    assert made.error.msg == "connect: refused"
    assert made.marked == ":x:"


def test_a_served_attempt_is_marked_as_such() -> None:
    made = attempt_flow(tflow.tflow(), "claude", record(status=200), 2)
    assert made.marked == ":white_check_mark:"
    assert "→ primary: 200" in made.comment
