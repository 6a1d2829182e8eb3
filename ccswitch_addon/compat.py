"""Where mitmproxy 11 and 12 differ, the one form the addon uses.

mitmproxy 12's ``asyncio_utils.create_task`` requires ``keep_ref`` and 11's does not accept it.
The addon's tasks are made here instead: a reference is kept until each is done (the event loop
holds only weak ones), and mitmproxy's debug info, the same function in both, names the task in
its ``--set`` debug dumps. Nothing else asks which mitmproxy runs.

The answers served in a request hook become mitmproxy responses here too (``response``): the
public constructor type-checks every field through ``typing`` introspection, 30 µs a response
(a fifth of what the addon adds to a 1 KB request), for values that are right by construction.

Work that should wait until a response hook's answer is on its way to the client goes through
``after_answer``: 11 writes the answer in the turn of the loop the hook runs in, and 12 one turn
later (below).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from mitmproxy import http
from mitmproxy.utils import asyncio_utils

__all__ = [
    "after_answer",
    "create_task",
    "forget_quiet",
    "heard",
    "keep_out_of_add_log",
    "quiet_stream_start",
    "response",
]

_RUNNING: set[asyncio.Task[Any]] = set()


def create_task(coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
    """A task on the running loop, named for mitmproxy, kept alive until it is done."""
    task = asyncio.get_running_loop().create_task(coro)
    asyncio_utils.set_task_debug_info(task, name=name)
    if not task.done():
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
    return task


_EAGER = getattr(asyncio, "eager_task_factory", object())  # Python 3.12+


def after_answer(callback: Callable[..., object], *args: Any) -> None:
    """Call ``callback(*args)`` once mitmproxy has written the answer whose response hook is
    running, and before it reads anything else the client sends.

    mitmproxy handles a connection's events in ``server_event``, and a hook's end is one such
    event. 11 runs the hook in a task that starts a turn of the loop later, so the answer is
    written in the turn the hook runs in. 12, on Python 3.12+, sets an eager task factory and
    holds a lock around ``server_event``: the hook runs inside the event that started it, and
    its end waits for that lock, so the answer goes out one turn later. Measured: on 12 a
    single ``call_soon`` ran before the write, putting its work on the request's path."""
    loop = asyncio.get_running_loop()
    if loop.get_task_factory() is _EAGER:
        loop.call_soon(loop.call_soon, callback, *args)
    else:
        loop.call_soon(callback, *args)


def keep_out_of_add_log(master: Any, logger_name: str) -> bool:
    """Records of ``logger_name`` reach mitmproxy's log handlers (the console, mitmweb's event
    log) but not its deprecated ``add_log`` event: both 11 and 12 re-emit every log record as
    that event, through every addon of the chain (about a tenth of a millisecond a record,
    measured with one line per request). A private attribute in both versions: without it,
    nothing changes. True when the filter was added."""
    legacy = getattr(master, "_legacy_log_events", None)
    if not isinstance(legacy, logging.Handler):
        return False
    if any(getattr(f, "ccswitch_keeps_out", None) == logger_name for f in legacy.filters):
        return True  # added by an earlier start (a reloaded script)
    prefix = logger_name + "."

    def not_ours(record: logging.LogRecord) -> bool:
        if _QUIET and record.name == _SERVER_LOGGER and _quieted(record):
            return False
        return record.name != logger_name and not record.name.startswith(prefix)

    not_ours.ccswitch_keeps_out = logger_name  # type: ignore[attr-defined]
    legacy.addFilter(not_ours)
    return True


# Clients whose next "Streaming response from …" record stays out of ``add_log`` too.
_QUIET: set[Any] = set()
_SERVER_LOGGER = "mitmproxy.proxy.server"
_STREAMING = "Streaming response from "


def quiet_stream_start(client: Any) -> None:
    """mitmproxy logs "Streaming response from …" once a streamed answer's ``responseheaders``
    hook is done, and ``add_log`` re-emits it through every addon in the next turn of the loop,
    before the first chunk. Bare mitmdump pays that when the provider's head comes; a routed
    stream's hook ends at its commit point, so it would be on the first token's path (0.2 to
    0.3 ms, interleaved runs on 11 and 12). The record still reaches the console and mitmweb's
    event log; kept out of ``add_log`` for the routed flow of ``client`` (its peername) only."""
    _QUIET.add(client)


def forget_quiet(client: Any) -> None:
    """The flow has ended: a record that never came must not quiet a later flow's."""
    if _QUIET:
        _QUIET.discard(client)


def _quieted(record: logging.LogRecord) -> bool:
    client = getattr(record, "client", None)
    if client in _QUIET and str(record.msg).startswith(_STREAMING):
        _QUIET.discard(client)
        return True
    return False


def heard(logger: logging.Logger, level: int) -> bool:
    """Whether a record of ``level`` from ``logger`` would reach a handler that takes it:
    with ``mitmdump -q`` none does (its console takes errors only, and the ``add_log`` event
    is kept out above), and a line not shown need not be made."""
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if handler.level <= level and not any(
                getattr(f, "ccswitch_keeps_out", None) == logger.name for f in handler.filters
            ):
                return True
        current = current.parent if current.propagate else None
    return False


# The fields of mitmproxy's ResponseData in 11 and 12; another set: the public constructor.
_RESPONSE_FIELDS = frozenset(
    ("http_version", "headers", "content", "trailers", "timestamp_start", "timestamp_end")
) | {"status_code", "reason"}
_SET_DIRECTLY = {f.name for f in dataclasses.fields(http.ResponseData)} == _RESPONSE_FIELDS


def response(
    status: int, reason: bytes, headers: http.Headers, body: bytes, now: float
) -> http.Response:
    """An HTTP/1.1 response as if from ``http.Response(...)``, without its type checks."""
    if not _SET_DIRECTLY:
        return http.Response(b"HTTP/1.1", status, reason, headers, body, None, now, now)
    data = object.__new__(http.ResponseData)
    data.__dict__.update(
        http_version=b"HTTP/1.1",
        headers=headers,
        content=body,
        trailers=None,
        timestamp_start=now,
        timestamp_end=now,
        status_code=status,
        reason=reason,
    )
    made = object.__new__(http.Response)
    made.data = data
    return made
