"""The mitmproxy addon: route model calls to the best healthy provider and fail over.

Run it as ``mitmdump -s ccswitch_addon/addon.py``. This is the only module that touches
mitmproxy; the decisions are made by the routing core (router, breaker, outcome, switch).
"""


import sys
from pathlib import Path

# No `from __future__ import annotations` here: mitmproxy runs this file as a script that is
# not in sys.modules while it executes, and dataclasses then fail on string annotations.
if __package__ in (None, ""):  # loaded as a script by `mitmdump -s ccswitch_addon/addon.py`
    _root = str(Path(__file__).resolve().parent.parent)
    if _root not in sys.path:
        sys.path.insert(0, _root)

import ipaddress
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import command, connection, ctx, exceptions, http
from mitmproxy.addons.clientplayback import ReplayHandler
from mitmproxy.log import ALERT
from mitmproxy.net.http import url

from ccswitch_addon.breaker import Permit, State
from ccswitch_addon.config import (
    Api,
    AppConfig,
    Auth,
    Config,
    ConfigError,
    ProviderConfig,
    load_config,
)
from ccswitch_addon.outcome import Effect, ErrorKind, Outcome, classify_error, classify_status
from ccswitch_addon.paths import default_config_path, default_state_path
from ccswitch_addon.replies import Reply, api_error, unavailable
from ccswitch_addon.rewrite import (
    CLIENT_CREDENTIAL_HEADERS,
    CLIENT_CREDENTIAL_QUERY,
    credential_headers,
    join_path,
    rewrite_body_model,
    rewrite_gemini_path,
)
from ccswitch_addon.router import Router, Selection, UnknownName
from ccswitch_addon.status import build_status
from ccswitch_addon.switch import SwitchEvent, SwitchManager
from ccswitch_addon.usage import BodyWatch

__all__ = ["CcSwitch"]

logger = logging.getLogger(__name__)

CONTROL_HOST = "ccswitch.local"
ATTEMPT = "ccswitch_attempt"  # metadata key of the flows that carry a retry


@dataclass
class _Routed:
    """What the addon keeps about one client request while it is being served."""

    app: AppConfig  # the configuration the request started with, kept through a reload
    candidates: tuple[ProviderConfig, ...]
    original: http.Request  # as the client sent it, to rewrite again for the next provider
    skipped: list[str]
    provider: ProviderConfig | None = None
    permit: Permit | None = None
    started: float = field(default_factory=time.monotonic)
    attempt_started: float = 0.0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    watch: BodyWatch | None = None


def _is_loopback(address: Any) -> bool:
    try:
        ip = ipaddress.ip_address(address[0])
    except (TypeError, ValueError, IndexError):
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _response(reply: Reply) -> http.Response:
    return http.Response.make(reply.status, reply.body, dict(reply.headers))


