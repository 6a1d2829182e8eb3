"""The end-to-end harness itself: fake providers, plain mitmdump processes and the clients.

None of these load the ccswitch addon; they prove that what the addon tests build on behaves
as documented, so that a failing addon test points at the addon.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .fakes import (
    API_NAMES,
    FakeProvider,
    Received,
    closed_port,
    drop,
    error,
    hang,
    ok_json,
    ok_sse,
    slow_first_byte,
    sse_error_midstream,
    sse_truncated,
    summarize_stream,
)
from .proxy import Proxy, Reply, Session, concurrent, request, reverse_request, wait_until

pytestmark = pytest.mark.e2e

MakeProxy = Callable[..., Proxy]

# One realistic call per API: (path, streaming path, request body).
CALLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "anthropic": (
        "/v1/messages",
        "/v1/messages",
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}],
        },
    ),
    "openai_chat": (
        "/v1/chat/completions",
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    ),
    "openai_responses": ("/v1/responses", "/v1/responses", {"model": "gpt-5-codex", "input": "hi"}),
    "gemini": (
        "/v1beta/models/gemini-2.5-pro:generateContent",
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
        {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    ),
}
REQUEST_MODEL = {
    "anthropic": "claude-sonnet-4-5",
    "openai_chat": "gpt-4o-mini",
    "openai_responses": "gpt-5-codex",
    "gemini": "gemini-2.5-pro",
}

# What each API's in-stream error carries (a subset of the payload).
MIDSTREAM_ERRORS: dict[str, dict[str, Any]] = {
    "anthropic": {"type": "overloaded_error", "message": "Overloaded"},
    "openai_chat": {"type": "server_error"},
    "openai_responses": {"code": "server_error"},
    "gemini": {"code": 503, "status": "UNAVAILABLE"},
}


def call(fake: FakeProvider, api: str, *, stream: bool = False, timeout: float = 10) -> Reply:
    """POST the API's realistic request straight to `fake`."""
    path, stream_path, body = CALLS[api]
    return request(
        None, "POST", fake.url + (stream_path if stream else path), json=body, timeout=timeout
    )


# --------------------------------------------------------------------------------------------
# (a) The fake provider, called directly


