"""The mitmproxy addon: route model calls to the best healthy provider and fail over.

Run it as ``mitmdump -s ccswitch_addon/addon.py``. With attempts.py and flows.py, the only
modules that touch mitmproxy; the decisions are made by the engine and the routing core.
"""

# No `from __future__ import annotations` here: mitmproxy runs this file as a script that is
# not in sys.modules while it executes, and dataclasses then fail on string annotations.
import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("ccswitch_addon") is None:
    # `mitmdump -s ccswitch_addon/addon.py` from a checkout that is not pip-installed:
    # mitmproxy runs this file as a script, so make its package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncio
import json
import logging
import time
from typing import Any

from mitmproxy import command, ctx, exceptions, http
from mitmproxy.addons.clientplayback import ReplayHandler
from mitmproxy.log import ALERT
from mitmproxy.utils import asyncio_utils

from ccswitch_addon.attempts import Attempts
from ccswitch_addon.core.config import (
    AppConfig,
    Auth,
    Config,
    ConfigError,
    ProviderConfig,
    check_self_loop,
    load_config,
)
from ccswitch_addon.core.paths import default_config_path, default_state_path
from ccswitch_addon.core.router import Selection, UnknownName
from ccswitch_addon.core.switch import SwitchEvent
from ccswitch_addon.engine import Engine, Finished
from ccswitch_addon.flows import (
    ATTEMPT,
    PROBE,
    Original,
    Routed,
    body_headers,
    error_outcome,
    is_internal,
    is_loopback,
    label,
    mask_key,
    probe_flow,
    response_outcome,
    rewrite_request,
    streams,
    to_response,
    watch_body,
)
from ccswitch_addon.notify import Notifier
from ccswitch_addon.state.shared import DOWN_POLICIES, SharedState
from ccswitch_addon.state.store import Store, StoreError
from ccswitch_addon.web.dashboard import PAGE
from ccswitch_addon.wire.replies import api_error, unavailable
from ccswitch_addon.wire.usage import BodyWatch

__all__ = ["CcSwitch"]

logger = logging.getLogger(__name__)

CONTROL_HOST = "ccswitch.local"
TICK_SECONDS = 1.0
RELOAD_POLL_SECONDS = 1.0


def _read_config(path: Path) -> Config:
    """providers.yaml, refused when a provider would send requests back into this proxy."""
    config = load_config(path)
    port = getattr(ctx.options, "listen_port", None) or 8080
    check_self_loop(config, getattr(ctx.options, "listen_host", ""), port)
    return config


def _config_path() -> Path:
    option = ctx.options.ccswitch_config
    return Path(option).expanduser() if option else default_config_path()


