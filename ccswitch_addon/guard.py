"""Requests the proxy refuses before routing: remote clients, browsers, plain HTTP, odd paths
and bodies the rewrite cannot take.

A routed request gets a provider's key. A web page in a browser that uses the proxy can send
one too (``fetch(…, {mode: "no-cors"})`` needs no CORS and, over plain ``http://``, not even
the CA), and a client beyond loopback could use the proxy for everything; these checks keep
the key for the coding tools on this machine. The refusals are in each API's own error shape.
"""

# No `from __future__ import annotations`: see addon.py (a script module's dataclasses).
import logging
import re

from mitmproxy import ctx, http
from mitmproxy.proxy.mode_specs import RegularMode, UpstreamMode

from ccswitch_addon.core.bodies import BodyProblem, check_json_body, inflate
from ccswitch_addon.core.config import Api, AppConfig
from ccswitch_addon.core.router import Match, Router
from ccswitch_addon.flows import is_loopback, to_response
from ccswitch_addon.options import Settings
from ccswitch_addon.wire.replies import api_error

__all__ = ["admit", "path_trick", "refuse_remote", "remote_policy"]

logger = logging.getLogger(__name__)

# Sent by browsers (fetch, forms, navigation), never by Claude Code, Codex CLI or Gemini CLI.
# Node's own fetch (undici) sends ``sec-fetch-mode: cors`` on every request, with neither of
# the others: that value alone is not a browser (a browser's cors request carries Origin).
BROWSER_HEADERS = frozenset({b"origin", b"sec-fetch-site"})
NODE_FETCH_MODE = b"cors"
# `.`/`..` segments, and encoded dots, slashes and backslashes a server may decode into them.
_TRICK = re.compile(r"(?:^|/)\.\.?(?:/|$)|%2e|%2f|%5c|\\", re.I)


def refuse_remote(flow: http.HTTPFlow, settings: Settings) -> bool:
    """A client beyond loopback without proxyauth or ccswitch_allow_remote: 403 for anything.

    Called from http_connect (a CONNECT gets no tunnel) and requestheaders (plain and reverse
    requests), so no request of such a client reaches any host through this proxy.
    """
    if (
        flow.response is not None
        or settings.allow_remote
        or is_loopback(flow.client_conn.peername)
        or getattr(ctx.options, "proxyauth", None)
    ):
        return False
    flow.response = http.Response.make(
        403,
        b"ccswitch: this proxy serves loopback clients only; "
        b"set proxyauth or ccswitch_allow_remote=true to allow others\n",
        {"content-type": "text/plain; charset=utf-8"},
    )
    flow.comment = "ccswitch: refused, a remote client"
    return True


def remote_policy(settings: Settings) -> str:
    """What clients beyond loopback may do, for the start-up warning."""
    if settings.allow_remote:
        return "ccswitch_allow_remote is set: any client that reaches it is served with the keys"
    if getattr(ctx.options, "proxyauth", None):
        return "clients that pass proxyauth are served with the keys; others get 407"
    return (
        "clients beyond loopback get 403 for every request (set proxyauth or ccswitch_allow_remote)"
    )


def path_trick(path: str) -> bool:
    """``.``/``..`` segments or encoded ``.``, ``/``, ``\\`` in a path (without its query)."""
    return _TRICK.search(path) is not None


def admit(flow: http.HTTPFlow, router: Router, settings: Settings) -> Match | None:
    """The match of a request the addon may route; None when it is not routed or refused
    (then ``flow.response`` holds the refusal)."""
    request = flow.request
    path = request.path.partition("?")[0]
    host_app = router.host_app(request.host)
    if host_app is None:
        return None
    if path_trick(path):
        _refuse(flow, host_app, 400, "ccswitch: refused a path with '.' or '..' segments or an "
                "encoded '.', '/' or '\\'", "path")  # fmt: skip
        return None
    if request.method != "POST":
        return None
    match = router.match(request.host, path)
    if match is None:
        return None
    app = match.app
    browser, encoding = _header_facts(request)
    if browser is not None and not settings.allow_browsers:
        _refuse(flow, app, 403, f"ccswitch: refused a browser request (it carries {browser}); "
                "set ccswitch_allow_browsers=true to allow", "browser")  # fmt: skip
        return None
    mode = flow.client_conn.proxy_mode
    if request.scheme == "http" and isinstance(mode, RegularMode | UpstreamMode):
        _refuse(flow, app, 403, "ccswitch: refused plain http:// to an API host; "
                "coding tools send https://", "plain http")  # fmt: skip
        return None
    if app.api is not Api.GEMINI and any(p.models for p in app.providers.values()):
        try:  # the rewrite will parse this body (and inflate it, when it is compressed)
            body = request.raw_content or b""
            check_json_body(inflate(body, encoding, settings.body_limit) if encoding else body)
        except BodyProblem as e:
            _refuse(flow, app, e.status, e.message, "body")
            return None
    return match


def _header_facts(request: http.Request) -> tuple[str | None, str]:
    """(a browser-only header's name or None, the content-encoding), in one pass."""
    browser, encoding = None, ""
    for name, value in request.headers.fields:
        lower = name.lower()
        if lower in BROWSER_HEADERS or (
            lower == b"sec-fetch-mode" and value.strip().lower() != NODE_FETCH_MODE
        ):
            browser = browser or lower.decode()
        elif lower == b"content-encoding":
            encoding = value.decode("latin-1")
    return browser, encoding


def _refuse(flow: http.HTTPFlow, app: AppConfig, status: int, message: str, why: str) -> None:
    flow.response = to_response(api_error(app.api, status, message))
    flow.comment = f"ccswitch: refused ({why})"
    request = flow.request  # no query in the log: Gemini's may carry a key
    logger.info(
        "%s: %s %s%s", message, request.method, request.host, request.path.partition("?")[0]
    )
