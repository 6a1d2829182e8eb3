"""Helpers for stream tests: build a Chat SSE stream, cut it every awkward way, read events."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, Protocol


class Machine(Protocol):
    def feed(self, chunk: bytes) -> bytes: ...
    def close(self) -> bytes: ...


def sse(*chunks: Any, done: bool = True, crlf: bool = False) -> bytes:
    """Chat chunks as a provider streams them (dicts as JSON; str as a raw data payload)."""
    end = "\r\n" if crlf else "\n"
    out = []
    for chunk in chunks:
        data = chunk if isinstance(chunk, str) else json.dumps(chunk, ensure_ascii=False)
        out.append(f"data: {data}{end}{end}")
    if done:
        out.append(f"data: [DONE]{end}{end}")
    return "".join(out).encode()


def chunkings(raw: bytes) -> Iterator[list[bytes]]:
    """The same bytes in many cuts: whole, one byte at a time, fixed sizes, and two pieces cut
    inside multi-byte characters, inside ``data:`` and (for short streams) everywhere."""
    yield [raw]
    yield [raw[i : i + 1] for i in range(len(raw))]
    for size in (2, 3, 5, 7, 64):
        yield [raw[i : i + size] for i in range(0, len(raw), size)]
    cuts: set[int] = set()
    text = raw.decode("utf-8")
    position = 0
    inside = 0
    for char in text:
        width = len(char.encode())
        if width > 1 and inside < 15:  # in a long stream the first few are enough
            cuts.update(position + k for k in range(1, width))
            inside += 1
        position += width
    start, seen = raw.find(b"data:"), 0
    while start >= 0 and seen < 15:
        cuts.update(range(start + 1, start + 6))
        start, seen = raw.find(b"data:", start + 1), seen + 1
    if len(raw) <= 2500:
        cuts.update(range(1, len(raw)))
    for cut in sorted(cuts):
        yield [raw[:cut], raw[cut:]]


def run(factory: Callable[[], Machine], pieces: list[bytes]) -> bytes:
    machine = factory()
    return b"".join(machine.feed(piece) for piece in pieces) + machine.close()


def run_every_way(factory: Callable[[], Machine], raw: bytes) -> bytes:
    """The output, asserted identical for every chunking of the input."""
    expected = run(factory, [raw])
    for pieces in chunkings(raw):
        assert run(factory, pieces) == expected, f"differs when cut into {len(pieces)} pieces"
    return expected


def events(output: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, JSON data) of every event in an output stream."""
    found = []
    for block in output.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert lines[0].startswith("event: "), block
        name = lines[0][len("event: ") :]
        data = json.loads("\n".join(line[len("data: ") :] for line in lines[1:]))
        assert data["type"] == name
        found.append((name, data))
    return found


def named_sse(*pairs: tuple[str, dict[str, Any]]) -> bytes:
    """Anthropic or Responses events as a provider streams them: ``event:`` then ``data:``."""
    return "".join(
        f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n" for name, data in pairs
    ).encode()


def data_events(output: bytes) -> list[dict[str, Any]]:
    """The JSON of every ``data:`` event in an output stream without event names (Gemini)."""
    found = []
    for block in output.decode().split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            found.append(json.loads(block[len("data: ") :]))
    return found