@pytest.mark.parametrize("api", API_NAMES)
def test_ok_json_has_the_api_shape_and_echoes_the_model(fake: FakeProvider, api: str) -> None:
    fake.queue(ok_json(api, input_tokens=5, output_tokens=3, text="hey"))
    reply = call(fake, api)
    assert reply.status == 200
    assert reply.error is None
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["x-fake-provider"] == "fake"
    data = reply.json()
    model = REQUEST_MODEL[api]
    if api == "anthropic":
        assert data["type"] == "message"
        assert data["model"] == model
        assert data["content"] == [{"type": "text", "text": "hey"}]
        assert data["stop_reason"] == "end_turn"
        assert data["usage"] == {"input_tokens": 5, "output_tokens": 3}
    elif api == "openai_chat":
        assert data["object"] == "chat.completion"
        assert data["model"] == model
        assert data["choices"][0]["message"] == {"role": "assistant", "content": "hey"}
        assert data["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    elif api == "openai_responses":
        assert data["object"] == "response"
        assert data["status"] == "completed"
        assert data["model"] == model
        assert data["output"][0]["content"][0] == {
            "type": "output_text",
            "text": "hey",
            "annotations": [],
        }
        assert data["usage"]["input_tokens"] == 5
        assert data["usage"]["output_tokens"] == 3
    else:
        assert data["modelVersion"] == model  # from the path: Gemini bodies carry no model
        cand = data["candidates"][0]
        assert cand["content"]["parts"] == [{"text": "hey"}]
        assert cand["finishReason"] == "STOP"
        assert data["usageMetadata"] == {
            "promptTokenCount": 5,
            "candidatesTokenCount": 3,
            "totalTokenCount": 8,
        }


def test_requests_are_recorded_in_detail(fake: FakeProvider) -> None:
    reply = request(
        None,
        "POST",
        fake.url + "/v1beta/models/gemini-2.5-flash:generateContent?alt=json&key=k1",
        json={"contents": []},
        headers={"X-Goog-Api-Key": "secret", "X-Twice": "a"},
    )
    assert reply.status == 200
    (seen,) = fake.wait_for_requests(1)
    assert seen.method == "POST"
    assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen.query == {"alt": "json", "key": "k1"}
    assert seen.target == "/v1beta/models/gemini-2.5-flash:generateContent?alt=json&key=k1"
    assert seen.headers["x-goog-api-key"] == "secret"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["host"] == f"127.0.0.1:{fake.port}"
    assert seen.json() == {"contents": []}
    # The default is the anthropic shape; the model still comes from the Gemini path.
    assert reply.json()["model"] == "gemini-2.5-flash"


def test_explicit_model_wins(fake: FakeProvider) -> None:
    fake.queue(ok_json("openai_chat", model="vendor/other"))
    assert call(fake, "openai_chat").json()["model"] == "vendor/other"


@pytest.mark.parametrize("api", API_NAMES)
def test_ok_sse_is_a_complete_realistic_stream(fake: FakeProvider, api: str) -> None:
    fake.queue(ok_sse(api, events=3, input_tokens=13, output_tokens=9))
    reply = call(fake, api, stream=True)
    assert reply.status == 200
    assert reply.error is None
    assert reply.headers["content-type"] == "text/event-stream"
    assert reply.headers["transfer-encoding"] == "chunked"
    summary = summarize_stream(api, reply.body)
    assert summary.finished
    assert summary.error is None
    assert summary.text == "chunk0 chunk1 chunk2 "
    assert (summary.input_tokens, summary.output_tokens) == (13, 9)
    names = [ev.event for ev in summary.events]
    if api == "anthropic":
        assert names == [
            "message_start",
            "content_block_start",
            *["content_block_delta"] * 3,
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        assert summary.events[0].json()["message"]["model"] == REQUEST_MODEL[api]
    elif api == "openai_chat":
        assert summary.events[-1].data == "[DONE]"
        assert summary.events[-2].json()["usage"]["total_tokens"] == 22
        assert all(ev.json()["object"] == "chat.completion.chunk" for ev in summary.events[:-1])
    elif api == "openai_responses":
        assert names == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            *["response.output_text.delta"] * 3,
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        assert summary.events[-1].json()["response"]["status"] == "completed"
    else:
        assert names == [None] * 3
        assert summary.events[-1].json()["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize("api", API_NAMES)
def test_sse_error_midstream_sends_the_api_error_event(fake: FakeProvider, api: str) -> None:
    fake.queue(sse_error_midstream(api, after=2))
    reply = call(fake, api, stream=True)
    assert reply.status == 200
    assert reply.error is None  # the HTTP stream itself ends properly
    summary = summarize_stream(api, reply.body)
    assert summary.text == "chunk0 chunk1 "
    assert not summary.finished
    assert summary.error is not None
    expected = MIDSTREAM_ERRORS[api]
    assert expected.items() <= summary.error.items()


@pytest.mark.parametrize("api", API_NAMES)
def test_sse_truncated_breaks_the_chunked_stream(fake: FakeProvider, api: str) -> None:
    fake.queue(sse_truncated(api, after=2))
    reply = call(fake, api, stream=True)
    assert reply.status == 200
    assert reply.error is not None
    assert "IncompleteRead" in reply.error
    summary = summarize_stream(api, reply.body)
    assert summary.text == "chunk0 chunk1 "
    assert not summary.finished
    assert summary.error is None


@pytest.mark.parametrize(
    ("api", "status", "expected"),
    [
        (
            "anthropic",
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ),
        ("anthropic", 429, {"type": "error", "error": {"type": "rate_limit_error"}}),
        ("anthropic", 500, {"type": "error", "error": {"type": "api_error"}}),
        ("anthropic", 400, {"type": "error", "error": {"type": "invalid_request_error"}}),
        ("openai", 429, {"error": {"type": "requests", "code": "rate_limit_exceeded"}}),
        ("openai_responses", 500, {"error": {"type": "server_error"}}),
        ("gemini", 503, {"error": {"code": 503, "status": "UNAVAILABLE"}}),
        ("gemini", 429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}),
    ],
)
def test_error_bodies_have_the_api_shape(
    fake: FakeProvider, api: str, status: int, expected: dict[str, Any]
) -> None:
    fake.queue(error(status, api=api))
    reply = request(None, "POST", fake.url + "/x", json={})
    assert reply.status == status
    data = reply.json()
    for key, value in expected.items():
        if isinstance(value, dict):
            assert value.items() <= data[key].items(), data
        else:
            assert data[key] == value


def test_error_overrides_body_and_headers(fake: FakeProvider) -> None:
    fake.queue(
        error(429, headers={"Retry-After": "30", "content-type": "application/problem+json"}),
        error(502, body="<html>bad gateway</html>"),
        error(400, body={"custom": True}),
    )
    first = request(None, "GET", fake.url + "/a")
    assert first.status == 429
    assert first.headers["retry-after"] == "30"
    assert first.headers["content-type"] == "application/problem+json"
    second = request(None, "GET", fake.url + "/b")
    assert (second.status, second.body) == (502, b"<html>bad gateway</html>")
    assert second.headers["content-type"].startswith("text/plain")
    assert request(None, "GET", fake.url + "/c").json() == {"custom": True}


def test_queue_is_fifo_then_default_and_reset_clears(fake: FakeProvider) -> None:
    fake.queue(error(500), error(429))
    statuses = [request(None, "GET", fake.url + f"/{i}").status for i in range(3)]
    assert statuses == [500, 429, 200]
    assert [r.path for r in fake.requests] == ["/0", "/1", "/2"]
    fake.default = error(503)
    fake.queue(ok_json())
    fake.reset()  # drops the queued ok_json, keeps the default
    assert fake.requests == []
    assert fake.pending == 0
    assert request(None, "GET", fake.url + "/").status == 503


def test_wait_for_requests_times_out_with_an_assertion(fake: FakeProvider) -> None:
    with pytest.raises(AssertionError, match="expected 1 request"):
        fake.wait_for_requests(1, timeout=0.1)


def test_drop_resets_without_a_response(fake: FakeProvider) -> None:
    fake.queue(drop())
    with pytest.raises(ConnectionError):  # RemoteDisconnected or ConnectionResetError
        request(None, "POST", fake.url + "/v1/messages", json={"model": "m"})
    assert fake.wait_for_requests(1)[0].json() == {"model": "m"}  # recorded before dropping
    assert request(None, "GET", fake.url + "/").status == 200  # the server is fine


def test_hang_blocks_only_its_own_connection_and_stop_cuts_it(
    fakes: Callable[[str], FakeProvider],
) -> None:
    fake = fakes("hanger")
    fake.queue(hang(30))
    with pytest.raises(TimeoutError):
        request(None, "POST", fake.url + "/v1/messages", json={}, timeout=0.3)
    fake.wait_for_requests(1)
    # Another connection is served while the first handler still hangs.
    assert request(None, "GET", fake.url + "/", timeout=5).status == 200
    fake.queue(hang(30))
    held = Session(None, fake.url, timeout=10)
    held.conn.request("GET", "/held")
    fake.wait_for_requests(3)
    began = time.monotonic()
    fake.stop()
    assert time.monotonic() - began < 1.5
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        held.conn.getresponse()  # the hanging connection was closed, not answered
    held.close()


def test_slow_first_byte_delays_then_behaves(fake: FakeProvider) -> None:
    fake.queue(slow_first_byte(0.4, error(503)))
    reply = request(None, "GET", fake.url + "/")
    assert reply.status == 503
    assert reply.headers_at - reply.started >= 0.4


def test_keep_alive_reuses_the_connection(fake: FakeProvider) -> None:
    fake.queue(ok_sse(events=2))
    with Session(None, fake.url) as session:
        assert session.request("POST", "/v1/messages", json={}).status == 200
        assert session.request("POST", "/v1/messages", json={}).status == 200
        assert session.request("GET", "/third").status == 200
    first, second, third = fake.wait_for_requests(3)
    assert first.connection == second.connection == third.connection


def test_fifty_concurrent_connections_are_served_in_parallel(fake: FakeProvider) -> None:
    fake.default = slow_first_byte(0.5, ok_json())
    began = time.monotonic()
    replies = concurrent(lambda i: request(None, "POST", fake.url + f"/r{i}", json={"i": i}), 50)
    elapsed = time.monotonic() - began
    assert [r.status for r in replies] == [200] * 50
    assert sorted(r.json()["i"] for r in fake.requests) == list(range(50))
    assert len({r.connection for r in fake.requests}) == 50
    assert elapsed < 5, f"50 requests of 0.5 s took {elapsed:.1f}s: not parallel"


def test_closed_port_refuses() -> None:
    with pytest.raises(ConnectionRefusedError):
        request(None, "GET", f"http://127.0.0.1:{closed_port()}/", timeout=5)


def test_wait_until_returns_the_value_or_names_what_it_waited_for() -> None:
    assert wait_until(lambda: 42, 1, "the answer") == 42
    with pytest.raises(AssertionError, match="the impossible"):
        wait_until(lambda: None, 0.1, "the impossible")


# --------------------------------------------------------------------------------------------
# (d) Streams arrive incrementally (and the measurement can tell when they do not)


def assert_incremental(reply: Reply, *, pieces: int, spread: float) -> None:
    """At least `pieces` body pieces spread over at least `spread` seconds."""
    assert len(reply.chunks) >= pieces, f"only {len(reply.chunks)} piece(s): {reply!r}"
    assert reply.spread >= spread, f"pieces spread over {reply.spread:.2f}s only"


def test_sse_with_interval_arrives_incrementally_when_direct(fake: FakeProvider) -> None:
    fake.queue(ok_sse("openai_chat", events=4, interval=0.2))
    reply = call(fake, "openai_chat", stream=True)
    assert reply.error is None
    assert summarize_stream("openai_chat", reply.body).finished
    assert_incremental(reply, pieces=3, spread=0.4)


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "streamed"])
def test_plain_mitmdump_buffers_sse_unless_told_to_stream(
    fake: FakeProvider, make_proxy: MakeProxy, stream: bool
) -> None:
    # mitmproxy reads whole bodies by default: an addon must set flow.response.stream itself.
    extra = ["--set", "stream_large_bodies=1"] if stream else []
    proxy = make_proxy(None, addon=None, mode=f"reverse:{fake.url}", extra=extra)
    fake.queue(ok_sse("openai_chat", events=4, interval=0.2))
    reply = reverse_request(proxy, "POST", "/v1/chat/completions", json=CALLS["openai_chat"][2])
    assert reply.status == 200
    assert summarize_stream("openai_chat", reply.body).finished
    if stream:
        assert_incremental(reply, pieces=3, spread=0.4)
    else:
        assert reply.first_byte is not None
        assert reply.first_byte - reply.started >= 0.8
        assert reply.spread < 0.1


