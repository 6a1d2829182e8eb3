"""The relay: a loopback server on mitmproxy's own event loop that serves routed flows.

The request hook points a routed flow here, with this process's token and the flow's id;
the relay runs the exchange registered under that id and answers as it goes, so mitmproxy
streams the chosen provider's answer on to the tool. Anything without the token is refused.
"""

from __future__ import annotations

import hmac
import logging
import secrets

from aiohttp import web

from ccswitch_addon.upstream.exchange import Exchange, Upstream

__all__ = ["JOB_HEADER", "TOKEN_HEADER", "Relay"]

logger = logging.getLogger(__name__)

TOKEN_HEADER = "x-ccswitch-relay"
JOB_HEADER = "x-ccswitch-job"


class Relay:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.token = secrets.token_urlsafe(32)
        self.port = 0
        self.jobs: dict[str, Exchange] = {}
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=1024)  # the body stays with mitmproxy's flow
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A client that goes away cancels its handler, and with it the provider's request.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.upstream.session.close()

    def add(self, key: str, exchange: Exchange) -> None:
        self.jobs[key] = exchange

    def discard(self, key: str) -> None:
        self.jobs.pop(key, None)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            return web.Response(status=403, text="ccswitch relay: not for direct use\n")
        exchange = self.jobs.pop(request.headers.get(JOB_HEADER, ""), None)
        if exchange is None:
            return web.Response(status=410, text="ccswitch relay: no such request\n")
        return await self.upstream.serve(exchange, request)
