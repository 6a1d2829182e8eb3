"""The relay: a loopback server on mitmproxy's own event loop that serves routed flows.

The request hook points a routed flow here, with this process's token and the flow's id;
the relay runs the exchange registered under that id and answers as it goes, so mitmproxy
streams the chosen provider's answer on to the tool. Anything without the token is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import Awaitable

from ccswitch_addon.upstream.answer import HEAD_HEADER, Answer, RelayProtocol, RelayRequest
from ccswitch_addon.upstream.early import Begun
from ccswitch_addon.upstream.exchange import Upstream
from ccswitch_addon.upstream.job import Exchange

__all__ = ["JOB_HEADER", "TOKEN_HEADER", "Relay"]

logger = logging.getLogger(__name__)

TOKEN_HEADER = "x-ccswitch-relay"
JOB_HEADER = "x-ccswitch-job"


class Relay:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.token = secrets.token_urlsafe(32)
        self._token = self.token.encode()
        self.port = 0
        self.jobs: dict[str, Exchange | Begun] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[RelayProtocol] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: RelayProtocol(self._handle, self._connections), "127.0.0.1", 0, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, end every connection (their provider requests are cancelled), and
        close the client's pool."""
        if self._server is not None:
            self._server.close()
            self._server = None
        serving = [c.task for c in self._connections if c.task is not None]
        for job in self.jobs.values():  # begun, never asked for: their permits go back
            if isinstance(job, Begun):
                job.cancel()
                serving.append(job.task)
        self.jobs.clear()
        for connection in list(self._connections):
            connection.close()
        if serving:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait(serving, timeout=5.0)
        await self.upstream.client.close()

    def add(self, key: str, exchange: Exchange) -> None:
        self.jobs[key] = exchange

    def begin(self, key: str) -> Awaitable[None] | None:
        """Start the exchange added under ``key`` now, before its request reaches the relay
        (``early.py``); what it returns, the caller awaits before mitmproxy goes on."""
        job = self.jobs.get(key)
        if not isinstance(job, Exchange):
            return None
        begun = self.jobs[key] = Begun(self.upstream, job)
        return begun.first_step()

    def discard(self, key: str) -> None:
        job = self.jobs.pop(key, None)
        if isinstance(job, Begun):
            job.cancel()

    def _handle(self, request: RelayRequest, answer: Answer) -> Awaitable[None] | None:
        """The exchange's serving, for the connection's task to await (no coroutine of its
        own in between), or None once refused."""
        token = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(token.encode(), self._token):
            answer.whole(403, _TEXT, b"ccswitch relay: not for direct use\n")
            return None
        job = self.jobs.pop(request.headers.get(JOB_HEADER, ""), None)
        if job is None:
            answer.whole(410, _TEXT, b"ccswitch relay: no such request\n")
            return None
        exchange = job.exchange if isinstance(job, Begun) else job
        if exchange.arrived is not None:
            exchange.arrived()
        if request.headers.get(HEAD_HEADER) == "later":
            exchange.later_head = answer.later()
        if isinstance(job, Begun):
            return job.served(answer)
        return self.upstream.serve(exchange, answer)


_TEXT = (("content-type", "text/plain; charset=utf-8"),)
