"""The relay's side of the loopback hop: a small HTTP/1.1 server for mitmproxy's requests.

The requests are ours (the request hook points a flow here): a request line and a few
headers, no body. So the server parses only that, and the exchange answers through an
:class:`Answer`: whole (with a length) or streamed (chunked, with the transport's flow
control). A connection that goes away cancels the request's task, so the provider's request
goes with it. Anything the relay does not expect is refused and the connection closed.

The addon's requests ask for their head ``later`` (``HEAD_HEADER``): a stand-in goes at once
and the real status and headers are told in-process, so mitmproxy has parsed the head and run
its addons' ``responseheaders`` before the commit point instead of on the first token's path.
The addon's own hook waits for the real head and puts it in the flow before anything of the
answer goes on to the tool, so the tool still gets the chosen provider's status, or the last
failure's when every provider failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus

__all__ = [
    "HEAD_HEADER",
    "REASONS",
    "Answer",
    "RelayProtocol",
    "RelayRequest",
    "Verdict",
    "head",
    "one_line_each",
]

logger = logging.getLogger(__name__)

HEAD_LIMIT = 16 * 1024  # mitmproxy sends four short headers
IDLE_SECONDS = 75.0  # a kept-alive connection with no request is closed after this

REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_FORBIDDEN = str.maketrans("", "", "\r\n\0")


@dataclass(slots=True)
class RelayRequest:
    """What the relay reads of a request: its method, target and headers (names lowered).
    Not frozen: a frozen dataclass pays a call per field, and one is made for every request."""

    method: str
    target: str
    headers: dict[str, str]


def one_line_each(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The header pairs as they are, or with CR, LF and NUL cut out when a name or value holds
    one: a value that would end its line early is never sent as two."""
    text = "".join([f"{name}{value}" for name, value in pairs])
    if "\r" in text or "\n" in text or "\0" in text:
        return [(name.translate(_FORBIDDEN), value.translate(_FORBIDDEN)) for name, value in pairs]
    return pairs


def head(status: int, headers: Iterable[tuple[str, str]], framing: bytes) -> bytes:
    """Status line and headers, ``framing`` (the length or chunked header, and the blank line)
    last. Values keep the bytes the provider sent (read as latin-1); text of our own that
    latin-1 cannot carry goes as UTF-8."""
    text = "".join([f"{name}: {value}\r\n" for name, value in one_line_each(list(headers))])
    try:
        fields = text.encode("latin-1")
    except UnicodeEncodeError:
        fields = text.encode("utf-8", "surrogateescape")
    return b"HTTP/1.1 %d %s\r\n%s%s" % (status, REASONS.get(status, b"Unknown"), fields, framing)


# The head a relay request asking for it gets at once: the real one is told in-process
# (Answer.later), and the body comes chunked either way.
LATER_HEAD = b"HTTP/1.1 200 OK\r\n%s: later\r\ntransfer-encoding: chunked\r\n\r\n"
HEAD_HEADER = "x-ccswitch-head"

# status, header fields, whether the body is streamed (else it is whole, with its length)
Verdict = tuple[int, list[tuple[bytes, bytes]], bool]


