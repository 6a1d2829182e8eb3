"""A stream's exchange begun as soon as every addon has seen its request, before mitmproxy's
copy of the request has reached the relay.

mitmproxy sends a routed stream's request on to the relay only after its request hook: it
writes the request, and the relay reads and parses it a turn of the loop or two later. Begun
at the end of the hook instead, the exchange's first attempt is on its way to the provider
meanwhile. What the exchange answers waits in a :class:`EarlyAnswer` until the relay's
answer for the request is there: a whole answer is kept, the first part of a stream waits
for it (at most one request's head and its held events, so nothing piles up).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Iterable

from ccswitch_addon.upstream.exchange import Upstream
from ccswitch_addon.upstream.held import Answering
from ccswitch_addon.upstream.job import Exchange

__all__ = ["Begun", "EarlyAnswer"]

logger = logging.getLogger(__name__)


class EarlyAnswer:
    """The exchange's answer until the relay's is attached, then the relay's itself."""

    __slots__ = ("_answer", "_attached", "_whole", "started")

    def __init__(self) -> None:
        self.started = False
        self._answer: Answering | None = None
        self._attached = asyncio.Event()
        self._whole: tuple[int, list[tuple[str, str]], bytes] | None = None

    @property
    def attached(self) -> bool:
        return self._answer is not None

    def attach(self, answer: Answering) -> None:
        self._answer = answer
        if self._whole is not None:
            answer.whole(*self._whole)
            self._whole = None
        self._attached.set()

    def whole(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        if self.started:
            raise RuntimeError("the answer has begun already")
        self.started = True
        if self._answer is None:
            self._whole = (status, list(headers), body)
        else:
            self._answer.whole(status, headers, body)

    async def start(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        if self.started:
            raise RuntimeError("the answer has begun already")
        self.started = True
        await (await self._ready()).start(status, headers)

    async def write(self, data: bytes) -> None:
        await (await self._ready()).write(data)

    async def end(self) -> None:
        await (await self._ready()).end()

    async def _ready(self) -> Answering:
        if self._answer is None:
            await self._attached.wait()
        assert self._answer is not None
        return self._answer


class Begun:
    """An exchange running in a task of its own until its relay request comes for it."""

    __slots__ = ("_serving", "answer", "exchange", "task")

    def __init__(self, upstream: Upstream, exchange: Exchange) -> None:
        self.exchange = exchange
        self.answer = EarlyAnswer()
        self._serving = upstream.serve(exchange, self.answer)
        self.task = asyncio.get_running_loop().create_task(self._serving)
        self.task.add_done_callback(self._ended)

    def first_step(self) -> Awaitable[None] | None:
        """Something for the hook to await so that the exchange's first attempt sets off
        before mitmproxy goes on with the flow (opens the relay connection, writes its copy):
        one turn of the loop where tasks start at their first turn (Python 3.11); nothing
        where they start at once (mitmproxy 12 sets an eager task factory)."""
        if inspect.getcoroutinestate(self._serving) == inspect.CORO_CREATED:
            return asyncio.sleep(0)
        return None

    async def served(self, answer: Answering) -> None:
        """The exchange's answer goes to ``answer`` from now on; returns once it has ended.
        Cancelled (the relay's client left), it cancels the exchange too: awaiting a task
        passes the cancel on to it."""
        self.answer.attach(answer)
        await self.task

    def cancel(self) -> None:
        """The request never reached the relay (the client left first, mitmproxy stopped)."""
        self.task.cancel()

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()  # once attached, the relay's connection reports it
        if error is not None and not self.answer.attached:
            logger.error("ccswitch: a stream failed before the relay had it", exc_info=error)
