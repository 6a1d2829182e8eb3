"""The control endpoints as pure logic: where they answer, and what a cross-site request gets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ccswitch_addon.cli.client import TOKEN_HEADER as CLI_TOKEN_HEADER
from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.outcome import ErrorKind, classify_error
from ccswitch_addon.engine import Engine
from ccswitch_addon.web.control import (
    TOKEN_HEADER,
    Control,
    ControlRequest,
    Reach,
    dashboard_urls,
    own_origins,
    reach,
)

CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    breaker: {failure_threshold: 1, open_seconds: 60}
    providers:
      primary: {base_url: "http://127.0.0.1:1", auth: passthrough}
      backup: {base_url: "http://127.0.0.1:2", auth: passthrough}
"""
TOKEN = "test-token-0123456789"
HOST_ORIGINS = own_origins(Reach.HOST, "http", "ccswitch.local", 80)


@pytest.fixture
def engine() -> Engine:
    return Engine(parse_config(CONFIG, "p.yaml", env={}))


@pytest.fixture
def control(engine: Engine) -> Control:
    return Control(lambda: engine, TOKEN)


def ask(
    control: Control,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    reached: Reach = Reach.HOST,
    loopback: bool = True,
    origins: frozenset[str] = HOST_ORIGINS,
) -> tuple[int, Any]:
    if headers is None:
        headers = {"content-type": "application/json", TOKEN_HEADER: TOKEN}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body else b""
    reply = control.answer(ControlRequest(method, path, headers, raw, loopback, reached, origins))
    try:
        return reply.status, json.loads(reply.body)
    except ValueError:
        return reply.status, reply.body


def test_where_the_endpoints_answer() -> None:
    listen = ("127.0.0.1", 8080)
    assert reach("ccswitch.local", 80, "/", reverse=False, listen=listen) is Reach.HOST
    assert reach("CCSWITCH.local.", 80, "/status", reverse=False, listen=listen) is Reach.HOST
    # A browser pointed at the proxy itself (no proxy setting): mitmproxy's 502 until now.
    assert reach("127.0.0.1", 8080, "/", reverse=False, listen=listen) is Reach.DIRECT
    assert reach("localhost", 8080, "/x", reverse=False, listen=listen) is Reach.DIRECT
    assert reach("127.0.0.1", 3000, "/", reverse=False, listen=listen) is None
    assert reach("api.anthropic.com", 443, "/v1/messages", reverse=False, listen=listen) is None
    # The prefix on another host is reserved: answered, never forwarded.
    assert reach("example.com", 80, "/__ccswitch/", reverse=False, listen=listen) is Reach.OTHER
    assert reach("example.com", 80, "/__ccswitchy", reverse=False, listen=listen) is None
    # A reverse listener: only the prefix is ours, whatever the target.
    assert reach("api.anthropic.com", 443, "/__ccswitch/status", reverse=True, listen=listen) is (
        Reach.REVERSE
    )
    assert reach("api.anthropic.com", 443, "/", reverse=True, listen=listen) is None


def test_own_origins() -> None:
    assert own_origins(Reach.HOST, "http", "ccswitch.local", 80) == {"http://ccswitch.local"}
    direct = own_origins(Reach.DIRECT, "http", "127.0.0.1", 8080)
    assert {"http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"} <= direct
    assert "http://evil.example:8080" not in direct


def test_dashboard_urls_name_the_listening_addresses() -> None:
    assert dashboard_urls([("127.0.0.1", 8080), ("0.0.0.0", 8081), ("::1", 8082)]) == [
        "http://127.0.0.1:8080/__ccswitch/",
        "http://127.0.0.1:8081/__ccswitch/",
        "http://[::1]:8082/__ccswitch/",
    ]


def test_switch_and_reset_with_the_token(control: Control, engine: Engine) -> None:
    assert ask(control, "POST", "/switch", {"app": "claude", "provider": "backup"})[0] == 200
    assert engine.router.current("claude") == "backup"
    permit = engine.router.acquire("claude", "primary")
    engine.router.record_result("claude", "primary", classify_error(ErrorKind.CONNECT), permit)
    assert engine.router.breaker("claude", "primary").label() == "open"
    body = {"app": "claude", "provider": "primary"}
    assert ask(control, "POST", "/__ccswitch/reset", body, reached=Reach.REVERSE)[0] == 200
    assert engine.router.breaker("claude", "primary").label() == "closed"
    code, answer = ask(control, "POST", "/reset", {"app": "claude", "provider": "nope"})
    assert code == 404
    assert "unknown provider 'nope'" in answer["error"]
    assert ask(control, "POST", "/switch", b"not json")[0] == 400
    assert ask(control, "POST", "/switch", b"[1]")[0] == 400
    assert ask(control, "GET", "/nothing")[0] == 404