def fields(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Header pairs as bytes, as ``head`` would write them."""
    out = []
    for name, value in one_line_each(list(headers)):
        try:
            out.append((name.encode("latin-1"), value.encode("latin-1")))
        except UnicodeEncodeError:
            out.append((_utf8(name), _utf8(value)))
    return out


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class Answer:
    """The answer to one relayed request: ``whole`` once, or ``start``, ``write``…, ``end``.

    Asked with ``later``, the status line and headers go at once as a stand-in, and the real
    ones are told through the future it returns: mitmproxy reads and handles the head while
    the exchange still waits for its commit point, and only its response hook's wait is left
    on the first token's path."""

    __slots__ = ("_protocol", "complete", "later_head", "started")

    def __init__(self, protocol: RelayProtocol) -> None:
        self._protocol = protocol
        self.started = False  # the status line has gone: the answer can no longer change
        self.complete = False  # the last byte has gone: the connection can serve another
        self.later_head: asyncio.Future[Verdict | None] | None = None

    def reset(self) -> None:
        """Ready for the connection's next request (only once the last one is complete)."""
        self.started = self.complete = False
        self.later_head = None

    def later(self) -> asyncio.Future[Verdict | None]:
        """Send the stand-in head now; the future has the real one (None: none will come)."""
        self.later_head = asyncio.get_running_loop().create_future()
        self._protocol.send(LATER_HEAD % HEAD_HEADER.encode())
        return self.later_head

    def abandon(self) -> None:
        """No real head will come (the request's task has ended without one)."""
        if self.later_head is not None and not self.later_head.done():
            self.later_head.set_result(None)

    def _tell(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        framing: tuple[bytes, bytes],
        streamed: bool,
    ) -> bool:
        """Tell the real head to whoever waits for it, when it was asked for ``later``; False
        when it goes on the wire instead."""
        later = self.later_head
        if later is None:
            return False
        if not later.done():  # a waiter cancelled (mitmproxy stopping) cancels the future
            later.set_result((status, [*fields(headers), framing], streamed))
        return True

    def whole(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        """The complete answer, with its length."""
        if self.started:
            raise RuntimeError("the relay's answer has begun already")
        self.started = True
        if self._tell(status, headers, (b"content-length", b"%d" % len(body)), False):
            chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
            self._protocol.send(chunk)
        else:
            framing = b"content-length: %d\r\n\r\n" % len(body)
            self._protocol.send(head(status, headers, framing) + body)
        self.complete = True

    async def start(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        """The status and headers of an answer whose body follows in chunks."""
        if self.started:
            raise RuntimeError("the relay's answer has begun already")
        self.started = True
        if self._tell(status, headers, (b"transfer-encoding", b"chunked"), True):
            return
        await self._protocol.send_and_drain(
            head(status, headers, b"transfer-encoding: chunked\r\n\r\n")
        )

    async def write(self, data: bytes) -> None:
        """One piece of the body, sent as it is; raises ConnectionResetError once the
        connection is gone."""
        if data:
            await self._protocol.send_and_drain(b"%x\r\n%s\r\n" % (len(data), data))

    async def end(self) -> None:
        await self._protocol.send_and_drain(b"0\r\n\r\n")
        self.complete = True


Handler = Callable[[RelayRequest, Answer], Awaitable[None] | None]


class RelayProtocol(asyncio.Protocol):
    """One connection from mitmproxy: requests one after another, each served by a task."""

    def __init__(self, handler: Handler, connections: set[RelayProtocol]) -> None:
        self._handler = handler
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self.task: asyncio.Task[None] | None = None
        self._paused: asyncio.Future[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._last = 0.0  # when the last answer ended (loop time)
        self._keep_alive = True
        self._answer = Answer(self)  # one a connection: its requests come one after another

    # --- asyncio's side ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._connections.add(self)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self.task is None:
            self._next()
        elif len(self._buffer) > HEAD_LIMIT:  # nothing of ours sends while it is answered
            self.close()

    def eof_received(self) -> bool:
        return False  # close once the peer has finished sending

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
        if self.task is not None:  # the client went away: its provider request goes too
            self.task.cancel()
        self._wake(ConnectionResetError("the relay's client went away"))

    def pause_writing(self) -> None:
        if self._paused is None:
            self._paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake(None)

    # --- writing ------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("the relay's client went away")
        self._transport.write(data)

    async def send_and_drain(self, data: bytes) -> None:
        self.send(data)
        if self._paused is not None:
            await asyncio.shield(self._paused)

    def _wake(self, error: Exception | None) -> None:
        paused, self._paused = self._paused, None
        if paused is not None and not paused.done():
            if error is None:
                paused.set_result(None)
            else:
                paused.set_exception(error)
                paused.exception()  # retrieved: nobody may be waiting

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # --- requests -----------------------------------------------------------------------------

    def _arm_idle(self) -> None:
        """One timer a connection: when it fires, the connection is closed if it has been
        idle that long, else it waits again for the rest (no timer per request)."""
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        if self._idle is None:
            self._idle = loop.call_at(self._last + IDLE_SECONDS, self._check_idle)

    def _check_idle(self) -> None:
        self._idle = None
        if self._transport is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.task is None and now - self._last >= IDLE_SECONDS:
            self.close()
            return
        due = self._last + IDLE_SECONDS if self.task is None else now + IDLE_SECONDS
        self._idle = loop.call_at(due, self._check_idle)

    def _next(self) -> None:
        """Take the next request from the buffer, if a whole head is there."""
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > HEAD_LIMIT:
                self._refuse(431, "request head too large")
            return
        head = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        request = self._parse(head)
        if request is None:
            return
        answer = self._answer
        answer.reset()
        self.task = asyncio.get_running_loop().create_task(self._serve(request, answer))

    def _parse(self, head: bytes) -> RelayRequest | None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._refuse(400, "not an HTTP/1.x request")
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                self._refuse(400, "malformed header line")
                return None
            headers[name.lower()] = value.strip()
        if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            self._refuse(400, "the relay takes no request body")
            return None
        if parts[2] == "HTTP/1.0" or headers.get("connection", "").lower() == "close":
            self._keep_alive = False
        return RelayRequest(parts[0], parts[1], headers)

    def _refuse(self, status: int, why: str) -> None:
        body = f"ccswitch relay: {why}\n".encode()
        with contextlib.suppress(ConnectionError):
            framing = b"content-length: %d\r\n\r\n" % len(body)
            headers = [("content-type", "text/plain"), ("connection", "close")]
            self.send(head(status, headers, framing) + body)
        self._keep_alive = False
        self._buffer.clear()
        self.close()

    async def _serve(self, request: RelayRequest, answer: Answer) -> None:
        try:
            serving = self._handler(request, answer)
            if serving is not None:
                await serving
        except asyncio.CancelledError:
            self.close()
            raise
        except ConnectionError:
            self.close()
        except Exception:
            logger.exception("ccswitch: the relay failed to answer a request")
            if not answer.started:
                with contextlib.suppress(ConnectionError):
                    answer.whole(500, [("content-type", "text/plain")], b"ccswitch relay error\n")
            self.close()
        finally:
            self.task = None
            answer.abandon()
        if not answer.complete or not self._keep_alive:  # no clean end: the client must see it
            self.close()
        elif self._transport is not None:
            self._arm_idle()
            if self._buffer:
                self._next()
