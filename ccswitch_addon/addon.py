"""The mitmproxy addon: route model calls to the best healthy provider and fail over.

Run it as ``mitmdump -s ccswitch_addon/addon.py``. With flows.py, the only
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
import functools
import json
import logging
import os
from collections.abc import Awaitable
from typing import Any

from mitmproxy import command, ctx, eventsequence, exceptions, http, tls
from mitmproxy.log import ALERT
from mitmproxy.proxy.mode_specs import ReverseMode

from ccswitch_addon import compat, guard
from ccswitch_addon.cli.launch import TOOLS, ca_path, env_command
from ccswitch_addon.core.config import (
    AppConfig,
    Config,
    ConfigError,
    ProviderConfig,
    WebSocket,
    check_self_loop,
    load_config,
)
from ccswitch_addon.core.envfile import env_path, shown
from ccswitch_addon.core.paths import default_config_path, home_config_path
from ccswitch_addon.core.proxy import Proxies, option_problem
from ccswitch_addon.core.requestline import request_line
from ccswitch_addon.core.router import SwitchRefused, UnknownName
from ccswitch_addon.core.status import printable
from ccswitch_addon.core.switch import SwitchEvent
from ccswitch_addon.engine import Engine
from ccswitch_addon.flows import (
    ROUTED,
    attempt_flow,
    body_headers,
    exchange_of,
    is_internal,
    is_loopback,
    relay_copy,
    streams,
    to_response,
    told_head,
)
from ccswitch_addon.inline import after_addons, serve_after_addons
from ccswitch_addon.notify import Notifier
from ccswitch_addon.options import NAMES, OPTIONS, Settings
from ccswitch_addon.state.shared import DOWN_POLICIES, SharedState
from ccswitch_addon.state.store import Store, StoreError
from ccswitch_addon.upstream.answer import HEAD_HEADER
from ccswitch_addon.upstream.client import ProviderClient
from ccswitch_addon.upstream.exchange import Upstream
from ccswitch_addon.upstream.held import wants_stream
from ccswitch_addon.upstream.job import AttemptRecord, Exchange
from ccswitch_addon.upstream.probe import probe
from ccswitch_addon.upstream.relay import Relay
from ccswitch_addon.web.control import (
    Control,
    ControlRequest,
    Reach,
    dashboard_urls,
    own_origins,
    reach,
)
from ccswitch_addon.web.trust import Trust
from ccswitch_addon.wire.replies import api_error

__all__ = ["CcSwitch"]

UNLIST_SECONDS = 0.5
SHOWN_EVENTS = frozenset({"requestheaders", "response", "error"})  # enough to list a made flow
CONTROL_READ = "ccswitch_control_read"  # metadata key: a GET answered by the control endpoints

logger = logging.getLogger(__name__)
# One line a request on the console: kept out of mitmproxy's deprecated add_log event (compat)
request_logger = logging.getLogger("ccswitch_addon.requests")

TICK_SECONDS = 1.0
RELOAD_POLL_SECONDS = 1.0


def _read_config(path: Path) -> Config:
    """providers.yaml, refused when a provider would send requests back into this proxy."""
    config = load_config(path)
    port = getattr(ctx.options, "listen_port", None) or 8080
    check_self_loop(config, getattr(ctx.options, "listen_host", ""), port)
    return config


def _check_redis_options() -> None:
    """ValueError for a ccswitch_redis that is no Redis URL or an unknown ccswitch_redis_down."""
    url = ctx.options.ccswitch_redis
    if url and url.partition("://")[0] not in ("redis", "rediss", "unix"):
        # not echoed: the URL may hold the Redis password
        raise ValueError("ccswitch_redis: expected a redis://, rediss:// or unix:// URL")
    if ctx.options.ccswitch_redis_down not in DOWN_POLICIES:
        raise ValueError(
            f"ccswitch_redis_down: one of {', '.join(DOWN_POLICIES)}, "
            f"got {ctx.options.ccswitch_redis_down!r}"
        )


def _check_proxy_option(settings: Settings) -> None:
    """ValueError when ccswitch_upstream_proxy would send requests back into this proxy."""
    port = getattr(ctx.options, "listen_port", None) or 8080
    host = getattr(ctx.options, "listen_host", "")
    problem = option_problem(settings.upstream_proxy, os.environ, host, port)
    if problem:
        raise ValueError(f"ccswitch_upstream_proxy: {problem}")


def _proxies(settings: Settings) -> Proxies:
    """What the provider side reaches providers by: the option, and for ``env`` the proxy
    variables as they were when the option was set."""
    return Proxies(settings.upstream_proxy, Proxies.snapshot(os.environ))


def _show_original(flow: http.HTTPFlow, request: http.Request) -> None:
    flow.request = request


def _config_path() -> Path:
    option = ctx.options.ccswitch_config
    return Path(option).expanduser() if option else default_config_path()


class CcSwitch:
    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._routed: dict[str, tuple[Exchange, http.Request]] = {}
        self._running = False
        self._notifier = Notifier("")
        self._tasks: list[asyncio.Task[None]] = []
        self._config_stamp: tuple[object, ...] | None = None
        self.upstream: Upstream | None = None  # the provider side, once mitmproxy runs
        self.relay: Relay | None = None
        self._relay_ready: asyncio.Event | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._showing: set[asyncio.Task[None]] = set()  # attempt flows on their way to mitmweb
        self.control = Control(lambda: self.engine)  # its token lives as long as the process
        self.trust = Trust(_setup_hint)
        self.settings = Settings()
        self.gateway: SharedState | None = None  # team gateway (ccswitch_redis)
        self._seen = False  # attempt flows can be seen (a flow list or -w): _attempts_seen()

    # --- lifecycle ----------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        for option in OPTIONS:
            loader.add_option(option.name, str, option.default, option.help)
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
        if "save_stream_file" in updated:
            self._seen = _attempts_seen()
        try:
            settings = self.settings
            if updated & NAMES:
                settings = Settings.parse({name: getattr(ctx.options, name) for name in NAMES})
                _check_proxy_option(settings)
            if updated & {"ccswitch_redis", "ccswitch_redis_down"}:
                _check_redis_options()
        except ValueError as e:
            if self._running:
                raise exceptions.OptionsError(str(e)) from e  # mitmproxy keeps the old value
            # At start the old value is the bad one too: raising would make mitmproxy's
            # rollback configure again, raise again, and recurse. Its startup check exits
            # on this error instead.
            logger.error("ccswitch: %s", e)
            return
        if updated & NAMES:
            previous, self.settings = self.settings, settings
            # mitmproxy's per-connection lines (client connect, server disconnect, …) are
            # four a request; its warnings (a failed TLS handshake) still show.
            logging.getLogger("mitmproxy.proxy.server").setLevel(
                logging.WARNING if settings.quiet else logging.NOTSET
            )
            if self.upstream is not None:
                self.upstream.proxies = _proxies(settings)
        else:
            previous = self.settings
        if "ccswitch_notify" in updated:
            self._notifier.command = ctx.options.ccswitch_notify
        started = self.engine is not None
        if "ccswitch_config" in updated:
            self._load()  # the first load also opens the state file
        if started and ("ccswitch_state" in updated or previous.log_days != self.settings.log_days):
            self._open_store()

    # running and done stay synchronous: mitmproxy calls them from sync code when it reloads
    # a changed script file. The relay starts and stops in tasks; started() and stopped()
    # await them.
    def running(self) -> None:
        self._running = True
        compat.keep_out_of_add_log(ctx.master, request_logger.name)
        self._seen = _attempts_seen()
        self._force_lazy()
        if self.relay is None and self._relay_task is None:
            self._relay_task = compat.create_task(
                self._start_relay(), name="ccswitch provider relay"
            )
        if ctx.options.listen_host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning(
                "ccswitch: listening on %s, beyond loopback; %s",
                ctx.options.listen_host or "every interface",
                guard.remote_policy(self.settings),
            )
        server = ctx.master.addons.get("proxyserver")
        for url in dashboard_urls([a[:2] for a in server.listen_addrs()] if server else []):
            logger.info(
                "ccswitch: dashboard at %s (through the proxy: http://ccswitch.local/)", url
            )
        if not self._tasks:
            self._tasks = [
                compat.create_task(self._watch_config(), name="ccswitch config watcher"),
                compat.create_task(self._tick(), name="ccswitch timers and probes"),
            ]
            if ctx.options.ccswitch_redis and self.engine is not None:
                self.gateway = SharedState(
                    self.engine,
                    ctx.options.ccswitch_redis,
                    ctx.options.ccswitch_redis_prefix,
                    ctx.options.ccswitch_redis_down,
                )
                self._tasks.append(
                    compat.create_task(self.gateway.run(), name="ccswitch team gateway")
                )

    def done(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.upstream is not None:  # answered, not yet told: the request log keeps them
            for exchange, _ in self._routed.values():
                self.upstream.report(exchange)
        self._routed.clear()
        if self.relay is not None:
            relay, self.relay, self.upstream = self.relay, None, None
            # In-flight attempts are cancelled: their permits go back.
            self._stopping = compat.create_task(relay.stop(), name="ccswitch relay stop")
        if self.engine is not None:
            self.engine.close()

    async def started(self) -> None:
        """Once the relay serves (mitmproxy's running hook starts it)."""
        if self._relay_task is not None:
            await self._relay_task

    async def stopped(self) -> None:
        """Once the relay has stopped after done()."""
        if self._stopping is not None:
            await self._stopping

    async def _start_relay(self) -> None:
        """The provider side, on mitmproxy's own event loop."""
        if self.relay is not None or self.engine is None:
            return
        ready = self._relay_ready = self._relay_ready or asyncio.Event()
        engine = self.engine
        upstream = Upstream(
            engine.router,
            ProviderClient(),
            engine.request_done,
            engine.remember_breaker,
            engine.admit,
            engine.memory,
            engine.recall,
            _proxies(self.settings),
        )
        upstream.on_headers = engine.accounts.headers_seen
        engine.state_listeners.append(lambda app, pid, old, new: upstream.admission.wake(app, pid))
        relay = Relay(upstream)
        await relay.start()
        self.upstream, self.relay = upstream, relay
        ready.set()
        logger.debug("ccswitch: provider relay on 127.0.0.1:%d", relay.port)

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
            if not path.exists() and path.absolute() == home_config_path().absolute():
                # only when neither file was there; a file named on purpose is the one missing
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
            self.engine.warnings = self.trust.warnings
            self.engine.switches.add_listener(self._announce)
            self.engine.switches.add_listener(self._notifier)
            self._open_store()
        else:
            self.engine.reload(config)
        self._config_stamp = _stamps(Path(config.source))
        apps = ", ".join(f"{name} [{_queue_line(app)}]" for name, app in config.apps.items())
        logger.info("ccswitch: %s: %s", config.source, apps)

    def _open_store(self) -> None:
        assert self.engine is not None
        self.engine.close()
        option = ctx.options.ccswitch_state
        if not option:
            return
        try:
            store = Store(Path(option).expanduser(), self.settings.log_days)
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
            stamp = _stamps(path)
            if stamp == self._config_stamp:
                continue
            previous, self._config_stamp = self._config_stamp, stamp
            try:
                config = _read_config(path)
            except ConfigError as e:
                self.engine.config_refused(str(e))
                logger.log(
                    ALERT,
                    "ccswitch: reload refused, the previous configuration keeps serving: %s",
                    e,
                )
                continue
            keys_only = previous is not None and stamp[0] == previous[0]
            self._apply(config)
            what = f"the keys in {shown(env_path(path))}" if keys_only else str(path)
            logger.log(ALERT, "ccswitch: reloaded %s", what)

    async def _tick(self) -> None:
        """Once a second: active probes of open providers."""
        probes: set[asyncio.Task[None]] = set()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            if self.engine is None or self.upstream is None:
                continue
            # A recovered provider gets traffic back without a user's request as the probe.
            for app, provider in self.engine.probes_due():
                task = compat.create_task(
                    self._probe(app, provider), name=f"ccswitch probe {app.name}:{provider.id}"
                )
                probes.add(task)
                task.add_done_callback(probes.discard)

    async def _probe(self, app: AppConfig, provider: ProviderConfig) -> None:
        assert self.engine is not None
        ok, detail = False, "no answer"
        try:
            if self.upstream is not None:
                upstream = self.upstream
                ok, detail = await probe(upstream.client, app, provider, upstream.proxies)
        except Exception as e:  # a probe must never take the proxy down
            detail = f"probe failed: {e}"
        finally:
            self.engine.probe_done(app.name, provider.id, ok, detail)

    # --- TLS with the tools: is the CA trusted? ------------------------------------------

    def tls_failed_client(self, data: tls.TlsData) -> None:
        app = self._app_of(data.conn.sni)
        if app is None:
            return
        peer = data.conn.peername
        client = peer[0] if peer else "?"
        warning = self.trust.failed(app, data.conn.sni or "", client, data.conn.error or "")
        if warning:
            logger.warning("ccswitch: %s", warning)

    def tls_established_client(self, data: tls.TlsData) -> None:
        app = self._app_of(data.conn.sni)
        if app is not None and self.trust.succeeded(app):
            logger.info("ccswitch: a %s client trusts the proxy's CA now", app)

    def _app_of(self, host: str | None) -> str | None:
        if self.engine is None or not host:
            return None
        for name, app in self.engine.router.config.apps.items():
            if host.lower() in app.hosts:
                return name
        return None

    # --- request ------------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        guard.refuse_remote(flow, self.settings)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        guard.refuse_remote(flow, self.settings)

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        request = flow.request
        if self._answer_control(flow):
            return
        engine = self.engine
        if engine is None or is_internal(flow):
            return
        if request.method == "GET":
            self._websocket(flow, engine)
            if flow.response is not None:
                return
        match = guard.admit(flow, engine.router, self.settings)
        if match is None:
            return
        app = match.app
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
        if self.gateway is not None:
            # A fresh instance: its first read of Redis before it routes (a provider the
            # fleet has open must not get this instance's requests first).
            await self.gateway.first_read()
        relay = self.relay
        if relay is None:
            ready = self._relay_ready = self._relay_ready or asyncio.Event()
            await ready.wait()  # a request that arrived while the relay was starting
            relay = self.relay
            if relay is None or flow.error is not None:
                return
        exchange = exchange_of(request, app, match.endpoint)
        exchange.keep_records = self._seen
        self._routed[flow.id] = (exchange, request)
        compressed = "content-encoding" in request.headers
        if not wants_stream(app.api, exchange.path, exchange.body, compressed):
            exchange.whole = True  # served in a request hook, with no relay hop
            serve_after_addons(flow, relay.upstream, exchange)
            return
        # mitmproxy sends a copy pointed at the relay; as soon as the relay has it the flow
        # shows the tool's own request again (mitmweb's list, a -w file at shutdown).
        exchange.arrived = functools.partial(_show_original, flow, request)
        relay.add(flow.id, exchange)
        flow.request = relay_copy(request, relay.port, relay.token, flow.id)
        # The first attempt sets off as soon as every addon has seen the request, while
        # mitmproxy's copy is still on its way to the relay (upstream/early.py).
        after_addons(flow, functools.partial(relay.begin, flow.id))

    def _websocket(self, flow: http.HTTPFlow, engine: Engine) -> None:
        """Codex CLI tries a websocket before HTTP; passed through, it would bypass failover.
        A 426 makes it fall back to HTTP, which is routed, for the rest of its session."""
        request = flow.request
        if request.headers.get("upgrade", "").lower() != "websocket":
            return
        match = engine.router.match(request.host, request.path.partition("?")[0])
        if match is None or match.app.websocket is WebSocket.PASSTHROUGH:
            return
        app = match.app
        flow.response = http.Response.make(
            426,
            b'{"error":{"message":"ccswitch routes this API over HTTP only; use HTTP",'
            b'"type":"upgrade_required","code":"upgrade_required"}}',
            {"content-type": "application/json", "connection": "close"},
        )
        flow.comment = f"{app.name}: websocket refused (426), the tool falls back to HTTP"

    def _may_route(self, flow: http.HTTPFlow) -> bool:
        return (
            is_loopback(flow.client_conn.peername)
            or self.settings.allow_remote
            or bool(getattr(ctx.options, "proxyauth", None))
        )

    # --- response ------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """A routed flow's answer: the tool's own request back in the flow, the relay's
        stand-in head replaced by the real one once the exchange tells it (a coroutine only
        then), and what streams set to stream."""
        entry = self._routed.get(flow.id)
        if entry is None:
            return None
        flow.request = entry[1]
        response = flow.response
        if response is None:
            return None
        later = entry[0].later_head
        if later is not None:
            return told_head(flow, later)
        content_type, length = body_headers(response.headers)
        response.stream = streams(content_type, length)
        return None

    # response and error are plain functions: nothing in them waits, and mitmproxy awaits
    # only what a hook returns, so a coroutine per request would be work for nothing.
    def response(self, flow: http.HTTPFlow) -> None:
        entry = self._routed.pop(flow.id, None)
        if entry is not None:
            compat.forget_quiet(flow.client_conn.peername)
            self._settled(flow, entry[0], answered=True)
        elif flow.metadata.get(CONTROL_READ) and ctx.master.addons.get("view") is not None:
            # Out of mitmweb's flow list once it is answered: removing a live flow kills it.
            asyncio.get_running_loop().call_later(UNLIST_SECONDS, _unlist, flow)

    def error(self, flow: http.HTTPFlow) -> None:
        entry = self._routed.pop(flow.id, None)
        if entry is None:
            return
        exchange, original = entry
        compat.forget_quiet(flow.client_conn.peername)
        if self.relay is not None:
            self.relay.discard(flow.id)  # the relay never took it: the client went first
        flow.request = original
        if flow.response is not None and flow.response.headers.get(HEAD_HEADER) == "later":
            flow.response = None  # the relay's stand-in head (answer.py): no answer came
        self._settled(flow, exchange)

    def _settled(self, flow: http.HTTPFlow, exchange: Exchange, answered: bool = False) -> None:
        """Say in the flow what happened; then (after the answer has gone out, for one that
        is about to) tell the engine, write the console line, show each attempt."""
        finished = exchange.finished
        app = exchange.app.name
        if finished is None:
            flow.comment = f"{app}: the client went away before an answer"
            return
        flow.metadata[ROUTED] = {
            "app": app,
            "provider": finished.served,
            "attempts": [a.to_json() for a in finished.attempts],
            "route": finished.route,
            "why": finished.why,
        }
        flow.comment = finished.comment()
        if finished.served is None:
            flow.marked = ":warning:"
        elif len(finished.attempts) > 1:
            flow.marked = ":twisted_rightwards_arrows:"
        if answered:  # the answer (or a stream's end) goes out first
            compat.after_answer(self._report, flow, exchange, self.upstream)
        else:
            self._report(flow, exchange, self.upstream)

    def _report(self, flow: http.HTTPFlow, exchange: Exchange, upstream: Upstream | None) -> None:
        finished = exchange.finished
        assert finished is not None
        if upstream is not None:
            upstream.report(exchange)
        app = exchange.app.name
        status = flow.response.status_code if flow.response else None
        if request_logger.isEnabledFor(logging.INFO) and compat.heard(request_logger, logging.INFO):
            request_logger.info("ccswitch: %s", request_line(finished, status))
        records = exchange.records
        if (len(records) > 1 or any(r.failed for r in records)) and self._seen:
            # After the answer has gone to the client: showing is for people, not on its path.
            task = compat.create_task(
                self._show(flow, app, records), name=f"ccswitch attempts of {flow.id[:8]}"
            )
            self._showing.add(task)
            task.add_done_callback(self._showing.discard)

    @staticmethod
    async def _show(flow: http.HTTPFlow, app: str, records: list[AttemptRecord]) -> None:
        """Hand each attempt, as a flow of its own, to every addon (mitmweb's view, `-w`
        files, the console): the events that add and complete a flow, not the four of a
        live one (mitmweb lists a flow at requestheaders; files and the console take it at
        response or error)."""
        try:
            for record in records:
                made = attempt_flow(flow, app, record, len(records))
                for event in eventsequence.iterate(made):
                    if event.name in SHOWN_EVENTS:
                        await ctx.master.addons.handle_lifecycle(event)
        except Exception:  # showing an attempt must never break the proxy
            logger.exception("ccswitch: could not show an attempt flow")

    # --- telling the user --------------------------------------------------------------------

    @staticmethod
    def _announce(event: SwitchEvent) -> None:
        logger.log(ALERT, "ccswitch switch: %s", printable(event.describe()))

    # --- control: commands; the endpoints are in web/control.py ----------------------------------

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
        except (UnknownName, SwitchRefused) as e:
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
            self._engine().config_refused(str(e))
            raise exceptions.CommandError(str(e)) from None
        self._apply(config)

    def _answer_control(self, flow: http.HTTPFlow) -> bool:
        """The control endpoints and the dashboard (web/control.py); True when answered."""
        request, client = flow.request, flow.client_conn
        path = request.path.partition("?")[0]
        listen = (client.sockname[0], client.sockname[1]) if client.sockname else None
        reverse = isinstance(client.proxy_mode, ReverseMode)
        reached = reach(request.host, request.port, path, reverse=reverse, listen=listen)
        if reached is None:
            return False
        # The origin the browser saw: for a reverse listener its own address, not the target.
        host, port = listen if reached is Reach.REVERSE and listen else (request.host, request.port)
        scheme = "https" if client.tls else "http"
        reply = self.control.answer(
            ControlRequest(
                request.method,
                path,
                {name.lower(): value for name, value in request.headers.items()},
                request.get_content(strict=False) or b"",
                is_loopback(client.peername),
                reached,
                own_origins(reached, scheme, host, port),
            )
        )
        flow.response = to_response(reply)
        if request.method == "GET":
            flow.metadata[CONTROL_READ] = True  # a dashboard polls: keep it out of the flow list
        if reply.status == 200 and request.method == "POST":
            logger.log(ALERT, "ccswitch: %s via the control endpoint", path.rsplit("/", 1)[-1])
        return True


def _setup_hint(app: str) -> str:
    """The line that makes a tool trust the CA (and use the proxy), for the CA warning."""
    confdir = getattr(ctx.options, "confdir", "~/.mitmproxy")
    server = ctx.master.addons.get("proxyserver")
    bound = [addr[1] for addr in server.listen_addrs()] if server else []
    port = (bound[0] if bound else None) or getattr(ctx.options, "listen_port", None) or 8080
    if app not in TOOLS:
        return f"the tool with the CA {ca_path(confdir)} trusted"
    return f'eval "$({env_command(app, False, port, confdir)})"'


def _queue_line(app: AppConfig) -> str:
    """``official → chat (disabled: CHAT_API_KEY not set) → openrouter``."""
    marked = []
    for pid in app.queue:
        provider = app.providers[pid]
        if provider.disabled:
            why = f"{provider.missing} not set" if provider.missing else "see ccswitch check"
            marked.append(f"{pid} (disabled: {why})")
        else:
            marked.append(pid)
    return " → ".join(marked)


def _attempts_seen() -> bool:
    """Attempt flows are made only where someone can look at them: mitmweb's or the console
    UI's flow list, or a flow file (-w). Plain mitmdump would spend a millisecond a failover
    on them for its log alone, where the tool's flow names each attempt already."""
    return ctx.master.addons.get("view") is not None or bool(
        getattr(ctx.options, "save_stream_file", None)
    )


def _unlist(flow: http.HTTPFlow) -> None:
    view = ctx.master.addons.get("view")
    if view is not None and not flow.killable:
        view.remove([flow])


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _stamps(config: Path) -> tuple[object, ...]:
    """providers.yaml and the .env beside it: a key added there takes effect at once."""
    return _stamp(config), _stamp(env_path(config))


addons = [CcSwitch()]
