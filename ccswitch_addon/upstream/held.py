"""An answer held whole, for a request that asked for no stream.

Such a request is served inside mitmproxy's request hook: the exchange answers into a
:class:`HeldAnswer` and the hook hands the result to mitmproxy as the flow's response, so
mitmproxy opens no connection for it and the relay hop (a second HTTP/1.1 exchange on
loopback) is saved. A request that asked for a stream goes through the relay, which passes
events on as they come.

``wants_stream`` decides which way a request goes; when it cannot tell (a compressed body,
one it cannot read), it says stream: the relay serves both kinds, the hook only whole ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from ccswitch_addon.wire.api import Api

__all__ = ["Answering", "HeldAnswer", "asks_for_stream", "wants_stream"]

_STREAM_VALUE = re.compile(rb"\s*:\s*true")


def wants_stream(api: Api, path: str, body: bytes | None, compressed: bool) -> bool:
    """Whether the tool asked for its answer as a stream (or may have: then True)."""
    if api is Api.GEMINI:
        return ":streamGenerateContent" in path or "alt=sse" in path
    if not body:
        return False
    if compressed:
        return True  # the flag cannot be read without inflating the body
    return asks_for_stream(body)


def asks_for_stream(body: bytes) -> bool:
    """Whether a JSON body says ``"stream": true``, read without parsing it. A literal
    ``"stream"`` in JSON is a key or a value, never part of a string (strings escape their
    quotes). Searched from the end, where the tools put the flag (after the long messages):
    a search backwards is also the faster of the two in CPython's bytes."""
    at = body.rfind(b'"stream"')
    while at >= 0:
        if _STREAM_VALUE.match(body, at + 8):
            return True
        at = body.rfind(b'"stream"', 0, at)
    return False


class Answering(Protocol):
    """What the exchange answers into: the relay's :class:`~.answer.Answer` or a
    :class:`HeldAnswer`."""

    @property
    def started(self) -> bool: ...

    def whole(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None: ...

    async def start(self, status: int, headers: Iterable[tuple[str, str]]) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def end(self) -> None: ...


class HeldAnswer:
    """The exchange's answer, kept: ``whole`` once, or ``start``, ``write``…, ``end``."""

    __slots__ = ("_parts", "body", "complete", "headers", "started", "status")

    def __init__(self) -> None:
        self.started = False
        self.complete = False
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self._parts: list[bytes] = []

    def whole(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        if self.started:
            raise RuntimeError("the answer has begun already")
        self.started = self.complete = True
        self.status, self.headers, self.body = status, list(headers), body

    async def start(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        if self.started:
            raise RuntimeError("the answer has begun already")
        self.started = True
        self.status, self.headers = status, list(headers)

    async def write(self, data: bytes) -> None:
        if data:
            self._parts.append(data)

    async def end(self) -> None:
        self.body = b"".join(self._parts)
        self._parts = []
        self.complete = True
