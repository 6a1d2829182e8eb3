"""The control endpoints and the dashboard, answered by the proxy itself, safe from other sites.

Reached three ways, never routed nor forwarded:
- ``http://ccswitch.local/…`` through the proxy (the control host);
- ``/__ccswitch/…`` on a request addressed to the proxy itself (``http://127.0.0.1:8080/``
  without a proxy setting; ``/`` there redirects to the dashboard);
- ``/__ccswitch/…`` on any request to a reverse-mode listener.
The same prefix on a request for any other host is answered with a pointer, not forwarded:
serving the page (and its token) there would hand it to that host's own scripts.

A state-changing request (POST /switch, /reset) must carry ``content-type: application/json``,
a JSON object body, no ``Origin`` or this endpoint's own, and the per-process token in
``x-ccswitch-token``. The page embeds the token; the CLI asks ``GET /token``, which another
site cannot read (no CORS header is ever sent) and which is refused with an ``Origin``.
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ccswitch_addon.core.router import SwitchRefused, UnknownName
from ccswitch_addon.web.dashboard import page
from ccswitch_addon.web.history import series
from ccswitch_addon.web.logreads import recent_requests, tokens_by_day
from ccswitch_addon.web.metrics import CONTENT_TYPE as METRICS_TYPE
from ccswitch_addon.wire.replies import Reply

if TYPE_CHECKING:
    from ccswitch_addon.engine import Engine

__all__ = [
    "CONTROL_HOST",
    "PREFIX",
    "TOKEN_HEADER",
    "Control",
    "ControlRequest",
    "Reach",
    "dashboard_urls",
    "own_origins",
    "reach",
]

CONTROL_HOST = "ccswitch.local"
CONTROL_CALLER = "a request to ccswitch.local"  # who switched, when the caller does not say
PREFIX = "/__ccswitch"
TOKEN_HEADER = "x-ccswitch-token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
STATE_CHANGING = ("/switch", "/reset")
PAGE_HEADERS = (
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store"),
    # Buttons that act must not be framed by another page (clickjacking).
    ("x-frame-options", "DENY"),
    ("content-security-policy", "frame-ancestors 'none'; default-src 'self' 'unsafe-inline'"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
)


class Reach(enum.Enum):
    """How a request came to the control endpoints."""

    HOST = "host"  # http://ccswitch.local through the proxy
    DIRECT = "direct"  # addressed to the proxy itself (regular mode, no proxy setting)
    REVERSE = "reverse"  # a reverse-mode listener
    OTHER = "other"  # some other host through the proxy


@dataclass(frozen=True)
class ControlRequest:
    method: str
    path: str  # without the query
    headers: Mapping[str, str]  # names in lower case
    body: bytes
    loopback: bool  # the client is on this machine
    reach: Reach
    origins: frozenset[str] = field(default_factory=frozenset)  # this endpoint's own


def reach(
    host: str, port: int, path: str, *, reverse: bool, listen: tuple[str, int] | None
) -> Reach | None:
    """Whether a request is for the control endpoints, and how it came; None: not ours.

    ``host``/``port`` are where mitmproxy would send the request, ``listen`` the address of
    the listener the client connected to."""
    host = host.lower().rstrip(".")
    reserved = path == PREFIX or path.startswith(PREFIX + "/")
    if reverse:
        return Reach.REVERSE if reserved else None
    if host == CONTROL_HOST:
        return Reach.HOST
    to_self = listen is not None and port == listen[1] and host in (*LOOPBACK_NAMES, listen[0])
    if to_self:
        return Reach.DIRECT  # mitmproxy would refuse to connect to itself anyway
    return Reach.OTHER if reserved else None


def own_origins(reached: Reach, scheme: str, host: str, port: int) -> frozenset[str]:
    """The origins a browser gives this endpoint's own page: the only ones allowed to act."""
    if reached is Reach.HOST:
        return frozenset({_origin(scheme, CONTROL_HOST, port)})
    names = {*LOOPBACK_NAMES, host.lower()}
    return frozenset(_origin(scheme, name, port) for name in names)


def _origin(scheme: str, host: str, port: int) -> str:
    default = {"http": 80, "https": 443}.get(scheme)
    name = f"[{host}]" if ":" in host else host
    return f"{scheme}://{name}" + ("" if port == default else f":{port}")


