"""Small aiohttp fake providers and a relay on loopback, driven without mitmproxy.

A `Provider` answers each request with the next queued behaviour (or `default`), records what
it received and on which connection, and counts handlers that were cancelled because the
relay closed the connection (an attempt abandoned upstream). `Harness` runs a real `Relay`
and `Upstream` for a providers.yaml whose base URLs point at the fakes, and sends a request
to the relay the way the addon does: a registered `Exchange`, the token and the job id.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from e2e.fakes import error_body, json_body, sse_script

from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.record import Finished
from ccswitch_addon.core.router import Router
from ccswitch_addon.upstream.client import ProviderClient
from ccswitch_addon.upstream.exchange import Upstream
from ccswitch_addon.upstream.job import Exchange
from ccswitch_addon.upstream.relay import JOB_HEADER, TOKEN_HEADER, Relay

Behaviour = Callable[["Provider", web.Request], Awaitable[web.StreamResponse]]

SSE = {"content-type": "text/event-stream", "cache-control": "no-cache"}


async def wait_until(
    predicate: Callable[[], object], seconds: float = 10.0, what: str = "condition"
) -> None:
    """Poll until ``predicate()`` is true, at most ``seconds``: never a blind sleep."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@dataclass
class Seen:
    method: str
    path: str  # with the query, as sent
    headers: dict[str, str]  # lower-case names
    body: bytes
    connection: int


@dataclass
class Provider:
    default: Behaviour
    queue: deque[Behaviour] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    cancelled: int = 0  # handlers cancelled: the relay closed the connection mid-answer
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # for held(): opened by tests
    port: int = 0
    _runner: web.AppRunner | None = None
    _connections: dict[int, int] = field(default_factory=dict)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return len({s.connection for s in self.seen})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        key = id(transport)
        if key not in self._connections:
            self._connections[key] = next(self._numbers)
        self.seen.append(
            Seen(
                request.method,
                request.path_qs,
                {k.lower(): v for k, v in request.headers.items()},
                await request.read(),
                self._connections[key],
            )
        )
        behaviour = self.queue.popleft() if self.queue else self.default
        try:
            return await behaviour(self, request)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


# --- behaviours -------------------------------------------------------------------------------


def ok_json(api: str = "anthropic", text: str = "hello", output_tokens: int = 3) -> Behaviour:
    async def run(provider: Provider, request: web.Request) -> web.StreamResponse:
        body = json_body(api, "m", text=text, input_tokens=5, output_tokens=output_tokens)
        return web.json_response(body, headers={"x-served-by": str(provider.port)})

    return run


def status(
    code: int, api: str = "anthropic", headers: Mapping[str, str] | None = None
) -> Behaviour:
    async def run(provider: Provider, request: web.Request) -> web.StreamResponse:
        return web.json_response(error_body(api, code), status=code, headers=headers)

    return run


def stream(
    events: list[bytes],
    then: str = "end",
    gap: float = 0.0,
    headers: Mapping[str, str] | None = None,
    gated: list[bytes] | None = None,
) -> Behaviour:
    """Send ``events`` (``gap`` seconds apart); with ``gated``, wait for the provider's gate and
    send those too; then ``end`` the answer, ``hang`` (silent, open) or ``drop`` the connection
    without the chunked terminator."""

    async def run(provider: Provider, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={**SSE, **(headers or {})})
        await response.prepare(request)
        for event in events:
            await response.write(event)
            if gap:
                await asyncio.sleep(gap)  # the provider's own pace, not a test waiting
        if gated is not None:
            await provider.gate.wait()
            for event in gated:
                await response.write(event)
        if then == "hang":
            await asyncio.Event().wait()
        if then == "drop":
            assert request.transport is not None
            request.transport.close()  # what was written goes out, the terminator never
            return response
        await response.write_eof()
        return response

    return run


def held(then: Behaviour) -> Behaviour:
    """Answer only once the provider's gate is opened."""

    async def run(provider: Provider, request: web.Request) -> web.StreamResponse:
        await provider.gate.wait()
        return await then(provider, request)

    return run


def hang() -> Behaviour:
    async def run(provider: Provider, request: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return run


def script(api: str, deltas: int = 3, output_tokens: int = 7) -> Any:
    return sse_script(api, "m", deltas=deltas, input_tokens=5, output_tokens=output_tokens)


def whole(api: str, deltas: int = 3) -> list[bytes]:
    s = script(api, deltas)
    return [*s.prelude, *s.deltas, *s.finale]


# --- the relay -----------------------------------------------------------------------------------

API_PATHS = {
    "claude": ("api.anthropic.com", "/v1/messages"),
    "codex": ("api.openai.com", "/v1/responses"),
    "gemini": (
        "generativelanguage.googleapis.com",
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
    ),
}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    exchange: Exchange


class Harness:
    """A Relay and its Upstream on this loop, for ``config`` (a providers.yaml text in which
    ``<NAME>`` is the URL of the fake called NAME)."""

    def __init__(self, providers: dict[str, Provider], config: str, env: dict[str, str]) -> None:
        self.providers = providers
        text = config
        for name, provider in providers.items():
            text = text.replace(f"<{name}>", provider.url)
        self.config = parse_config(text, "providers.yaml", env=env)
        self.router = Router(self.config)
        self.finished: list[Finished] = []
        self.cooldowns: list[tuple[str, str]] = []
        self.upstream = Upstream(
            self.router,
            ProviderClient(),
            self.finished.append,
            lambda app, pid: self.cooldowns.append((app, pid)),
        )
        self.relay = Relay(self.upstream)
        self.client = aiohttp.ClientSession()
        self._jobs = itertools.count(1)

    async def start(self) -> None:
        await self.relay.start()

    async def stop(self) -> None:
        await self.client.close()
        await self.relay.stop()

    def exchange(
        self,
        app: str = "claude",
        path: str | None = None,
        body: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[str, Exchange]:
        """Register an exchange as the request hook does; returns its job id."""
        host, default_path = API_PATHS[app]
        path = path or default_path
        match = self.router.match(host, path.partition("?")[0])
        assert match is not None, path
        content = json.dumps(body if body is not None else {"model": "m", "stream": True})
        fields = tuple(
            (k.encode(), v.encode())
            for k, v in {"content-type": "application/json", **(headers or {})}.items()
        )
        exchange = Exchange(
            app=match.app,
            endpoint=match.endpoint,
            method="POST",
            path=path,
            headers=fields,
            body=content.encode(),
        )
        job = f"job-{next(self._jobs)}"
        self.relay.add(job, exchange)
        return job, exchange

    def open(self, job: str) -> Any:
        """The request mitmproxy would send to the relay for ``job`` (a context manager)."""
        return self.client.post(
            f"http://127.0.0.1:{self.relay.port}/",
            headers={TOKEN_HEADER: self.relay.token, JOB_HEADER: job},
        )

    async def send(self, app: str = "claude", **kwargs: Any) -> Answer:
        job, exchange = self.exchange(app, **kwargs)
        async with self.open(job) as response:
            body = await response.read()
            headers = {k.lower(): v for k, v in response.headers.items()}
            return Answer(response.status, headers, body, exchange)

    def breaker(self, pid: str, app: str = "claude") -> Any:
        return self.router.breaker(app, pid)