# --------------------------------------------------------------------------------------------
# (b), (c) Plain mitmdump in front of a fake


def test_reverse_mode_forwards_to_the_fake(fake: FakeProvider, make_proxy: MakeProxy) -> None:
    proxy = make_proxy(None, addon=None, mode=f"reverse:{fake.url}")
    assert proxy.port
    assert proxy.ca_path.exists()
    assert proxy.port != fake.port
    body = CALLS["anthropic"][2]
    reply = reverse_request(
        proxy, "POST", "/v1/messages?beta=true", json=body, headers={"x-api-key": "k"}
    )
    assert reply.status == 200
    assert reply.json()["model"] == "claude-sonnet-4-5"
    (seen,) = fake.wait_for_requests(1)
    assert (seen.path, seen.query, seen.json()) == ("/v1/messages", {"beta": "true"}, body)
    assert seen.headers["x-api-key"] == "k"
    # Default verbosity logs each flow; the harness can wait for it.
    line = proxy.wait_for_output(re.compile(r"POST .*/v1/messages"))
    assert "v1/messages" in line
    # A restart gets a fresh port and its own log; the first log stays readable.
    first_log, first_port = proxy.log_path, proxy.port
    proxy.stop()
    assert proxy.returncode == 0  # SIGTERM is a graceful shutdown for mitmdump
    proxy.start()
    assert proxy.log_path != first_log
    assert proxy.port != first_port
    assert reverse_request(proxy, "GET", "/again").status == 200
    assert fake.wait_for_requests(2)[1].path == "/again"


