"""Server-sent events: an incremental parser (bytes in, events out) and an encoder.

The parser keeps a partial line and a partial UTF-8 character between reads, so a stream
cut anywhere (inside ``data:``, inside a multi-byte character, between ``\\r`` and
``\\n``) gives the same events as the stream read at once.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["SseEvent", "SseParser", "SseTranslator", "encode_event"]

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str | None  # the ``event:`` field, None when absent
    data: str  # the ``data:`` lines joined with "\n"


class SseParser:
    """Feed it bytes as they arrive; it returns the events completed by each read."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""  # text after the last line end
        self._skip_lf = False  # the last read ended in "\r": a leading "\n" belongs to it
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        return self._text(self._decoder.decode(chunk))

    def close(self) -> list[SseEvent]:
        """The end of the stream: a last event without its blank line still counts."""
        events = self._text(self._decoder.decode(b"", final=True))
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        if self._data:
            events.append(self._dispatch())
        return events

    def _text(self, text: str) -> list[SseEvent]:
        if self._skip_lf and text:
            if text.startswith("\n"):
                text = text[1:]
            self._skip_lf = False
        if not text:
            return []
        buffer = self._partial + text
        lines = _LINE_END.split(buffer)
        self._partial = lines.pop()
        self._skip_lf = buffer.endswith("\r")
        events: list[SseEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            if self._data:
                return self._dispatch()
            self._event = None
            return None
        if line.startswith(":"):
            return None  # a comment, e.g. a keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def _dispatch(self) -> SseEvent:
        event = SseEvent(self._event, "\n".join(self._data))
        self._event = None
        self._data = []
        return event


def encode_event(event: str | None, data: str) -> bytes:
    """One event in wire form, multi-line data split into ``data:`` lines."""
    head = f"event: {event}\n" if event else ""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"{head}{lines}\n".encode()


class SseTranslator:
    """The byte edge of a stream translator: ``feed(bytes) -> bytes`` for each read,
    ``close() -> bytes`` at the end. A subclass handles each parsed event in ``_event``,
    appends its output to ``_out`` and finishes in ``on_end``."""

    def __init__(self) -> None:
        self._parser = SseParser()
        self._out: list[bytes] = []

    def feed(self, chunk: bytes) -> bytes:
        for event in self._parser.feed(chunk):
            self._event(event)
        return self._flush()

    def close(self) -> bytes:
        for event in self._parser.close():
            self._event(event)
        self.on_end()
        return self._flush()

    def _flush(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def _event(self, event: SseEvent) -> None:
        raise NotImplementedError

    def on_end(self) -> None:
        raise NotImplementedError
