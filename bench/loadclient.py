"""An asyncio HTTP/1.1 keep-alive client for the benchmarks (stdlib only).

`Conn` sends one request at a time on one connection and reads the answer (content-length,
chunked or close-delimited), noting when each SSE event arrived. `run_load` drives a fixed
number of requests over a fixed number of connections, bounded in count and in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
_STAMP = re.compile(rb"^: t=([0-9.]+)$", re.M)
REQUEST_TIMEOUT = 30.0
HEAD_LIMIT = 1 << 20


class ProtocolError(Exception):
    pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: float  # perf_counter() before the request was written
    first_byte: float  # when the response head had arrived
    done: float  # when the whole body had arrived
    events: list[float] = field(default_factory=list)  # arrival of each "\n\n"-ended SSE event

    @property
    def seconds(self) -> float:
        return self.done - self.sent

    def relay_latencies(self) -> list[float]:
        """Per SSE event: arrival here minus the ``: t=`` stamp the fake wrote it with."""
        stamps = [float(m.group(1)) for m in _STAMP.finditer(self.body)]
        return [arrived - sent for arrived, sent in zip(self.events, stamps, strict=False)]


def build_request(
    port: int, body: bytes, headers: dict[str, str] | None = None, path: str = "/v1/messages"
) -> tuple[bytes, bytes]:
    """(head, body) of a POST, ready to write again and again."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: {HOST}:{port}",
        "content-type: application/json",
        "anthropic-version: 2023-06-01",
        "x-api-key: sk-ant-bench-client-key",
        f"content-length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), body


def build_get(port: int, path: str, host: str | None = None) -> tuple[bytes, bytes]:
    head = f"GET {path} HTTP/1.1\r\nhost: {host or f'{HOST}:{port}'}\r\n\r\n"
    return head.encode(), b""