CROSS_SITE = {
    "no token": {"content-type": "application/json"},
    "wrong token": {"content-type": "application/json", TOKEN_HEADER: "guess"},
    "form": {"content-type": "application/x-www-form-urlencoded", TOKEN_HEADER: TOKEN},
    "text/plain": {"content-type": "text/plain", TOKEN_HEADER: TOKEN},
    "other origin": {
        "content-type": "application/json",
        TOKEN_HEADER: TOKEN,
        "origin": "http://127.0.0.1:3000",
    },
    "null origin": {"content-type": "application/json", TOKEN_HEADER: TOKEN, "origin": "null"},
    "cross-site fetch": {
        "content-type": "application/json",
        TOKEN_HEADER: TOKEN,
        "sec-fetch-site": "cross-site",
    },
}


@pytest.mark.parametrize("headers", CROSS_SITE.values(), ids=CROSS_SITE.keys())
@pytest.mark.parametrize("path", ["/switch", "/reset", "/__ccswitch/switch"])
def test_a_cross_site_request_changes_nothing(
    control: Control, engine: Engine, headers: dict[str, str], path: str
) -> None:
    before = engine.status()
    code, answer = ask(
        control, "POST", path, {"app": "claude", "provider": "backup"}, headers=headers
    )
    assert code == 403
    assert "refused" in answer["error"]
    assert engine.status() == before


def test_the_own_origin_may_act(control: Control, engine: Engine) -> None:
    headers = {
        "content-type": "application/json; charset=utf-8",
        TOKEN_HEADER: TOKEN,
        "origin": "http://ccswitch.local",
        "sec-fetch-site": "same-origin",
    }
    assert ask(control, "POST", "/switch", {"app": "claude", "provider": "backup"},
               headers=headers)[0] == 200  # fmt: skip
    assert engine.router.current("claude") == "backup"


def test_the_token_for_the_cli_and_the_page(control: Control) -> None:
    assert ask(control, "GET", "/token", headers={}) == (200, {"token": TOKEN})
    # Another site's page cannot have it: refused with its Origin (and never readable:
    # no CORS header is sent on any answer).
    code, _ = ask(control, "GET", "/token", headers={"origin": "http://evil.example"})
    assert code == 403
    code, page = ask(control, "GET", "/", headers={})
    assert code == 200
    assert f'<meta name="ccswitch-token" content="{TOKEN}">'.encode() in page
    assert CLI_TOKEN_HEADER == TOKEN_HEADER
    assert Control(lambda: None).token != Control(lambda: None).token  # random per process


def test_page_headers_forbid_framing(control: Control) -> None:
    reply = control.answer(ControlRequest("GET", "/", {}, b"", True, Reach.HOST, HOST_ORIGINS))
    headers = dict(reply.headers)
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert not any(name.startswith("access-control-") for name in headers)


def test_redirects_and_pointers(control: Control) -> None:
    direct = own_origins(Reach.DIRECT, "http", "127.0.0.1", 8080)
    reply = control.answer(ControlRequest("GET", "/", {}, b"", True, Reach.DIRECT, direct))
    assert (reply.status, dict(reply.headers)["location"]) == (302, "/__ccswitch/")
    reply = control.answer(
        ControlRequest("GET", "/__ccswitch", {}, b"", True, Reach.DIRECT, direct)
    )
    assert (reply.status, dict(reply.headers)["location"]) == (302, "/__ccswitch/")
    assert ask(control, "GET", "/favicon.ico", headers={}, reached=Reach.DIRECT)[0] == 404
    code, page = ask(control, "GET", "/__ccswitch/", headers={}, reached=Reach.DIRECT)
    assert code == 200
    assert b'<meta name="ccswitch-base" content="/__ccswitch">' in page
    code, answer = ask(control, "GET", "/__ccswitch/", headers={}, reached=Reach.OTHER)
    assert code == 404
    assert "never forwarded" in answer["error"]


def test_loopback_only_and_no_engine(control: Control) -> None:
    assert ask(control, "GET", "/status", headers={}, loopback=False)[0] == 403
    empty = Control(lambda: None, TOKEN)
    assert ask(empty, "GET", "/status", headers={})[0] == 503


def test_read_endpoints(control: Control, engine: Engine) -> None:
    code, status = ask(control, "GET", "/status", headers={})
    assert code == 200
    assert status["apps"]["claude"]["current"] == "primary"
    code, history = ask(control, "GET", "/history", headers={})
    assert code == 200
    assert set(history["apps"]["claude"]) == {"primary", "backup"}
    assert len(history["apps"]["claude"]["primary"]["requests"]) == 60
    assert ask(control, "GET", "/requests", headers={}) == (200, {"rows": []})
    code, tokens = ask(control, "GET", "/tokens", headers={})
    assert (code, tokens["rows"]) == (200, [])
    assert "no state file" in tokens["note"]