def test_explicit_proxy_to_an_http_url(fake: FakeProvider, make_proxy: MakeProxy) -> None:
    proxy = make_proxy(None, addon=None)
    fake.queue(error(429, api="openai", headers={"Retry-After": "7"}))
    reply = request(
        proxy, "POST", fake.url + "/v1/chat/completions?x=1", json=CALLS["openai_chat"][2]
    )
    assert reply.status == 429
    assert reply.headers["retry-after"] == "7"
    assert reply.json()["error"]["code"] == "rate_limit_exceeded"
    (seen,) = fake.wait_for_requests(1)
    assert (seen.path, seen.query) == ("/v1/chat/completions", {"x": "1"})
    # Many clients at once through one mitmdump.
    replies = concurrent(lambda i: request(proxy, "GET", fake.url + f"/c{i}"), 20)
    assert [r.status for r in replies] == [200] * 20
    assert len(fake.wait_for_requests(21)) == 21


def test_https_connect_verifies_the_mitmproxy_ca(make_proxy: MakeProxy) -> None:
    # Lazy: mitmproxy finishes the client handshake before it tries (and fails) to reach
    # the real host, so the certificate it made for api.anthropic.com is what we verify.
    proxy = make_proxy(None, addon=None, extra=["--set", "connection_strategy=lazy"])
    reply = request(
        proxy,
        "POST",
        "https://api.anthropic.com/v1/messages",
        json=CALLS["anthropic"][2],
        timeout=20,
    )
    assert reply.status == 502, reply.text()
    # The same tunnel with only the system CAs must fail verification: trust is really checked.
    conn = http.client.HTTPSConnection(
        "127.0.0.1", proxy.port, timeout=10, context=ssl.create_default_context()
    )
    conn.set_tunnel("api.anthropic.com", 443)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/")
    conn.close()