def padded_body(size: int, model: str = "claude-sonnet-4-5", *, stream: bool = False) -> bytes:
    """A Messages API request of exactly ``size`` bytes: a conversation of ~2 KB turns.

    ``stream`` must match what the fake answers (``x-bench-sse``: a stream; else JSON): the
    proxy fails over a JSON answer to a stream request, and reads a stream whole for a request
    that asked for none.
    """
    base = {"model": model, "max_tokens": 1024, "stream": stream, "messages": []}
    empty = len(json.dumps(base, separators=(",", ":")).encode())
    messages: list[dict[str, str]] = []
    words = "the quick brown fox jumps over the lazy dog; def f(x): return x * 2 # "
    remaining = size - empty
    role = "user"
    overhead = len(b'{"role":"user","content":""},')
    while remaining > overhead + 1:
        text_len = min(2048, remaining - overhead)
        text = (words * (text_len // len(words) + 1))[:text_len]
        messages.append({"role": role, "content": text})
        remaining -= text_len + overhead + (len(role) - 4)
        role = "assistant" if role == "user" else "user"
    base["messages"] = messages or [{"role": "user", "content": "hi"}]
    raw = json.dumps(base, separators=(",", ":")).encode()
    last = base["messages"][-1]
    diff = size - len(raw)  # make it exact: the last turn is plain ASCII, one byte a character
    last["content"] = last["content"] + "." * diff if diff > 0 else last["content"][: diff or None]
    return json.dumps(base, separators=(",", ":")).encode()


class Conn:
    """One keep-alive client connection."""

    def __init__(self, port: int, host: str = HOST) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connects = 0

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def request(
        self, head: bytes, body: bytes, timeout: float = REQUEST_TIMEOUT, sse: bool = False
    ) -> Response:
        try:
            async with asyncio.timeout(timeout):
                return await self._request(head, body, sse)
        except BaseException:
            await self.close()  # a connection in an unknown state is never reused
            raise

    async def _request(self, head: bytes, body: bytes, sse: bool) -> Response:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, limit=HEAD_LIMIT
            )
            self.connects += 1
        reader, writer = self.reader, self.writer
        assert reader is not None
        sent = time.perf_counter()
        writer.write(head)
        if body:
            writer.write(body)
        await writer.drain()
        raw = await reader.readuntil(b"\r\n\r\n")
        first_byte = time.perf_counter()
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ProtocolError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        events: list[float] = []
        chunks: list[bytes] = []
        carry = b""

        def got(data: bytes) -> None:
            nonlocal carry
            chunks.append(data)
            if sse:
                now = time.perf_counter()
                joined = carry + data
                n = joined.count(b"\n\n")
                events.extend([now] * n)
                carry = joined[joined.rfind(b"\n\n") + 2 :] if n else joined[-1:]

        close = headers.get("connection", "").lower() == "close"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                got(await reader.readexactly(size))
                await reader.readexactly(2)
        elif "content-length" in headers:
            remaining = int(headers["content-length"])
            while remaining > 0:
                data = await reader.read(min(remaining, 1 << 16))
                if not data:
                    raise ProtocolError("connection closed inside the body")
                remaining -= len(data)
                got(data)
        elif status not in (204, 304) and not 100 <= status < 200:
            close = True
            while data := await reader.read(1 << 16):
                got(data)
        done = time.perf_counter()
        if close:
            await self.close()
        return Response(status, headers, b"".join(chunks), sent, first_byte, done, events)


@dataclass
class LoadResult:
    latencies: list[float]  # seconds, of the requests that got an answer
    elapsed: float
    statuses: Counter[int]
    errors: Counter[str]
    providers: Counter[str]
    attempts: Counter[str]
    retried: int = 0
    ok_after_retry: int = 0
    first_502: int = 0
    timed_out: bool = False

    @property
    def done(self) -> int:
        return sum(self.statuses.values())

    @property
    def rps(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.done,
            "elapsed_s": round(self.elapsed, 3),
            "rps": round(self.rps, 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
            "providers": dict(self.providers),
            "attempts": dict(self.attempts),
            "retried_502": self.retried,
            "ok_after_retry": self.ok_after_retry,
            "timed_out": self.timed_out,
        }


async def run_load(
    port: int,
    request: tuple[bytes, bytes],
    count: int,
    concurrency: int,
    max_seconds: float,
    *,
    retry_502: bool = False,
    sse: bool = False,
    on_done: Callable[[int, Response | None], None] | None = None,
) -> LoadResult:
    """``count`` requests over ``concurrency`` keep-alive connections; stops at ``max_seconds``.

    With ``retry_502`` a 502 (or a broken connection) is sent once more on a fresh connection.
    """
    head, body = request
    result = LoadResult([], 0.0, Counter(), Counter(), Counter(), Counter())
    issued = 0
    deadline = time.monotonic() + max_seconds
    finished = 0

    async def one(conn: Conn) -> Response | None:
        try:
            return await conn.request(head, body, sse=sse)
        except (OSError, asyncio.IncompleteReadError, ProtocolError, TimeoutError) as e:
            result.errors[type(e).__name__] += 1
            return None

    async def worker() -> None:
        nonlocal issued, finished
        conn = Conn(port)
        try:
            while issued < count and time.monotonic() < deadline:
                issued += 1
                response = await one(conn)
                if retry_502 and (response is None or response.status == 502):
                    result.retried += 1
                    if response is not None:
                        result.first_502 += 1
                    await conn.close()
                    response = await one(conn)
                    if response is not None and response.status < 400:
                        result.ok_after_retry += 1
                finished += 1
                if response is not None:
                    result.statuses[response.status] += 1
                    result.latencies.append(response.seconds)
                    result.providers[response.headers.get("x-ccswitch-provider", "-")] += 1
                    result.attempts[response.headers.get("x-ccswitch-attempts", "-")] += 1
                if on_done is not None:
                    on_done(finished, response)
        finally:
            await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - start
    result.timed_out = issued < count
    return result


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) by linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
