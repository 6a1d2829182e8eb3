"""The one pooled HTTP/1.1 client all attempts and probes share.

Every routed request passes through it, so it does only what an attempt needs: a kept-alive
connection per request in flight (reused across all clients, bounded in all), the request
written in one piece, the answer's head parsed by llhttp (httptools, the parser Node.js and
uvicorn use), and the body handed on as it arrives, decoded from gzip or deflate (the only
encodings it offers). It never reads the proxy environment and never follows a redirect.

Errors are its own: :class:`ConnectFailed` and :class:`ConnectTimeout` before a request was
sent, :class:`Disconnected` and :class:`BadAnswer` after. A kept-alive connection the provider
closed while it was idle is retried once on a fresh one, before anything was read from it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import time
import zlib
from collections.abc import Iterable

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from ccswitch_addon.upstream import dial

__all__ = [
    "BadAnswer",
    "ConnectFailed",
    "ConnectTimeout",
    "Disconnected",
    "ProviderClient",
    "ProviderError",
    "ProviderResponse",
]

POOL_LIMIT = 1024  # connections open to all providers together
KEEPALIVE_SECONDS = 60.0  # an idle connection older than this is not reused
HEAD_LIMIT = 64 * 1024  # an answer's status line and headers together
READ_HIGH = 256 * 1024  # body bytes held unread before the provider's socket is paused
DECODE_STEP = 256 * 1024  # at most this much decompressed per read: no bomb in one go

_DEFAULT_PORTS = {"http": 80, "https": 443}
_BAD_HEADER_CHARS = ("\r", "\n", "\0")

Key = tuple[str, str, int]  # scheme, host, port


class ProviderError(Exception):
    """The exchange with a provider failed below HTTP: a transport or framing fault."""


class ConnectFailed(ProviderError):
    """No connection: refused, unresolvable, unreachable, or TLS failed."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__(str(os_error) or type(os_error).__name__)
        self.os_error = os_error


class ConnectTimeout(ProviderError):
    """The connection was not made within the connect timeout."""


class Disconnected(ProviderError):
    """The connection broke before the answer was complete."""


class BadAnswer(ProviderError):
    """The provider's bytes are not an HTTP/1.x answer this client can read."""


STALE_SECONDS = 1.0  # a kept-alive connection that drops this soon after a request, silent


class _Surplus(Exception):  # a signal out of llhttp's callbacks, not an error
    """Stop parsing: what follows is not part of the answer asked for."""


def _crossed(conn: _Connection) -> bool:
    """Whether a request and the provider's close of an idle connection crossed: nothing of
    an answer came, and the connection dropped at once. Then the provider never took the
    request, and it goes again on a new connection. A provider that drops a request it
    worked on is not asked twice."""
    if conn.received:
        return False
    return asyncio.get_running_loop().time() - conn.sent_at < STALE_SECONDS