def test_a_failing_start_reports_the_output(make_proxy: MakeProxy) -> None:
    # (An unknown `--set name=…` would not do: mitmdump defers it for a script to define.)
    with pytest.raises(RuntimeError, match="Invalid proxy mode specification"):
        make_proxy(None, addon=None, mode="bogus")
    proxy = make_proxy(None, addon=None, mode="bogus", start=False).start(expect_exit=True)
    assert proxy.returncode == 1
    assert "unknown mode" in proxy.output()


def test_config_text_gets_its_own_file_per_content(tmp_path: Path) -> None:
    first = Proxy(tmp_path, "apps: {}\n")
    again = Proxy(tmp_path, "apps: {}\n")
    other = Proxy(tmp_path, "apps: {x: 1}\n")
    given = Proxy(tmp_path, tmp_path / "mine.yaml")
    assert first.config_path == again.config_path == tmp_path / "providers.yaml"
    assert other.config_path == tmp_path / "providers-2.yaml"
    assert given.config_path == tmp_path / "mine.yaml"
    assert f"ccswitch_config={tmp_path / 'providers.yaml'}" in first.command()
    assert f"ccswitch_state={tmp_path / 'state.db'}" in first.command()
    bare = Proxy(tmp_path, None, addon=None).command()
    # Judged by the arguments' meaning, not by a name: the clone's folder may be called ccswitch.
    assert "-s" not in bare
    assert not any(arg.startswith("ccswitch_") for arg in bare)


def test_received_json_roundtrip() -> None:
    seen = Received("POST", "/p", {}, {}, json.dumps({"a": 1}).encode())
    assert seen.json() == {"a": 1}
