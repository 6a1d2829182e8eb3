"""A routed request that asked for no stream, served inside mitmproxy's request hook.

The exchange answers into a :class:`HeldAnswer`, which becomes the flow's response: mitmproxy
sends it to the tool and opens no connection for the flow at all, so such a request costs no
relay hop (mitmproxy's upstream HTTP/1.1 exchange with the relay, and the relay's with it).
Streams still go through the relay, which passes their events on as they come.

The serving starts once every addon has seen the tool's request, as it would go upstream
(mitmweb lists it while it is served, a ``-w`` file saves it if mitmproxy stops meanwhile, an
intercept holds it until it is resumed). That point is the flow's ``wait_for_resume``, which
mitmproxy 11 and 12 await right after each hook's addon chain (``serve_after_addons``). An
addon of our own at the end of the chain did the same, at about 25 µs a request: mitmproxy
dispatches every event of every flow to every addon of its chain.

While a hook runs, mitmproxy holds the other events of its connection, a client that hangs up
among them. So the client is looked at once a second; once it has gone, the hook's task is
cancelled (the provider's request goes with it, recorded as the client's leaving, as in the
relay) and the flow killed.
"""

# No `from __future__ import annotations`: see addon.py (dataclasses in a script module).
import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from mitmproxy import http

from ccswitch_addon import compat
from ccswitch_addon.upstream.answer import REASONS, one_line_each
from ccswitch_addon.upstream.exchange import Upstream
from ccswitch_addon.upstream.held import HeldAnswer
from ccswitch_addon.upstream.job import Exchange
from ccswitch_addon.wire.replies import api_error

__all__ = ["after_addons", "serve_after_addons", "serve_in_hook"]

logger = logging.getLogger(__name__)

CLIENT_CHECK_SECONDS = 1.0


def after_addons(flow: http.HTTPFlow, then: Callable[[], Awaitable[None] | None]) -> None:
    """Run ``then`` when mitmproxy next awaits the flow's ``wait_for_resume``: after the
    request hook of every addon, and after the user resumes it if one intercepted it; never
    for a flow another addon answered or killed."""
    resumed: Callable[[], Coroutine[Any, Any, None]] = flow.wait_for_resume

    async def then_go_on() -> None:
        del flow.wait_for_resume  # the class's own again, for the flow's later hooks
        await resumed()
        if flow.response is not None or flow.error is not None or not flow.live:
            return
        going = then()
        if going is not None:
            await going

    flow.wait_for_resume = then_go_on  # type: ignore[method-assign]


def serve_after_addons(flow: http.HTTPFlow, upstream: Upstream, exchange: Exchange) -> None:
    """Serve a whole answer in the hook, once every addon has seen the request."""
    after_addons(flow, lambda: serve_in_hook(flow, upstream, exchange))


async def serve_in_hook(flow: http.HTTPFlow, upstream: Upstream, exchange: Exchange) -> None:
    """Run the exchange and set its answer as the flow's response (or kill the flow once the
    client has gone)."""
    held = HeldAnswer()
    task = asyncio.current_task()
    assert task is not None
    watch = _ClientWatch(flow, task)
    try:
        await upstream.serve(exchange, held)
    except asyncio.CancelledError:
        if not watch.fired or task.uncancel() > 0:
            raise  # mitmproxy is stopping (too)
        _kill(flow)
        return
    except Exception:
        logger.exception("ccswitch: failed to answer a request")
        if held.started:  # begun and not finished: nothing whole to send
            _kill(flow)
            return
        reply = api_error(exchange.app.api, 500, "ccswitch: the proxy failed to answer")
        held.whole(reply.status, reply.headers, reply.body)
    finally:
        watch.cancel()
    flow.response = response_of(held)


def response_of(held: HeldAnswer) -> http.Response:
    """The held answer as mitmproxy's response: the provider's header bytes as they came (read
    as latin-1), text of our own that latin-1 cannot carry as UTF-8, never a line break."""
    fields = [(_encoded(name), _encoded(value)) for name, value in one_line_each(held.headers)]
    fields.append((b"content-length", b"%d" % len(held.body)))
    return compat.response(
        held.status, REASONS.get(held.status, b""), http.Headers(fields), held.body, time.time()
    )


def _kill(flow: http.HTTPFlow) -> None:
    """The flow ends with mitmproxy's "killed" error: nothing goes to the tool or elsewhere.
    (``kill`` is untyped in mitmproxy 11 and typed in 12: a typed name, not an ignore.)"""
    if flow.killable:
        kill: Callable[[], None] = flow.kill
        kill()


def _encoded(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


class _ClientWatch:
    """Looks at the flow's client once a second while its request is served."""

    __slots__ = ("_flow", "_handle", "_task", "fired")

    def __init__(self, flow: http.HTTPFlow, task: "asyncio.Task[object]") -> None:
        self._flow = flow
        self._task = task
        self.fired = False
        self._handle = asyncio.get_running_loop().call_later(CLIENT_CHECK_SECONDS, self._check)

    def _check(self) -> None:
        if self._flow.client_conn.connected:
            self._handle = asyncio.get_running_loop().call_later(CLIENT_CHECK_SECONDS, self._check)
            return
        self.fired = True
        self._task.cancel()

    def cancel(self) -> None:
        self._handle.cancel()
