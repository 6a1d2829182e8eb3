"""Time limits by one timer each: a stream's silence limit (:class:`Silence`), an attempt's
deadlines (:class:`Deadline`).

``asyncio.timeout`` around each read makes a context, a timer handle and two heap operations
per chunk; a stream of a few hundred events paid that on every one. :class:`Silence` keeps one
timer. Each read notes when it began; when the timer fires and a read has been waiting the
whole limit, the reading task is cancelled and the read's CancelledError becomes
:class:`TimeoutError` (as with ``asyncio.timeout``: a cancel from anyone else stays a cancel);
otherwise the timer waits again for the rest. Time spent writing to the client is never
counted against the provider.

An attempt waits for its answer's head, then for its body or its first token, each with a
limit of its own: :class:`Deadline` serves all of those waits with one timer, moved only when
a wait needs it earlier (``asyncio.timeout`` around each made a context, a timer handle and a
look-up of the current task every time, on every request's path).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["Deadline", "Silence"]

T = TypeVar("T")


class _OneTimer:
    """The current task, the one timer that may cancel it, and telling that cancel from any
    other (as ``asyncio.timeout`` does)."""

    __slots__ = ("_cancelling", "_fired", "_handle", "_loop", "_task")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._cancelling = self._task.cancelling() if self._task is not None else 0
        self._fired = False
        self._handle: asyncio.TimerHandle | None = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _ours(self) -> bool:
        """In an ``except CancelledError``: whether the cancel was the timer's alone."""
        if not self._fired or self._task is None:
            return False
        self._fired = False
        return self._task.uncancel() <= self._cancelling


class Silence(_OneTimer):
    """Use as ``await silence.read(source.readany())`` for each read, ``close()`` at the end."""

    __slots__ = ("_reading", "_seconds", "_since")

    def __init__(self, seconds: float | None) -> None:
        super().__init__()
        self._seconds = seconds
        self._reading = False
        self._since = self._loop.time()  # when the current read began
        if seconds is not None and self._task is not None:
            self._handle = self._loop.call_at(self._since + seconds, self._check)

    async def read(self, awaitable: Awaitable[T]) -> T:
        """The awaitable's result; TimeoutError once it waited the whole limit."""
        self._since = self._loop.time()
        self._reading = True
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self._ours():
                raise TimeoutError from None
            raise
        finally:
            self._reading = False

    def _check(self) -> None:
        assert self._seconds is not None
        assert self._task is not None
        now = self._loop.time()
        due = self._since + self._seconds
        if not self._reading or now < due:  # writing, or a read began since: wait again
            self._handle = self._loop.call_at(max(due, now + self._seconds * 0.5), self._check)
            return
        self._handle = None
        self._fired = True
        self._task.cancel()


class Deadline(_OneTimer):
    """Use as ``await deadline.wait(awaitable, seconds)`` for each wait of one task (None: no
    limit), ``close()`` at the end. TimeoutError when the limit passes first; a cancel from
    anyone else stays a cancel."""

    __slots__ = ("_waiting", "_when")

    def __init__(self) -> None:
        super().__init__()
        self._waiting = False
        self._when = 0.0  # the current wait's limit, in loop time

    async def wait(self, awaitable: Awaitable[T], seconds: float | None) -> T:
        if seconds is None or self._task is None:
            return await awaitable
        self._when = when = self._loop.time() + max(0.0, seconds)
        handle = self._handle
        if handle is None or handle.when() > when:  # a later limit waits for the timer to fire
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(when, self._check)
        self._waiting = True
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self._ours():
                raise TimeoutError from None
            raise
        finally:
            self._waiting = False
            self._ours()  # fired as the awaitable ended anyway: taken back, as asyncio.timeout

    def _check(self) -> None:
        assert self._task is not None
        self._handle = None
        if not self._waiting:  # between waits: the next one arms the timer again
            return
        if self._loop.time() < self._when:  # the limit moved later meanwhile
            self._handle = self._loop.call_at(self._when, self._check)
            return
        self._fired = True
        self._task.cancel()