class _Connection(asyncio.Protocol):
    """One connection to a provider; one request at a time."""

    def __init__(self, key: Key, client: ProviderClient) -> None:
        self.key = key
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.idle_since = 0.0
        self.received = False  # a byte of the current answer has come
        self.sent_at = 0.0  # loop time the current request was written
        self.bodiless = False  # the request was HEAD: the answer has no body whatever it says
        self.surplus = False  # bytes came after the answer was complete: never reused
        self.paused = False
        self.parser = httptools.HttpResponseParser(self)
        self.head: asyncio.Future[None] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.head_size = 0  # header bytes parsed
        self.head_bytes = 0  # bytes fed while the head was not yet whole
        self.body: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False  # as the answer said, once it is complete
        self.until_close = False  # no length and not chunked: the end of the connection ends it
        self.informational = False
        self.error: ProviderError | None = None

    # --- asyncio -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.head is None or self.complete:  # talking out of turn: never reused
            self.surplus = True
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
            if not self.head.done():  # all of it was head: llhttp buffers a header whole
                self.head_bytes += len(data)
                if self.head_bytes > HEAD_LIMIT:
                    raise BadAnswer("answer head too large")
        except httptools.HttpParserUpgrade:
            self._fail(BadAnswer("the provider switched protocols"))
        except httptools.HttpParserError as e:
            self._fail(BadAnswer(f"malformed answer: {e}"))
        except _Surplus:  # a second answer after the first: the first stands, the rest goes
            self.surplus = True
            self.close()
        except ProviderError as e:  # raised by a callback below
            self._fail(e)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.transport = None
        if self.head is None:  # idle in the pool: out of it
            self.client._release(self, False)
            return
        if self.complete or self.error is not None:
            return
        if self.head.done() and self.until_close and exc is None:
            self.complete = True  # the end of the connection is the end of this answer
            self._wake()
            return
        when = "mid-answer" if self.head.done() else "before answering"
        why = (
            f"connection lost {when}: {exc}"
            if exc
            else f"the provider closed the connection {when}"
        )
        self._fail(Disconnected(why))

    def pause_writing(self) -> None:  # the request is written whole; the kernel takes it
        pass

    def resume_writing(self) -> None:
        pass

    # --- llhttp's callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            raise _Surplus

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > HEAD_LIMIT:
            raise BadAnswer("answer head too large")
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # informational (103 Early Hints): the answer follows
            self.informational = True
            self.headers = []
            self.head_size = 0
            return
        self.status = status
        framed = any(
            name.lower() in ("content-length", "transfer-encoding") for name, _ in self.headers
        )
        self.until_close = not framed and status not in (204, 304) and not self.bodiless
        assert self.head is not None
        if not self.head.done():
            self.head.set_result(None)
        if self.bodiless:  # llhttp would wait for the body a HEAD answer only announces
            self.complete = True
            raise _Surplus  # stop parsing; whatever the provider sends on is not this answer's

    def on_body(self, data: bytes) -> None:
        self.body.append(data)
        self.buffered += len(data)
        if self.buffered > READ_HIGH and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it after the feed
        self._wake()

    # --- the exchange ------------------------------------------------------------------------

    def begin(self, data: bytes, bodiless: bool) -> asyncio.Future[None]:
        """Send one request; the future is done once the answer's head has come."""
        if self.transport is None or self.transport.is_closing():
            raise Disconnected("the provider closed the connection before the request")
        loop = asyncio.get_running_loop()
        self.head = loop.create_future()
        self.received = False
        self.bodiless = bodiless
        self.sent_at = loop.time()
        self.transport.write(data)
        return self.head

    def take(self) -> bytes:
        data = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        self.body.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        return (
            self.complete
            and not self.lost
            and not self.until_close
            and not self.surplus
            and self.error is None
            and self.keep_alive
        )

    def reset(self) -> None:
        """Ready for the next request on this connection."""
        self.parser = httptools.HttpResponseParser(self)
        self.head = self.waiter = None
        self.status = self.head_size = self.head_bytes = self.buffered = 0
        self.headers = []
        self.body.clear()
        self.complete = self.keep_alive = self.until_close = self.informational = False
        self.received = self.bodiless = False
        self.error = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: ProviderError) -> None:
        if self.error is None:
            self.error = error
        if self.head is not None and not self.head.done():
            self.head.set_exception(error)
            self.head.exception()  # retrieved here: the waiter may be gone
        self._wake()
        self.close()

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class ProviderResponse:
    """A provider's answer: status and headers at once, the body read with ``readany``."""

    __slots__ = ("_client", "_conn", "_decoder", "headers", "status")

    _decoder: _Decoder | None

    def __init__(self, client: ProviderClient, conn: _Connection) -> None:
        self._client = client
        self._conn: _Connection | None = conn
        self.status = conn.status
        headers = CIMultiDict(conn.headers)
        coding = headers.get("content-encoding", "").strip().lower()
        self._decoder = _Decoder(coding) if coding in _DECODED else None
        if self._decoder is not None:  # the tool gets the body decoded, so not the header
            headers.popall("content-encoding")
        self.headers = CIMultiDictProxy(headers)

    async def readany(self) -> bytes:
        """The body's next bytes as they come; b"" at its end. Raises Disconnected when the
        connection broke first, BadAnswer on a malformed body."""
        decoder = self._decoder
        if decoder is not None and decoder.pending:
            return decoder.feed(b"") or await self.readany()
        conn = self._conn
        while conn is not None:
            if conn.body:
                data = conn.take()
                if decoder is None:
                    return data
                out = decoder.feed(data)
                if out:
                    return out
                continue
            if conn.complete:
                self.release()
                return decoder.finish() if decoder is not None else b""
            if conn.error is not None:
                raise conn.error
            conn.waiter = asyncio.get_running_loop().create_future()
            await conn.waiter
        return b""

    def arrived(self, limit: int) -> bytes | None:
        """The whole body when all of it has come already, is at most ``limit`` bytes and
        needs no decoding, the connection released; else None (read it with readany)."""
        conn = self._conn
        if conn is None or not conn.complete or conn.buffered > limit or self._decoder is not None:
            return None
        data = conn.take()
        self.release()
        return data

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool when the answer was
        read whole, else it is closed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client._release(conn, conn.reusable() and not conn.body)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client._release(conn, False)


_DECODED = frozenset({"gzip", "x-gzip", "deflate"})


