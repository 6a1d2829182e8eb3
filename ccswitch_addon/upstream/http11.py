"""HTTP/1.1 on the wire: the request as it is written, and the answer as it is read.

The request goes in one piece; header values keep the bytes the tool sent. The answer's body is
handed on as it arrives, decoded from gzip or deflate (the only encodings asked for), at most
DECODE_STEP bytes a read: no bomb comes out in one go.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from multidict import CIMultiDict, CIMultiDictProxy

from ccswitch_addon.upstream.connection import Connection
from ccswitch_addon.upstream.errors import BadAnswer, BadRequest

if TYPE_CHECKING:
    from ccswitch_addon.upstream.client import ProviderClient

__all__ = ["ProviderResponse", "host_port", "request_bytes"]

DECODE_STEP = 256 * 1024  # at most this much decompressed per read: no bomb in one go


class ProviderResponse:
    """A provider's answer: status and headers at once, the body read with ``readany``."""

    __slots__ = ("_client", "_conn", "_decoder", "headers", "status")

    _decoder: _Decoder | None

    def __init__(self, client: ProviderClient, conn: Connection) -> None:
        self._client = client
        self._conn: Connection | None = conn
        self.status = conn.status
        headers = CIMultiDict(conn.headers)
        coding = headers.get("content-encoding", "").strip().lower()
        self._decoder = _Decoder(coding) if coding in _DECODED else None
        if self._decoder is not None:  # the tool gets the body decoded, so not the header
            headers.popall("content-encoding")
        transfer = _transfer_coding(headers)
        if transfer is not None:  # llhttp took the chunks off; the coding is ours to undo
            if self._decoder is not None:
                raise BadAnswer("a body compressed twice (transfer and content coding)")
            self._decoder = _Decoder(transfer)
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


def _transfer_coding(headers: CIMultiDict[str]) -> str | None:
    """The one compression of a ``transfer-encoding: gzip, chunked`` body, if it has one. The
    header is not forwarded, so a coding left undone would reach the tool unlabelled."""
    codings = [
        part.strip().lower()
        for value in headers.getall("transfer-encoding", ())
        for part in value.split(",")
        if part.strip().lower() not in ("", "chunked", "identity")
    ]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in _DECODED:
        raise BadAnswer(f"a transfer coding this client cannot undo: {', '.join(codings)}")
    return codings[0]


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
        if self._started and not self._zlib.eof:  # raw deflate has its final block too
            raise BadAnswer("the body ends inside its compressed stream")
        return out


def host_port(origin: str, default: int) -> tuple[str, int]:
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


def request_bytes(
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
        raise BadRequest("the request line or a header holds a line break, NUL or space")
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