class CcSwitch:
    def __init__(self) -> None:
        self.router: Router | None = None
        self.switches = SwitchManager()
        self.switches.add_listener(self._announce)
        self._routed: dict[str, _Routed] = {}
        self._running = False

    # --- lifecycle ----------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option(
            "ccswitch_config",
            str,
            "",
            "providers.yaml; default ./providers.yaml, else ~/.ccswitch/providers.yaml",
        )
        loader.add_option("ccswitch_state", str, str(default_state_path()), "SQLite state file")
        loader.add_option(
            "ccswitch_allow_remote",
            bool,
            False,
            "route (and spend API keys) for clients that are not on loopback",
        )

    def configure(self, updated: set[str]) -> None:
        if "connection_strategy" in updated and ctx.options.connection_strategy != "lazy":
            # Eager connects to the original host at CONNECT: a dead primary would kill the
            # request before the request hook can send it elsewhere.
            ctx.options.update(connection_strategy="lazy")
        if "ccswitch_config" in updated:
            self._load(ctx.options.ccswitch_config)

    def running(self) -> None:
        self._running = True
        if ctx.options.listen_host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning(
                "ccswitch: listening on %s, beyond loopback; remote clients get 403 "
                "unless proxyauth or ccswitch_allow_remote is set",
                ctx.options.listen_host or "every interface",
            )

    def done(self) -> None:
        for routed in self._routed.values():
            self._release(routed, classify_error(ErrorKind.CLIENT_GONE))
        self._routed.clear()

    def _load(self, option: str) -> None:
        path = Path(option).expanduser() if option else default_config_path()
        try:
            config = load_config(path)
        except ConfigError as e:
            if self._running:
                raise exceptions.OptionsError(str(e)) from e
            logger.error("%s", e)  # at start: mitmproxy's startup check exits on it
            return
        self._apply(config)

    def _apply(self, config: Config) -> None:
        for warning in config.warnings:
            logger.warning("%s", warning)
        if self.router is None:
            self.router = Router(config, on_state_change=self._state_changed)
        else:
            self.router.reload(config)
        apps = ", ".join(f"{name} [{' → '.join(app.queue)}]" for name, app in config.apps.items())
        logger.info("ccswitch: %s: %s", config.source, apps)

    # --- request ------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        request = flow.request
        if request.host == CONTROL_HOST:
            self._control(flow)
            return
        if ATTEMPT in flow.metadata or self.router is None or request.method != "POST":
            return
        app = self.router.match(request.host, request.path.partition("?")[0])
        if app is None:
            return
        if not self._may_route(flow):
            flow.response = _response(
                api_error(
                    app.api,
                    403,
                    "ccswitch: this proxy routes with API keys for loopback clients "
                    "only; set proxyauth or ccswitch_allow_remote=true to allow others",
                )
            )
            return
        selection = self.router.select_providers(app.name)
        routed = _Routed(app, selection.providers, request.copy(), self._skipped(selection))
        for provider in selection.providers:
            permit = self.router.acquire(app.name, provider.id)
            if permit is not None:
                routed.provider, routed.permit = provider, permit
                break
        if routed.provider is None:
            flow.response = _response(
                unavailable(
                    app.api, app.name, selection.reason or "all_unavailable", selection.retry_at
                )
            )
            flow.metadata["ccswitch"] = {"app": app.name, "provider": None, "attempts": []}
            flow.comment = f"{app.name}: no provider available"
            return
        try:
            self._rewrite(request, routed.original, app, routed.provider)
        except Exception:
            self._release(routed, classify_error(ErrorKind.CLIENT_GONE))
            raise
        routed.attempt_started = time.monotonic()
        self._routed[flow.id] = routed

    def _may_route(self, flow: http.HTTPFlow) -> bool:
        return (
            _is_loopback(flow.client_conn.peername)
            or ctx.options.ccswitch_allow_remote
            or bool(getattr(ctx.options, "proxyauth", None))
        )

    def _skipped(self, selection: Selection) -> list[str]:
        """Queue members left out of the selection, as reasons for the comment and event."""
        assert self.router is not None
        chosen = {p.id for p in selection.providers}
        notes = []
        for pid in selection.app.queue:
            if pid not in chosen:
                provider = selection.app.providers[pid]
                state = (
                    "disabled"
                    if provider.disabled
                    else self.router.breaker(selection.app.name, pid).label()
                )
                notes.append(f"{pid}: {state}")
        return notes

    @staticmethod
    def _rewrite(
        request: http.Request, original: http.Request, app: AppConfig, provider: ProviderConfig
    ) -> None:
        """Point ``request`` (a fresh copy of ``original``) at ``provider``."""
        path, _, query = original.path.partition("?")
        if app.api is Api.GEMINI:
            path, _, _ = rewrite_gemini_path(path, provider.models)
        elif provider.models:
            body, _ = rewrite_body_model(original.get_content(strict=False) or b"", provider.models)
            if body is not None:
                request.set_content(body)
        request.scheme = provider.scheme
        request.host = provider.host
        request.port = provider.port
        request.path = join_path(provider.base_path, path) + (f"?{query}" if query else "")
        request.host_header = url.hostport(provider.scheme, provider.host, provider.port)
        if provider.auth is not Auth.PASSTHROUGH:
            for name in CLIENT_CREDENTIAL_HEADERS:
                request.headers.pop(name, None)
            if CLIENT_CREDENTIAL_QUERY in request.query:
                del request.query[CLIENT_CREDENTIAL_QUERY]
            for name, value in credential_headers(provider):
                request.headers[name] = value
        for name, value in provider.headers.items():
            request.headers[name] = value

    # --- response ------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if ATTEMPT in flow.metadata:
            flow.response.stream = False  # retries are buffered, then handed to the client flow
            return
        routed = self._routed.get(flow.id)
        if routed is None or flow.response is None or routed.provider is None:
            return
        response = flow.response
        if response.status_code < 400:
            # Success: stream it as it comes; the watcher only looks.
            routed.watch = BodyWatch(routed.app.api, response.headers.get("content-type", ""))
            response.stream = routed.watch
            self._label(response, routed.provider.id, 1)

    async def response(self, flow: http.HTTPFlow) -> None:
        if ATTEMPT in flow.metadata:
            return
        routed = self._routed.pop(flow.id, None)
        if routed is None or routed.provider is None or flow.response is None:
            return
        try:
            outcome = self._response_outcome(flow.response, routed.watch)
            self._finish_attempt(routed, outcome, flow.response.status_code)
            served: ProviderConfig | None = routed.provider if not outcome.retry else None
            if outcome.retry and routed.app.failover:
                served = await self._fail_over(flow, routed)
            self._annotate(flow, routed, served)
        finally:
            self._release(routed, classify_error(ErrorKind.CLIENT_GONE))

    def error(self, flow: http.HTTPFlow) -> None:
        if ATTEMPT in flow.metadata:
            return
        routed = self._routed.pop(flow.id, None)
        if routed is None or routed.provider is None:
            return
        try:
            outcome = self._error_outcome(flow)
            self._finish_attempt(routed, outcome, None, flow.error.msg if flow.error else "")
            self._annotate(flow, routed, None)
        finally:
            self._release(routed, classify_error(ErrorKind.CLIENT_GONE))

    def _response_outcome(self, response: http.Response, watch: BodyWatch | None) -> Outcome:
        outcome = classify_status(
            response.status_code, response.headers.get("retry-after"), time.time()
        )
        if watch is not None and outcome.effect is Effect.SUCCESS:
            result = watch.result()
            if result.error:
                return classify_error(ErrorKind.STREAM, result.error)
        return outcome

    @staticmethod
    def _error_outcome(flow: http.HTTPFlow) -> Outcome:
        message = flow.error.msg if flow.error else ""
        if flow.error and flow.error.msg == flow.error.KILLED_MESSAGE:
            return classify_error(ErrorKind.CLIENT_GONE, "killed")
        if flow.response is not None:  # the headers came, then the stream broke
            return classify_error(ErrorKind.STREAM, message)
        server = flow.server_conn
        if server.timestamp_tcp_setup is None or (
            server.tls and server.timestamp_tls_setup is None
        ):
            return classify_error(ErrorKind.CONNECT, message)
        if not flow.client_conn.connected:
            return classify_error(ErrorKind.CLIENT_GONE, message)
        return classify_error(ErrorKind.RESET, message)

    def _finish_attempt(
        self, routed: _Routed, outcome: Outcome, status: int | None, error: str = ""
    ) -> None:
        assert routed.provider is not None
        entry: dict[str, Any] = {
            "provider": routed.provider.id,
            "ms": round((time.monotonic() - routed.attempt_started) * 1000, 1),
        }
        if status is not None:
            entry["status"] = status
        if status is None or outcome.reason not in ("ok", str(status)):
            entry["error"] = error or outcome.reason
        routed.attempts.append(entry)
        permit, routed.permit = routed.permit, None
        if self.router is not None:
            self.router.record_result(routed.app.name, routed.provider.id, outcome, permit)

    async def _fail_over(self, flow: http.HTTPFlow, routed: _Routed) -> ProviderConfig | None:
        """Send the request on to the next providers until one answers without a retryable error."""
        assert self.router is not None
        tried = {a["provider"] for a in routed.attempts}
        for provider in routed.candidates:
            if len(routed.attempts) >= routed.app.max_attempts:
                break
            if provider.id in tried:
                continue
            permit = self.router.acquire(routed.app.name, provider.id)
            if permit is None:
                routed.skipped.append(
                    f"{provider.id}: {self.router.breaker(routed.app.name, provider.id).label()}"
                )
                continue
            routed.provider, routed.permit = provider, permit
            attempt = self._attempt_flow(flow, routed, provider)
            routed.attempt_started = time.monotonic()
            await ReplayHandler(attempt, ctx.options).replay()
            if attempt.response is not None:
                watch = BodyWatch(routed.app.api, attempt.response.headers.get("content-type", ""))
                watch(attempt.response.raw_content or b"")
                watch(b"")
                outcome = self._response_outcome(attempt.response, watch)
                self._finish_attempt(routed, outcome, attempt.response.status_code)
                if not outcome.retry:
                    flow.response = attempt.response.copy()
                    return provider
                flow.response = attempt.response.copy()  # the last error so far
            else:
                outcome = self._error_outcome(attempt)
                self._finish_attempt(
                    routed, outcome, None, attempt.error.msg if attempt.error else ""
                )
        return None

    def _attempt_flow(
        self, flow: http.HTTPFlow, routed: _Routed, provider: ProviderConfig
    ) -> http.HTTPFlow:
        request = routed.original.copy()
        self._rewrite(request, routed.original, routed.app, provider)
        attempt = http.HTTPFlow(
            flow.client_conn, connection.Server(address=(provider.host, provider.port))
        )
        attempt.request = request
        attempt.is_replay = "request"
        attempt.metadata[ATTEMPT] = {
            "of": flow.id,
            "app": routed.app.name,
            "provider": provider.id,
            "attempt": len(routed.attempts) + 1,
        }
        attempt.comment = (
            f"{routed.app.name} attempt {len(routed.attempts) + 1} → {provider.id} "
            f"(retry of {flow.id[:8]})"
        )
        attempt.marked = ":repeat:"
        return attempt

    def _release(self, routed: _Routed, outcome: Outcome) -> None:
        """Hand back a permit still held (an exception or abort on the way): never leak one."""
        permit, routed.permit = routed.permit, None
        if permit is not None and routed.provider is not None and self.router is not None:
            self.router.record_result(routed.app.name, routed.provider.id, outcome, permit)

    # --- telling the user --------------------------------------------------------------------

    @staticmethod
    def _label(response: http.Response, provider: str, attempts: int) -> None:
        response.headers["x-ccswitch-provider"] = provider
        response.headers["x-ccswitch-attempts"] = str(attempts)

    def _annotate(
        self, flow: http.HTTPFlow, routed: _Routed, served: ProviderConfig | None
    ) -> None:
        app = routed.app.name
        failures = [
            f"{a['provider']}: {a.get('error') or a.get('status')}"
            for a in routed.attempts
            if served is None or a["provider"] != served.id
        ]
        flow.metadata["ccswitch"] = {
            "app": app,
            "provider": served.id if served else None,
            "attempts": routed.attempts,
        }
        if flow.response is not None and (served is None or len(routed.attempts) > 1):
            last = routed.attempts[-1]["provider"] if routed.attempts else "-"
            self._label(flow.response, served.id if served else last, len(routed.attempts))
        if served is None:
            flow.comment = f"{app}: every attempt failed ({'; '.join(failures)})"
            flow.marked = ":warning:"
            return
        why = failures + routed.skipped
        flow.comment = f"{app} → {served.id}" + (f" (after {', '.join(why)})" if why else "")
        if failures:
            flow.marked = ":twisted_rightwards_arrows:"
        assert self.router is not None
        current = self.router.current(app)
        if why:
            reason = "after " + ", ".join(why)
        elif served.id == current and current != routed.app.queue[0]:
            reason = "manual switch"
        else:
            reason = "recovered"
        self.switches.served(app, served.id, reason, baseline=current)

    def _announce(self, event: SwitchEvent) -> None:
        logger.log(ALERT, "ccswitch switch: %s", event.describe())

    def _state_changed(self, app: str, provider: str, old: State, new: State) -> None:
        logger.info("ccswitch breaker %s:%s %s → %s", app, provider, old.value, new.value)

    # --- control: commands and the ccswitch.local host -------------------------------------

    def _require_router(self) -> Router:
        if self.router is None:
            raise exceptions.CommandError("ccswitch has no configuration loaded")
        return self.router

    @command.command("ccswitch.status")
    def status(self) -> str:
        """The routing status as JSON."""
        return json.dumps(build_status(self._require_router(), self.switches), indent=2)

    @command.command("ccswitch.switch")
    def switch(self, app: str, provider: str) -> None:
        """Make PROVIDER the current provider of APP."""
        try:
            self._require_router().switch(app, provider)
        except UnknownName as e:
            raise exceptions.CommandError(str(e)) from None
        logger.log(ALERT, "ccswitch: %s now routes to %s first", app, provider)

    @command.command("ccswitch.reset")
    def reset(self, app: str, provider: str) -> None:
        """Close the breaker of PROVIDER of APP and clear its cooldown."""
        try:
            self._require_router().reset(app, provider)
        except UnknownName as e:
            raise exceptions.CommandError(str(e)) from None
        logger.log(ALERT, "ccswitch: %s:%s reset", app, provider)

    @command.command("ccswitch.reload")
    def reload(self) -> None:
        """Read providers.yaml again; a broken file is rejected and the old one keeps serving."""
        option = ctx.options.ccswitch_config
        path = Path(option).expanduser() if option else default_config_path()
        try:
            config = load_config(path)
        except ConfigError as e:
            raise exceptions.CommandError(str(e)) from None
        self._apply(config)

    def _control(self, flow: http.HTTPFlow) -> None:
        if not _is_loopback(flow.client_conn.peername):
            flow.response = http.Response.make(403, b"ccswitch: loopback clients only\n")
            return
        path = flow.request.path.partition("?")[0]
        method = flow.request.method
        try:
            if method == "GET" and path == "/status":
                body = build_status(self._require_router(), self.switches)
                flow.response = _json(200, body)
            elif method == "POST" and path in ("/switch", "/reset"):
                args = json.loads(flow.request.get_content(strict=False) or b"{}")
                app, provider = str(args["app"]), str(args["provider"])
                (self.switch if path == "/switch" else self.reset)(app, provider)
                flow.response = _json(200, {"ok": True, "app": app, "provider": provider})
            else:
                flow.response = _json(404, {"error": f"no such page: {method} {path}"})
        except exceptions.CommandError as e:
            flow.response = _json(404, {"error": str(e)})
        except (ValueError, KeyError, TypeError) as e:
            flow.response = _json(400, {"error": f'expected JSON {{"app", "provider"}}: {e}'})


def _json(status: int, body: Any) -> http.Response:
    return http.Response.make(
        status,
        json.dumps(body, indent=2).encode(),
        {"content-type": "application/json", "cache-control": "no-store"},
    )


addons = [CcSwitch()]
