"""The one pooled HTTP/1.1 client all attempts and probes share.

Every routed request passes through it, so it does only what an attempt needs: a kept-alive
connection per request in flight (reused across all clients, bounded in all), the request
written in one piece, the answer's head parsed by llhttp (httptools, the parser Node.js and
uvicorn use), and the body handed on as it arrives, decoded from gzip or deflate (the only
encodings it offers). It never reads the proxy environment (the caller names the proxy,
if any) and never follows a redirect.

The pool is here; one connection is in connection.py, the HTTP/1.1 of it in http11.py.
Errors are its own (errors.py): :class:`ConnectFailed` and :class:`ConnectTimeout` before a
request was sent, :class:`Disconnected` and :class:`BadAnswer` after. A request that a
kept-alive connection lost before the provider can have read it goes once more on a fresh one
(connection.unread says when); a POST the kernel took whole is never sent twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import time
from collections.abc import Iterable

from ccswitch_addon.core.proxy import ProxyUrl
from ccswitch_addon.upstream import dial
from ccswitch_addon.upstream.connection import Connection, Key, unread
from ccswitch_addon.upstream.errors import (
    BadAnswer,
    BadRequest,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    ProviderError,
)
from ccswitch_addon.upstream.http11 import ProviderResponse, host_port, request_bytes
from ccswitch_addon.upstream.tunnel import ProxyFailed, open_tunnel

__all__ = [
    "BadAnswer",
    "BadRequest",
    "ConnectFailed",
    "ConnectTimeout",
    "Disconnected",
    "ProviderClient",
    "ProviderError",
    "ProviderResponse",
    "ProxyFailed",
]

POOL_LIMIT = 1024  # connections open to all providers together
KEEPALIVE_SECONDS = 60.0  # an idle connection older than this is not reused

_DEFAULT_PORTS = {"http": 80, "https": 443}
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})  # sent again after a crossed idle close


class ProviderClient:
    """Kept-alive connections to every provider, at most ``limit`` open together."""

    def __init__(
        self,
        limit: int = POOL_LIMIT,
        keepalive: float = KEEPALIVE_SECONDS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.limit = limit
        self.keepalive = keepalive
        self._ssl = ssl_context
        self._idle: dict[Key, list[Connection]] = {}
        self._open = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._all: set[Connection] = set()
        self._origins: dict[str, tuple[tuple[str, str, int], str]] = {}
        self.closed = False

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:  # the system's trust store, as every other client here
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def request(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
        connect_timeout: float | None,
        proxy: ProxyUrl | None = None,
    ) -> ProviderResponse:
        """Send the request, through ``proxy`` when one is given; returns once the answer's
        head has come. ``url`` is sent as it is (already percent-encoded)."""
        origin, authority, target = self._split(url)
        key: Key = (*origin, proxy)
        data = request_bytes(method, target, authority, headers, body)
        fresh = False
        bodiless = method == "HEAD"
        idempotent = method in _IDEMPOTENT
        while True:
            conn, reused = await self._acquire(key, connect_timeout, fresh)
            try:
                await conn.send(data, bodiless)
                return ProviderResponse(self, conn)
            except Disconnected:
                self._release(conn, False)
                if reused and not fresh and unread(conn, idempotent):
                    fresh = True  # closed by the provider while idle: once more, anew
                    continue
                raise
            except BaseException:
                self._release(conn, False)
                raise

    async def close(self) -> None:
        self.closed = True
        conns = list(self._all)
        for conn in conns:
            conn.abort()  # shutting down: no TLS close_notify to wait out (up to 30 s)
        self._idle.clear()
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_result(None)
        # A transport closes its socket a turn of the loop after abort(): wait for that, so a
        # loop that ends next leaves no socket to the garbage collector.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while any(not conn.lost for conn in conns) and loop.time() < deadline:
            await asyncio.sleep(0.005)

    # --- the pool ----------------------------------------------------------------------------

    async def _acquire(
        self, key: Key, connect_timeout: float | None, fresh: bool
    ) -> tuple[Connection, bool]:
        while True:
            idle = self._idle.get(key)
            now = time.monotonic()
            while idle and now - idle[0].idle_since > self.keepalive:  # the oldest first
                self._release(idle.pop(0), False)
            while idle and not fresh:
                conn = idle.pop()
                if conn.lost or conn.transport is None or conn.transport.is_closing():
                    self._release(conn, False)
                    continue
                conn.reset()
                return conn, True
            if self.closed or self._open < self.limit or self._close_oldest_idle():
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: the turn goes to the next
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)
        if self.closed:
            raise ConnectFailed(OSError("the client is closed"))
        self._open += 1
        try:
            conn = await self._connect(key, connect_timeout)
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise
        self._all.add(conn)
        return conn, False

    async def _connect(self, key: Key, timeout: float | None) -> Connection:
        scheme, host, port, proxy = key
        loop = asyncio.get_running_loop()
        tls = self.ssl_context if scheme == "https" else None
        tunnelled = False
        try:
            async with asyncio.timeout(timeout or None):
                if proxy is None:
                    sock = await dial.open_socket(host, port)
                else:  # TLS to the provider runs inside the tunnel, by the provider's name
                    sock = await open_tunnel(proxy, host, port)
                    tunnelled = True
                # The transport owns the socket from here: it closes it on a failed TLS
                # handshake (closing it here too would leave the transport unclosed).
                _, conn = await loop.create_connection(
                    lambda: Connection(key, self),
                    sock=sock,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
        except TimeoutError:
            limit = f" in {timeout:g}s" if timeout else ""
            if proxy is not None and not tunnelled:
                raise ProxyFailed(proxy, f"no tunnel to {host}:{port}{limit}") from None
            raise ConnectTimeout(f"no connection to {host}:{port}{limit}") from None
        except OSError as e:  # refused, DNS, unreachable, TLS (ssl.SSLError is an OSError)
            raise ConnectFailed(e) from None
        return conn

    def _release(self, conn: Connection, reusable: bool) -> None:
        if reusable and not self.closed:
            conn.head = None
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.key, []).append(conn)
            self._wake_one()
            return
        conn.close()
        if conn in self._all:
            self._all.discard(conn)
            self._open -= 1
            idle = self._idle.get(conn.key)
            if idle and conn in idle:
                idle.remove(conn)
            self._wake_one()

    def _close_oldest_idle(self) -> bool:
        oldest: Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        self._idle[oldest.key].remove(oldest)
        self._release(oldest, False)
        return True

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _split(self, url: str) -> tuple[tuple[str, str, int], str, str]:
        """(pool key, Host header, request target) of an absolute http(s) URL."""
        scheme, sep, rest = url.partition("://")
        slash = rest.find("/")
        origin, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
        cached = self._origins.get(f"{scheme}://{origin}") if sep else None
        if cached is None:
            if scheme not in _DEFAULT_PORTS or not origin or "@" in origin:
                raise ValueError(f"not an http(s) URL: {scheme}://…")
            host, port = host_port(origin, _DEFAULT_PORTS[scheme])
            cached = ((scheme, host, port), origin)
            if len(self._origins) < 4096:
                self._origins[f"{scheme}://{origin}"] = cached
        key, authority = cached
        return key, authority, target
