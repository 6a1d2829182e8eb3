"""One connection to a provider: the asyncio protocol, fed to llhttp (httptools).

It holds one answer at a time (status, headers, the body as it comes) and tells the pool when
it was lost while idle. What goes out on it is written by :meth:`Connection.begin`.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

import httptools

from ccswitch_addon.upstream.errors import BadAnswer, Disconnected, ProviderError

if TYPE_CHECKING:
    from ccswitch_addon.core.proxy import ProxyUrl
    from ccswitch_addon.upstream.client import ProviderClient

__all__ = ["HEAD_LIMIT", "READ_HIGH", "STALE_SECONDS", "Connection", "Key", "unread"]

HEAD_LIMIT = 64 * 1024  # an answer's status line and headers together
READ_HIGH = 256 * 1024  # body bytes held unread before the provider's socket is paused
# A request is handed to the transport in steps, and no more than WRITE_HIGH of it waits there
# for a provider that does not read: what one attempt holds unsent stays bounded.
WRITE_HIGH = 256 * 1024
WRITE_STEP = 64 * 1024

Key = tuple[str, str, int, "ProxyUrl | None"]  # scheme, host, port, and the way there


STALE_SECONDS = 1.0  # a kept-alive connection that drops this soon after a request, silent


class _Surplus(Exception):  # a signal out of llhttp's callbacks, not an error
    """Stop parsing: what follows is not part of the answer asked for."""


def unread(conn: Connection, idempotent: bool) -> bool:
    """Whether the provider cannot have read the request that broke ``conn``, so that it may go
    again on a new connection: nothing of an answer came and the connection was gone before the
    request was written whole. A request the kernel took whole may have been read: only an
    idempotent one is sent again, and only when the connection dropped at once (the request and
    the provider's close of an idle connection crossed). A POST is never sent twice."""
    if conn.received:
        return False
    if not conn.written:
        return True
    return idempotent and asyncio.get_running_loop().time() - conn.sent_at < STALE_SECONDS


class Connection(asyncio.Protocol):
    """One connection to a provider; one request at a time."""

    def __init__(self, key: Key, client: ProviderClient) -> None:
        self.key = key
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.idle_since = 0.0
        self.received = False  # a byte of the current answer has come
        self.sent_at = 0.0  # loop time the current request was written
        self.written = False  # the whole request went to the kernel
        self.cut = False  # answered before the request was written whole: never reused
        self.drained: asyncio.Future[None] | None = None  # set when the transport can take more
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
        except httptools.HttpParserCallbackError as e:  # a callback's own error, wrapped
            cause = e.__context__
            self._fail(cause if isinstance(cause, ProviderError) else BadAnswer(f"{cause}"))
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
        self.resume_writing()  # a write waiting for room learns of the loss from ``head``
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

    def pause_writing(self) -> None:
        self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

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
        if not 100 <= status <= 599:  # llhttp takes any three digits; no tool reads "0 Unknown"
            raise BadAnswer(f"status {status} is not an HTTP status")
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

    async def send(self, data: bytes, bodiless: bool) -> None:
        """Send one request, at most WRITE_HIGH of it held unsent at a time; returns once the
        answer's head has come. An answer that comes before the request is written whole (a
        413, say) ends the writing."""
        if self.transport is None or self.transport.is_closing():
            raise Disconnected("the provider closed the connection before the request")
        loop = asyncio.get_running_loop()
        head = self.head = loop.create_future()
        self.received = self.written = False
        self.bodiless = bodiless
        self.transport.set_write_buffer_limits(WRITE_HIGH)
        view = memoryview(data)
        for start in range(0, len(view), WRITE_STEP):
            if head.done() or self.transport is None:
                break
            self.transport.write(view[start : start + WRITE_STEP])
            if self.drained is not None:
                await asyncio.wait((self.drained, head), return_when=asyncio.FIRST_COMPLETED)
        else:
            self.written = self.transport is not None and not self.transport.is_closing()
        self.cut = not self.written
        self.sent_at = loop.time()
        await head

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
            and not self.cut
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
        self.received = self.bodiless = self.written = self.cut = False
        self.error = None

    def abort(self) -> None:
        """Close at once, unsent bytes and TLS shutdown alike (the pool is closing)."""
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close; with a request still unsent the connection is aborted, not drained: a provider
        that never reads must not keep the socket and the bytes."""
        transport = self.transport
        if transport is None:
            return
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

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
