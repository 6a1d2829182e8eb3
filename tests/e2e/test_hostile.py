"""What a provider holding a request must not reveal, through a real mitmproxy: the flow shows the
tool's own URL and headers while the request is in flight, in mitmweb's list and in a -w file
written at shutdown; never the relay's address or token."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .fakes import FakeProvider, hang
from .proxy import Proxy, Session, wait_until
from .test_routing import BACKUP_KEY, claude_config, provider_status, send, start
from .test_upstream import WEB_AUTH, WEB_PASSWORD, WebProxy

pytestmark = pytest.mark.e2e


def in_flight(proxy: Proxy, provider: FakeProvider) -> threading.Thread:
    """A request sent in a thread, held by ``provider``; returns once the provider has it."""
    thread = threading.Thread(target=lambda: _quietly(send, proxy), daemon=True)
    thread.start()
    wait_until(lambda: len(provider.requests) == 1, 15, "the provider to hold the request")
    return thread


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(OSError):  # the proxy stopped under it
        fn(*args)


def test_a_flow_in_flight_shows_the_tools_request_in_mitmweb(
    fakes: Callable[[str], FakeProvider], tmp_path: Path
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = hang(20)
    proxy = WebProxy(
        tmp_path, claude_config(primary.url, backup.url), env={"BACKUP_KEY": BACKUP_KEY}
    )
    try:
        proxy.start()
        in_flight(proxy, primary)
        conn = http.client.HTTPConnection("127.0.0.1", proxy.web_port, timeout=5)
        auth = {"Authorization": f"Bearer {WEB_PASSWORD}"} if WEB_AUTH else {}
        conn.request("GET", "/flows", headers=auth)
        flows = json.loads(conn.getresponse().read())
        conn.close()
        (flow,) = flows
        shown = json.dumps(flow)
        assert f"{flow['request']['host']}{flow['request']['path']}" == (
            "api.anthropic.com/v1/messages"
        )
        assert "x-ccswitch-relay" not in shown
        assert "x-ccswitch-job" not in shown
        assert "client-own-key" in shown  # the tool's own headers, as it sent them
    finally:
        proxy.stop()


def test_a_flow_in_flight_at_shutdown_is_saved_as_the_tool_sent_it(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = hang(20)
    flows = tmp_path / "flows.mitm"
    proxy = start(make_proxy, claude_config(primary.url, backup.url), extra=["-w", str(flows)])
    in_flight(proxy, primary)
    proxy.stop()
    saved = flows.read_bytes()
    assert b"api.anthropic.com" in saved
    assert b"x-ccswitch-relay" not in saved
    assert b"x-ccswitch-job" not in saved


@pytest.mark.parametrize("value", [b"folded\r\n value", b"bare\rcr"])
def test_a_header_mitmproxy_accepts_but_that_cannot_be_sent_is_the_tools_400(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    value: bytes,
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    proxy = start(make_proxy, claude_config(primary.url, backup.url))
    body = json.dumps({"model": "m", "max_tokens": 8, "messages": []}).encode()
    raw = (
        b"POST /v1/messages HTTP/1.1\r\nhost: api.anthropic.com\r\n"
        b"x-api-key: client-own-key\r\ncontent-type: application/json\r\n"
        b"x-odd: " + value + b"\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )
    for _ in range(2):
        with Session(proxy, "https://api.anthropic.com") as session:
            session.conn.connect()  # the CONNECT tunnel and TLS, then bytes of our own
            assert session.conn.sock is not None
            session.conn.sock.sendall(raw)
            answer = http.client.HTTPResponse(session.conn.sock)
            answer.begin()
            assert answer.status == 400
            assert json.loads(answer.read())["error"]["type"] == "invalid_request_error"
    assert primary.requests == []
    assert backup.requests == []
    for pid in ("primary", "backup"):
        assert provider_status(proxy, pid)["state"] == "closed"
    assert send(proxy).headers["x-ccswitch-provider"] == "primary"
