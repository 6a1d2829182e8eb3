"""A routed request that asked for no stream, served inside mitmproxy's request hook.

The exchange answers into a :class:`HeldAnswer`, which becomes the flow's response: mitmproxy
sends it to the tool and opens no connection for the flow at all, so such a request costs no
relay hop (mitmproxy's upstream HTTP/1.1 exchange with the relay, and the relay's with it).
Streams still go through the relay, which passes their events on as they come.

The serving runs in the request hook of :class:`ServeLast`, an addon the main one adds at the
end of mitmproxy's chain once mitmproxy runs: every other addon sees the tool's request first,
as it would before a request goes upstream (mitmweb lists it while it is served, a ``-w`` file
saves it if mitmproxy stops meanwhile, an intercept holds it until it is resumed).

While a hook runs, mitmproxy holds the other events of its connection, a client that hangs up
among them. So the client is looked at once a second; once it has gone, the hook's task is
cancelled (the provider's request goes with it, recorded as the client's leaving, as in the
relay) and the flow killed.
"""

# No `from __future__ import annotations`: see addon.py (dataclasses in a script module).
import asyncio
import logging
import time
from collections.abc import Callable

from mitmproxy import http

from ccswitch_addon.upstream.answer import REASONS, one_line_each
from ccswitch_addon.upstream.exchange import Exchange, Upstream
from ccswitch_addon.upstream.held import HeldAnswer
from ccswitch_addon.wire.replies import api_error

__all__ = ["ServeLast", "serve_in_hook"]

logger = logging.getLogger(__name__)

CLIENT_CHECK_SECONDS = 1.0


class ServeLast:
    """The request hook at the end of the chain that serves the requests left to it."""

    name = "ccswitch_serve_last"  # mitmproxy's addon manager names each addon once

    def __init__(self) -> None:
        self.pending: dict[str, tuple[Upstream, Exchange]] = {}
        self.registered = False  # in mitmproxy's chain: else the main hook serves at once

    async def request(self, flow: http.HTTPFlow) -> None:
        job = self.pending.pop(flow.id, None)
        if job is None:
            return
        if flow.intercepted:  # held in mitmweb: served as the user resumes it, if at all
            await flow.wait_for_resume()  # type: ignore[no-untyped-call]
        if flow.response is not None or flow.error is not None or not flow.live:
            return  # answered or killed by another addon
        await serve_in_hook(flow, *job)

    def error(self, flow: http.HTTPFlow) -> None:
        self.pending.pop(flow.id, None)


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
    now = time.time()
    return http.Response(
        b"HTTP/1.1",
        held.status,
        REASONS.get(held.status, b""),
        http.Headers(fields),
        held.body,
        None,
        now,
        now,
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