class Control:
    """Answers control requests for the engine ``engine()`` returns (None: not loaded yet)."""

    def __init__(self, engine: Callable[[], Engine | None], token: str | None = None) -> None:
        self._engine = engine
        self.token = token or secrets.token_urlsafe(32)

    def answer(self, request: ControlRequest) -> Reply:
        if not request.loopback:
            return _json(403, {"error": "ccswitch: control endpoints answer loopback clients only"})
        path = request.path
        base = "" if request.reach is Reach.HOST else PREFIX
        if request.reach is Reach.OTHER:
            return _json(
                404,
                {
                    "error": "ccswitch: the dashboard is at http://ccswitch.local/ through the "
                    f"proxy, or at {PREFIX}/ on the proxy's own address; never forwarded"
                },
            )
        if path.startswith(PREFIX + "/") or path == PREFIX:
            path = path[len(PREFIX) :]
        elif request.reach is Reach.DIRECT:
            # A browser pointed at the proxy itself: the dashboard is one redirect away.
            if request.method == "GET" and path in ("/", "/index.html"):
                return Reply(302, b"", (("location", PREFIX + "/"), ("cache-control", "no-store")))
            return _json(404, {"error": f"ccswitch: this is a proxy; the dashboard is {PREFIX}/"})
        if path == "":
            return Reply(302, b"", (("location", PREFIX + "/"), ("cache-control", "no-store")))
        refused = self._cross_site(request)
        if refused:
            return _json(403, {"error": f"ccswitch: refused: {refused}"})
        if request.method == "GET" and path in ("/", "/index.html"):
            return Reply(200, page(self.token, base), PAGE_HEADERS)
        if request.method == "GET" and path == "/token":
            return _json(200, {"token": self.token})
        engine = self._engine()
        if engine is None:
            return _json(503, {"error": "ccswitch has no configuration loaded"})
        if request.method == "POST" and path in STATE_CHANGING:
            return self._act(engine, request, path)
        if request.method != "GET":
            return _json(405, {"error": f"no such action: {request.method} {path}"})
        if path == "/status":
            return _json(200, engine.status())
        if path == "/history":
            return _json(200, self._history(engine))
        if path == "/requests":
            store = engine.store.path if engine.store else None
            return _json(200, {"rows": recent_requests(store, engine.history.requests)})
        if path == "/tokens":
            return _json(200, tokens_by_day(engine.store.path if engine.store else None))
        if path == "/metrics":
            return Reply(
                200,
                engine.accounts.metrics.render(),
                (("content-type", METRICS_TYPE), ("cache-control", "no-store")),
            )
        return _json(404, {"error": f"no such page: {request.method} {path}"})

    def _cross_site(self, request: ControlRequest) -> str | None:
        """Why a request may come from another site's page, or None."""
        origin = request.headers.get("origin")
        if origin is not None and origin not in request.origins:
            return f"a request from another site (Origin {origin[:100]})"
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return f"a {fetch_site} request"
        if request.method == "GET":
            return None
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return "content-type must be application/json"
        sent = request.headers.get(TOKEN_HEADER, "")
        if not secrets.compare_digest(sent.encode(), self.token.encode()):
            return (
                f"missing or wrong {TOKEN_HEADER} (the dashboard page has it; "
                "the CLI asks GET /token)"
            )
        return None

    @staticmethod
    def _act(engine: Engine, request: ControlRequest, path: str) -> Reply:
        try:
            args = json.loads(request.body)
            if not isinstance(args, dict):
                raise TypeError("not an object")
            app, provider = str(args["app"]), str(args["provider"])
        except (ValueError, KeyError, TypeError) as e:
            return _json(400, {"error": f'expected JSON {{"app": …, "provider": …}}: {e}'})
        by = str(args.get("by") or CONTROL_CALLER)
        note: str | None = None
        try:
            if path == "/switch":
                note = engine.switch(app, provider, by)
            else:
                engine.reset(app, provider)
        except UnknownName as e:
            return _json(404, {"error": str(e)})
        except SwitchRefused as e:
            return _json(409, {"error": str(e)})
        answer: dict[str, Any] = {"ok": True, "app": app, "provider": provider}
        if note:
            answer["note"] = note
        return _json(200, answer)

    @staticmethod
    def _history(engine: Engine) -> dict[str, Any]:
        config = engine.router.config
        providers = [
            (name, pid, bool(provider.disabled))
            for name, app in config.apps.items()
            for pid, provider in app.providers.items()
        ]
        return series(engine.stats, engine.history, providers, engine.history.clock())


def _json(status: int, body: Any) -> Reply:
    return Reply(
        status,
        json.dumps(body, indent=2).encode(),
        (("content-type", "application/json"), ("cache-control", "no-store")),
    )


def dashboard_urls(listen: list[tuple[str, int]]) -> list[str]:
    """Where a browser on this machine opens the dashboard, one URL per listening address."""
    urls = []
    for host, port in listen:
        name = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        url = _origin("http", name, port) + PREFIX + "/"
        if url not in urls:
            urls.append(url)
    return urls
