"""Fast fake providers for the benchmarks: raw asyncio streams, keep-alive, fixed answers.

Run as a process of its own (so the fakes never share a core's event loop with the client)::

    python bench/fakes.py ok ok 529 --max-seconds 900

It binds one loopback port per argument, prints ``{"ports": [...]}`` on one line, and serves
until stdin closes, SIGTERM, or ``--max-seconds`` have passed. Modes:

- ``ok``: 200 with a small Anthropic message (content-length). A request with the header
  ``x-bench-sse: EVENTS,INTERVAL_MS`` gets an Anthropic SSE stream instead: EVENTS events,
  event k sent at k × INTERVAL_MS after the first (chunked, one event per chunk). Each event
  starts with an SSE comment line ``: t=SECONDS``, the fake's ``time.perf_counter()`` when it
  wrote the event (CLOCK_MONOTONIC, comparable across processes on Linux).
- ``529``: 529 ``overloaded_error`` at once.
- ``hang``: reads the request and never answers (an overloaded relay); holds the connection
  until the other side closes it.
- ``sse_error``: 200 and an SSE stream that fails before its first token: ``message_start``,
  then at once an ``error`` event (``overloaded_error``), then the end.

Every mode counts the streams it is writing now (``active_sse``) and the most at once
(``peak_sse``): how many streams a proxy held open together.

``GET /__bench/hits`` on any port answers that port's counters as JSON (not counted itself);
``POST /__bench/reset`` zeroes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
from typing import Any

OK_BODY = json.dumps(
    {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1},
    },
    separators=(",", ":"),
).encode()
OVERLOADED_BODY = json.dumps(
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    separators=(",", ":"),
).encode()

_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
CONTROL = "/__bench/"


def _response(status: int, reason: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"content-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n"
        "request-id: req_bench\r\n"
        "\r\n"
    )
    return head.encode() + body


OK_RESPONSE = _response(200, "OK", OK_BODY, "application/json")
SSE_ERROR_EVENT = (
    b"event: error\ndata: "
    + json.dumps(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        separators=(",", ":"),
    ).encode()
    + b"\n\n"
)
OVERLOADED_RESPONSE = _response(529, "Overloaded", OVERLOADED_BODY, "application/json")
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n"
    b"\r\n"
)


def sse_events(count: int) -> list[bytes]:
    """An Anthropic message stream of exactly ``count`` (≥ 6) events, ending in message_stop."""
    count = max(count, 6)

    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

    events = [
        event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_bench",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": 12, "output_tokens": 1},
                },
            },
        ),
        event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
        ),
    ]
    for i in range(count - 5):
        events.append(
            event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": f"token{i} "},
                },
            )
        )
    events.append(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": count - 5},
            },
        )
    )
    events.append(event("message_stop", {"type": "message_stop"}))
    return events


class Counters:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.hits = 0
        self.sse = 0
        self.connections = 0
        self.bytes_in = 0
        self.models: dict[str, int] = {}
        self.keys: dict[str, int] = {}
        self.active_sse = getattr(self, "active_sse", 0)  # streams in flight outlive a reset
        self.peak_sse = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "sse": self.sse,
            "connections": self.connections,
            "bytes_in": self.bytes_in,
            "models": self.models,
            "keys": self.keys,
            "active_sse": self.active_sse,
            "peak_sse": self.peak_sse,
        }


class Fake:
    def __init__(self, mode: str, bench_key: str) -> None:
        self.mode = mode
        self.bench_key = bench_key
        self.counters = Counters()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.connections += 1
        # asyncio turns Nagle off only for sockets it made itself (proto IPPROTO_TCP); ours
        # came from socket.socket() with proto 0, so without this a stream's second write on
        # a kept-alive connection waited for the client's delayed ACK: 40 ms stalls.
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        _method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await _read_body(reader, headers)
        close = headers.get("connection", "").lower() == "close"
        if target.startswith(CONTROL):
            if target.startswith(CONTROL + "reset"):
                self.counters.reset()
            data = json.dumps(self.counters.to_json()).encode()
            writer.write(_response(200, "OK", data, "application/json"))
            await writer.drain()
            return not close
        c = self.counters
        c.hits += 1
        c.bytes_in += len(body)
        match = _MODEL.search(body, 0, 4096)
        model = match.group(1).decode("utf-8", "replace") if match else "-"
        c.models[model] = c.models.get(model, 0) + 1
        key = headers.get("x-api-key")
        label = "none" if key is None else ("bench" if key == self.bench_key else "client")
        c.keys[label] = c.keys.get(label, 0) + 1
        if self.mode == "529":
            writer.write(OVERLOADED_RESPONSE)
            await writer.drain()
            return not close
        if self.mode == "hang":
            while await reader.read(65536):  # until the proxy gives up and closes
                pass
            return False
        if self.mode == "sse_error":
            c.sse += 1
            await _stream_error(writer)
            return not close
        sse = headers.get("x-bench-sse")
        if sse:
            c.sse += 1
            c.active_sse += 1
            c.peak_sse = max(c.peak_sse, c.active_sse)
            count, interval_ms = (float(x) for x in sse.split(","))
            try:
                await _stream(writer, int(count), interval_ms / 1000)
            finally:
                c.active_sse -= 1
            return not close
        writer.write(OK_RESPONSE)
        await writer.drain()
        return not close


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


_SSE_CACHE: dict[int, list[bytes]] = {}
MODES = ("ok", "529", "hang", "sse_error")


async def _stream(writer: asyncio.StreamWriter, count: int, interval: float) -> None:
    events = _SSE_CACHE.get(count)
    if events is None:
        events = _SSE_CACHE[count] = sse_events(count)
    loop = asyncio.get_running_loop()

    def chunk(event: bytes) -> bytes:
        data = b": t=%.6f\n" % time.perf_counter() + event
        return b"%x\r\n" % len(data) + data + b"\r\n"

    writer.write(SSE_HEAD + chunk(events[0]))
    await writer.drain()
    start = loop.time()
    for k, event in enumerate(events[1:], start=1):
        delay = start + k * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        writer.write(chunk(event))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _stream_error(writer: asyncio.StreamWriter) -> None:
    first = sse_events(6)[0]
    body = b"".join(b"%x\r\n" % len(e) + e + b"\r\n" for e in (first, SSE_ERROR_EVENT))
    writer.write(SSE_HEAD + body + b"0\r\n\r\n")
    await writer.drain()


async def serve(modes: list[str], max_seconds: float) -> None:
    bench_key = os.environ.get("BENCH_KEY", "")
    servers = []
    ports = []
    for mode in modes:
        if mode not in MODES:
            raise SystemExit(f"unknown mode {mode!r}")
        fake = Fake(mode, bench_key)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        server = await asyncio.start_server(fake.handle, sock=sock, backlog=1024)
        servers.append(server)
        ports.append(sock.getsockname()[1])
    print(json.dumps({"ports": ports}), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(0, 4096) else None)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("modes", nargs="+", help=" | ".join(MODES) + ", one port each")
    parser.add_argument("--max-seconds", type=float, default=1800)
    args = parser.parse_args()
    asyncio.run(serve(args.modes, args.max_seconds))


if __name__ == "__main__":
    main()