class CcSwitch:
    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._routed: dict[str, Routed] = {}
        self._running = False
        self._notifier = Notifier("")
        self._tasks: list[asyncio.Task[None]] = []
        self._config_stamp: tuple[float, int] | None = None
        self.attempts: Attempts | None = None  # with the engine
        self.gateway: SharedState | None = None  # team gateway (ccswitch_redis)

    # --- lifecycle ----------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option(
            "ccswitch_config",
            str,
            "",
            "providers.yaml; default ./providers.yaml, else ~/.ccswitch/providers.yaml",
        )
        loader.add_option(
            "ccswitch_state",
            str,
            str(default_state_path()),
            "SQLite state file; empty to keep state in memory only",
        )
        loader.add_option("ccswitch_log_days", int, 30, "days of request log to keep")
        loader.add_option(
            "ccswitch_notify",
            str,
            "",
            "shell command run on each switch event, the event as JSON on stdin",
        )
        loader.add_option(
            "ccswitch_allow_remote",
            bool,
            False,
            "route (and spend API keys) for clients that are not on loopback",
        )
        # Team gateway (state/shared.py); read once, at start.
        loader.add_option(
            "ccswitch_redis",
            str,
            "",
            "redis://, rediss:// or unix:// URL of a Redis shared with other instances "
            "(breakers, active provider, switch events); empty: this instance alone",
        )
        loader.add_option(
            "ccswitch_redis_prefix", str, "ccsw", "prefix of the keys in ccswitch_redis"
        )
        loader.add_option(
            "ccswitch_redis_down",
            str,
            DOWN_POLICIES[0],
            "Redis unreachable: a breaker open from shared state stays open until its time "
            "runs out (keep_open), or this instance trusts its own breakers (local)",
            DOWN_POLICIES,  # the choices (positional: the README test's loader takes no keywords)
        )

    def configure(self, updated: set[str]) -> None:
        if "connection_strategy" in updated:
            self._force_lazy()
        if "ccswitch_log_days" in updated and ctx.options.ccswitch_log_days < 1:
            raise exceptions.OptionsError("ccswitch_log_days must be at least 1")
        if "ccswitch_redis" in updated and ctx.options.ccswitch_redis:
            scheme = ctx.options.ccswitch_redis.partition("://")[0]
            if scheme not in ("redis", "rediss", "unix"):
                raise exceptions.OptionsError(
                    "ccswitch_redis: a redis://, rediss:// or unix:// URL"
                )
        if ctx.options.ccswitch_redis_down not in DOWN_POLICIES:
            raise exceptions.OptionsError(f"ccswitch_redis_down: one of {', '.join(DOWN_POLICIES)}")
        if "ccswitch_notify" in updated:
            self._notifier.command = ctx.options.ccswitch_notify
        started = self.engine is not None
        if "ccswitch_config" in updated:
            self._load()  # the first load also opens the state file
        if started and updated & {"ccswitch_state", "ccswitch_log_days"}:
            self._open_store()

    def running(self) -> None:
        self._running = True
        self._force_lazy()
        if ctx.options.listen_host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning(
                "ccswitch: listening on %s, beyond loopback; remote clients get 403 "
                "unless proxyauth or ccswitch_allow_remote is set",
                ctx.options.listen_host or "every interface",
            )
        if not self._tasks:
            self._tasks = [
                asyncio_utils.create_task(self._watch_config(), name="ccswitch config watcher"),
                asyncio_utils.create_task(self._tick(), name="ccswitch timers and probes"),
            ]
            if ctx.options.ccswitch_redis and self.engine is not None:
                self.gateway = SharedState(
                    self.engine,
                    ctx.options.ccswitch_redis,
                    ctx.options.ccswitch_redis_prefix,
                    ctx.options.ccswitch_redis_down,
                )
                self._tasks.append(
                    asyncio_utils.create_task(self.gateway.run(), name="ccswitch team gateway")
                )

    def done(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.attempts is not None:
            for routed in self._routed.values():
                self.attempts.release(routed)
        self._routed.clear()
        if self.engine is not None:
            self.engine.close()

    @staticmethod
    def _force_lazy() -> None:
        # Eager connects to the original host at CONNECT: a dead primary would kill the
        # request before the request hook can send it elsewhere.
        if getattr(ctx.options, "connection_strategy", "lazy") != "lazy":
            ctx.options.update(connection_strategy="lazy")

    def _load(self) -> None:
        path = _config_path()
        try:
            config = _read_config(path)
        except ConfigError as e:
            if self._running:
                raise exceptions.OptionsError(str(e)) from e
            logger.error("%s", e)  # at start: mitmproxy's startup check exits on it
            if not path.exists():
                logger.error(
                    "ccswitch: looked for ./providers.yaml and ~/.ccswitch/providers.yaml;"
                    " `ccswitch init` writes an example to start from"
                )
            return
        self._apply(config)

    def _apply(self, config: Config) -> None:
        for warning in config.warnings:
            logger.warning("%s", warning)
        if self.engine is None:
            self.engine = Engine(config)
            self.attempts = Attempts(self.engine)
            self.engine.switches.add_listener(self._announce)
            self.engine.switches.add_listener(self._notifier)
            self._open_store()
        else:
            self.engine.reload(config)
        self._config_stamp = _stamp(Path(config.source))
        apps = ", ".join(f"{name} [{' → '.join(app.queue)}]" for name, app in config.apps.items())
        logger.info("ccswitch: %s: %s", config.source, apps)

    def _open_store(self) -> None:
        assert self.engine is not None
        self.engine.close()
        option = ctx.options.ccswitch_state
        if not option:
            return
        try:
            store = Store(Path(option).expanduser(), ctx.options.ccswitch_log_days)
        except StoreError as e:
            logger.log(ALERT, "ccswitch: %s; routing goes on with state in memory only", e)
            return
        self.engine.attach_store(store)

    async def _watch_config(self) -> None:
        """Hot reload: a changed providers.yaml takes effect; a broken one is refused."""
        while True:
            await asyncio.sleep(RELOAD_POLL_SECONDS)
            if self.engine is None:
                continue
            path = Path(self.engine.router.config.source)
            stamp = _stamp(path)
            if stamp == self._config_stamp:
                continue
            self._config_stamp = stamp
            try:
                config = _read_config(path)
            except ConfigError as e:
                logger.log(
                    ALERT,
                    "ccswitch: reload refused, the previous configuration keeps serving: %s",
                    e,
                )
                continue
            self._apply(config)
            logger.log(ALERT, "ccswitch: reloaded %s", path)

    async def _tick(self) -> None:
        """Once a second: requests silent past first_byte_seconds, and active probes."""
        probes: set[asyncio.Task[None]] = set()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            if self.engine is None or self.attempts is None:
                continue
            now = time.time()
            for routed in list(self._routed.values()):
                limit = routed.app.breaker.first_byte_seconds
                if routed.awaiting and limit and now - routed.attempt_wall > limit:
                    self.attempts.first_byte_late(routed)
            # A recovered provider gets traffic back without a user's request as the probe.
            for app, provider in self.engine.probes_due():
                task = asyncio_utils.create_task(
                    self._probe(app, provider), name=f"ccswitch probe {app.name}:{provider.id}"
                )
                probes.add(task)
                task.add_done_callback(probes.discard)

    async def _probe(self, app: AppConfig, provider: ProviderConfig) -> None:
        assert self.engine is not None
        ok, detail = False, "no answer"
        try:
            probe = probe_flow(app, provider)
            await ReplayHandler(probe, ctx.options).replay()
            if probe.response is not None:
                status = probe.response.status_code
                # Without a key of its own (passthrough) a probe can only show the host answers.
                keyless = provider.auth is Auth.PASSTHROUGH
                ok = 200 <= status < 300 or (keyless and status < 500 and status not in (408, 429))
                detail = str(status)
            elif probe.error is not None:
                detail = probe.error.msg
        except Exception as e:  # a probe must never take the proxy down
            detail = f"probe failed: {e}"
        finally:
            self.engine.probe_done(app.name, provider.id, ok, detail)

    # --- request ------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        request = flow.request
        if request.host == CONTROL_HOST:
            self._control(flow)
            return
        attempts = self.attempts
        if is_internal(flow) or self.engine is None or attempts is None or request.method != "POST":
            return
        router = self.engine.router
        app = router.match(request.host, request.path.partition("?")[0])
        if app is None:
            return
        if not self._may_route(flow):
            flow.response = to_response(
                api_error(
                    app.api,
                    403,
                    "ccswitch: this proxy routes with API keys for loopback clients "
                    "only; set proxyauth or ccswitch_allow_remote=true to allow others",
                )
            )
            return
        selection = router.select_providers(app.name)
        routed = Routed(app, selection.providers, Original.of(request), self._skipped(selection))
        for provider in selection.providers:
            permit = router.acquire(app.name, provider.id)
            if permit is None and router.held(app.name, provider.id):
                permit = await attempts.acquire(routed, provider)
            permit = await self.engine.admit(app.name, provider.id, permit)  # team gateway
            if permit is not None:
                routed.provider, routed.permit = provider, permit
                break
        if flow.error is not None:  # the client went away while the request waited
            attempts.release(routed)
            return
        if routed.provider is None:
            flow.response = to_response(
                unavailable(
                    app.api, app.name, selection.reason or "all_unavailable", selection.retry_at
                )
            )
            flow.metadata["ccswitch"] = {"app": app.name, "provider": None, "attempts": []}
            flow.comment = f"{app.name}: no provider available"
            return
        try:
            routed.models = rewrite_request(request, app, routed.provider)
        except Exception:
            attempts.release(routed)
            raise
        attempts.start(routed)
        self._routed[flow.id] = routed

    def _may_route(self, flow: http.HTTPFlow) -> bool:
        return (
            is_loopback(flow.client_conn.peername)
            or ctx.options.ccswitch_allow_remote
            or bool(getattr(ctx.options, "proxyauth", None))
        )

    def _skipped(self, selection: Selection) -> list[str]:
        """Queue members left out of the selection, as reasons for the comment and event."""
        assert self.engine is not None
        chosen = {p.id for p in selection.providers}
        notes = []
        for pid in selection.app.queue:
            if pid not in chosen:
                provider = selection.app.providers[pid]
                state = (
                    "disabled"
                    if provider.disabled
                    else self.engine.router.breaker(selection.app.name, pid).label()
                )
                notes.append(f"{pid}: {state}")
        return notes

    # --- response ------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        routed = self._routed.get(flow.id)
        if routed is None:
            if is_internal(flow):
                if flow.response is not None:
                    flow.response.stream = False  # retries are buffered, then handed over
                self._mask_internal(flow)
            return
        response, provider = flow.response, routed.provider
        if response is None or provider is None or self.engine is None or self.attempts is None:
            return
        routed.awaiting = False
        mask_key(flow.request, provider)
        if response.status_code >= 400:
            return
        # It answers: requests held for this provider's first answers may go.
        self.engine.router.confirm(routed.app.name, provider.id, routed.permit)
        self.attempts.wake(routed.app.name, provider.id)
        content_type, length, _ = body_headers(response.headers)
        if streams(content_type, length):
            # Success: it streams to the client as it comes; the watcher only looks.
            routed.watch = BodyWatch(routed.app.api, content_type)
            response.stream = routed.watch
            label(response, provider.id, 1)

    async def response(self, flow: http.HTTPFlow) -> None:
        routed = self._routed.get(flow.id)  # stays while retries run, for _tick to watch
        if routed is None:
            return  # not routed, or a retry or probe (handled by the addon that sent it)
        response, attempts = flow.response, self.attempts
        if routed.provider is None or response is None or attempts is None:
            self._routed.pop(flow.id, None)
            return
        routed.awaiting = False
        try:
            if routed.watch is None and response.status_code < 400:
                routed.watch = watch_body(routed.app.api, response)  # a small JSON answer
            outcome = response_outcome(response, routed)
            attempts.finish(routed, outcome, response)
            served = routed.provider if not outcome.retry else None
            if outcome.retry and routed.app.failover:
                served = await attempts.fail_over(flow, routed)
            self._done(flow, routed, served)
        finally:
            self._routed.pop(flow.id, None)
            attempts.release(routed)

    def error(self, flow: http.HTTPFlow) -> None:
        if is_internal(flow):
            self._mask_internal(flow)
            return
        routed = self._routed.pop(flow.id, None)
        if routed is None or routed.provider is None or self.attempts is None:
            return
        routed.awaiting = False
        mask_key(flow.request, routed.provider)
        try:
            self.attempts.finish(routed, error_outcome(flow), None)
            self._done(flow, routed, None)
        finally:
            self.attempts.release(routed)

    def _mask_internal(self, flow: http.HTTPFlow) -> None:
        info = flow.metadata.get(ATTEMPT) or flow.metadata.get(PROBE) or {}
        if self.engine is None:
            return
        try:
            provider = self.engine.router.provider(info.get("app", ""), info.get("provider", ""))
        except UnknownName:
            return
        mask_key(flow.request, provider)

    # --- telling the user --------------------------------------------------------------------

    def _done(self, flow: http.HTTPFlow, routed: Routed, served: ProviderConfig | None) -> None:
        assert self.engine is not None
        response = flow.response
        usage = routed.watch.usage if routed.watch else None
        finished = Finished(
            app=routed.app.name,
            served=served.id if served else None,
            attempts=routed.attempts,
            skipped=routed.skipped,
            model_requested=routed.models[0],
            model_sent=routed.models[1],
            total_ms=round((time.time() - routed.started) * 1000, 1),
            ttfb_ms=round((response.timestamp_start - routed.started) * 1000, 1)
            if response is not None and response.timestamp_start
            else None,
            streaming=bool(routed.watch and routed.watch.sse),
        )
        if usage is not None:
            finished.usage = usage
        flow.metadata["ccswitch"] = {
            "app": finished.app,
            "provider": finished.served,
            "attempts": [a.to_json() for a in routed.attempts],
        }
        flow.comment = finished.comment()
        if served is None:
            flow.marked = ":warning:"
        elif len(routed.attempts) > 1:
            flow.marked = ":twisted_rightwards_arrows:"
        if response is not None and not response.stream:  # a streamed one got them already
            label(response, routed.attempts[-1].provider, len(routed.attempts))
        self.engine.request_done(finished)

    @staticmethod
    def _announce(event: SwitchEvent) -> None:
        logger.log(ALERT, "ccswitch switch: %s", event.describe())

    # --- control: commands and the ccswitch.local host -------------------------------------

    def _engine(self) -> Engine:
        if self.engine is None:
            raise exceptions.CommandError("ccswitch has no configuration loaded")
        return self.engine

    @command.command("ccswitch.status")
    def status(self) -> str:
        """The routing status as JSON."""
        return json.dumps(self._engine().status(), indent=2)

    @command.command("ccswitch.switch")
    def switch(self, app: str, provider: str) -> None:
        """Make PROVIDER the current provider of APP."""
        try:
            self._engine().switch(app, provider)
        except UnknownName as e:
            raise exceptions.CommandError(str(e)) from None
        logger.log(ALERT, "ccswitch: %s now routes to %s first", app, provider)

    @command.command("ccswitch.reset")
    def reset(self, app: str, provider: str) -> None:
        """Close the breaker of PROVIDER of APP and clear its cooldown."""
        try:
            self._engine().reset(app, provider)
        except UnknownName as e:
            raise exceptions.CommandError(str(e)) from None
        logger.log(ALERT, "ccswitch: %s:%s reset", app, provider)

    @command.command("ccswitch.reload")
    def reload(self) -> None:
        """Read providers.yaml again; a broken file is refused and the old one keeps serving."""
        try:
            config = _read_config(_config_path())
        except ConfigError as e:
            raise exceptions.CommandError(str(e)) from None
        self._apply(config)

    def _control(self, flow: http.HTTPFlow) -> None:
        if not is_loopback(flow.client_conn.peername):
            flow.response = http.Response.make(403, b"ccswitch: loopback clients only\n")
            return
        path = flow.request.path.partition("?")[0]
        if flow.request.method == "GET" and path in ("/", "/index.html"):
            flow.response = http.Response.make(
                200, PAGE, {"content-type": "text/html; charset=utf-8", "cache-control": "no-store"}
            )
            return
        reply = self._engine().control(
            flow.request.method, path, flow.request.get_content(strict=False) or b""
        )
        flow.response = to_response(reply)
        if reply.status == 200 and flow.request.method == "POST":
            logger.log(ALERT, "ccswitch: %s via %s", path.strip("/"), CONTROL_HOST)


def _stamp(path: Path) -> tuple[float, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime, stat.st_size


addons = [CcSwitch()]