class _Decoder:
    """A gzip or deflate body decoded as it comes, at most DECODE_STEP bytes a call.

    gzip may come as several members one after another (RFC 1952); deflate as the RFC says
    (zlib-wrapped) or raw, as some servers send it. A body that ends inside its compressed
    stream is broken, not complete."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._wbits = 16 + zlib.MAX_WBITS if coding != "deflate" else 32 + zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(self._wbits)
        self._tail = b""  # input not decoded yet (the step was full)
        self._started = False  # some input was taken: no more falling back to raw deflate

    @property
    def pending(self) -> bool:
        return bool(self._tail)

    def feed(self, data: bytes) -> bytes:
        data, self._tail = self._tail + data if self._tail else data, b""
        try:
            out = self._zlib.decompress(data, DECODE_STEP)
        except zlib.error as e:
            if self.coding == "deflate" and not self._started:
                self._wbits, self._started = -zlib.MAX_WBITS, True
                self._zlib = zlib.decompressobj(self._wbits)
                return self.feed(data)
            raise BadAnswer(f"the body does not decode: {e}") from None
        self._started = True
        self._tail = self._zlib.unconsumed_tail
        if self._zlib.eof and self._zlib.unused_data:  # the next gzip member
            rest = self._zlib.unused_data
            self._zlib = zlib.decompressobj(self._wbits)
            self._tail = rest + self._tail
        return out

    def finish(self) -> bytes:
        out = self._zlib.flush()
        if self._started and not self._zlib.eof and self._wbits > 0:
            raise BadAnswer("the body ends inside its compressed stream")
        return out


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
        self._idle: dict[Key, list[_Connection]] = {}
        self._open = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._all: set[_Connection] = set()
        self._origins: dict[str, tuple[Key, str]] = {}
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
    ) -> ProviderResponse:
        """Send the request; returns once the answer's head has come. ``url`` is sent as it
        is (already percent-encoded)."""
        key, authority, target = self._split(url)
        data = _request_bytes(method, target, authority, headers, body)
        fresh = False
        bodiless = method == "HEAD"
        while True:
            conn, reused = await self._acquire(key, connect_timeout, fresh)
            try:
                await conn.begin(data, bodiless)
            except Disconnected:
                self._release(conn, False)
                if reused and not fresh and _crossed(conn):
                    fresh = True  # closed by the provider while idle: once more, anew
                    continue
                raise
            except BaseException:
                self._release(conn, False)
                raise
            return ProviderResponse(self, conn)

    async def close(self) -> None:
        self.closed = True
        for conn in list(self._all):
            conn.close()
        self._idle.clear()
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_result(None)

    # --- the pool ----------------------------------------------------------------------------

    async def _acquire(
        self, key: Key, connect_timeout: float | None, fresh: bool
    ) -> tuple[_Connection, bool]:
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

    async def _connect(self, key: Key, timeout: float | None) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls = self.ssl_context if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout or None):
                sock = await dial.open_socket(host, port)
                try:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(key, self),
                        sock=sock,
                        ssl=tls,
                        server_hostname=host if tls is not None else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            limit = f" in {timeout:g}s" if timeout else ""
            raise ConnectTimeout(f"no connection to {host}:{port}{limit}") from None
        except OSError as e:  # refused, DNS, unreachable, TLS (ssl.SSLError is an OSError)
            raise ConnectFailed(e) from None
        return conn

    def _release(self, conn: _Connection, reusable: bool) -> None:
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
        oldest: _Connection | None = None
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

    def _split(self, url: str) -> tuple[Key, str, str]:
        """(pool key, Host header, request target) of an absolute http(s) URL."""
        scheme, sep, rest = url.partition("://")
        slash = rest.find("/")
        origin, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
        cached = self._origins.get(f"{scheme}://{origin}") if sep else None
        if cached is None:
            if scheme not in _DEFAULT_PORTS or not origin or "@" in origin:
                raise ValueError(f"not an http(s) URL: {scheme}://…")
            host, port = _host_port(origin, _DEFAULT_PORTS[scheme])
            cached = ((scheme, host, port), origin)
            if len(self._origins) < 4096:
                self._origins[f"{scheme}://{origin}"] = cached
        key, authority = cached
        return key, authority, target


def _host_port(origin: str, default: int) -> tuple[str, int]:
    if origin.startswith("["):  # [v6]:port
        host, _, rest = origin[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = origin.rpartition(":") if ":" in origin else (origin, "", "")
    try:
        port = int(port_text) if port_text else default
    except ValueError:
        raise ValueError("the URL's port is not a number") from None
    if not host or not 0 < port < 65536:
        raise ValueError("the URL has no host or a bad port")
    return host, port


def _request_bytes(
    method: str,
    target: str,
    authority: str,
    headers: Iterable[tuple[str, str]],
    body: bytes | None,
) -> bytes:
    """The request as it goes on the wire. Header values keep the bytes the tool sent (they
    were read as latin-1); a value only configured as text goes as UTF-8."""
    lines = [f"{method} {target} HTTP/1.1\r\nhost: {authority}\r\n"]
    accept = False
    for name, value in headers:
        lines.append(f"{name}: {value}\r\n")
        accept = accept or name.lower() == "accept"
    if not accept:
        lines.append("accept: */*\r\n")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body or b'')}\r\n")
    lines.append("\r\n")
    text = "".join(lines)
    breaks = len(lines) + 1  # one a line, two in the first
    if (
        text.count("\n") != breaks
        or text.count("\r") != breaks
        or "\0" in text
        or text.count(" ", 0, text.index("\r")) != 2
    ):
        raise ValueError("the request line or a header holds a line break, NUL or space")
    try:
        head = text.encode("latin-1")
    except UnicodeEncodeError:
        head = b"".join(_latin1_or_utf8(line) for line in lines)
    return head + body if body else head


def _latin1_or_utf8(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")
