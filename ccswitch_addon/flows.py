"""What the addon does to mitmproxy flows: point a routed flow at the relay and back, build
the flows that show each attempt, answer by itself.

With addon.py the only modules that touch mitmproxy; the decisions stay in the core and the
provider side.
"""

# No `from __future__ import annotations`: see addon.py (dataclasses in a script module).
import asyncio
import copy
import functools
import ipaddress
from typing import Any

from mitmproxy import connection, http
from mitmproxy.flow import Error

from ccswitch_addon import compat
from ccswitch_addon.core.config import AppConfig, Endpoint
from ccswitch_addon.upstream.answer import HEAD_HEADER, REASONS, Verdict
from ccswitch_addon.upstream.job import AttemptRecord, Exchange
from ccswitch_addon.upstream.relay import JOB_HEADER, TOKEN_HEADER
from ccswitch_addon.wire.replies import Reply

ATTEMPT = "ccswitch_attempt"  # metadata key of the flows that show one attempt at a provider
ROUTED = "ccswitch"  # metadata key of a routed flow: app, provider, attempts

STREAM_ABOVE_BYTES = 1024 * 1024


def point_at_relay(request: http.Request, port: int, token: str, job: str) -> None:
    """Send the flow to the relay: a small request; the body stays in the exchange."""
    data = request.data
    data.scheme = b"http"
    data.host = "127.0.0.1"
    data.port = port
    data.authority = b""
    host = b"127.0.0.1:%d" % port
    data.headers = http.Headers(
        (
            (b"host", host),
            (TOKEN_HEADER.encode(), token.encode()),
            (JOB_HEADER.encode(), job.encode()),
            (HEAD_HEADER.encode(), b"later"),
            (b"content-length", b"0"),
        )
    )
    data.content = b""


def relay_copy(request: http.Request, port: int, token: str, job: str) -> http.Request:
    """A copy of the tool's request pointed at the relay, for mitmproxy to send. The flow keeps
    showing the tool's own request (its URL and headers, never the relay's token) once the
    relay has the copy. Shallow: the copy gets a data record of its own, whose fields
    point_at_relay replaces (new headers, no body), and shares nothing it changes; mitmproxy's
    own ``copy()`` serializes the whole request and back, a third of a stream's request hook."""
    shallow = copy.copy(request)
    shallow.data = copy.copy(request.data)
    point_at_relay(shallow, port, token, job)
    return shallow


def exchange_of(request: http.Request, app: AppConfig, endpoint: Endpoint) -> Exchange:
    data = request.data
    return Exchange(
        app=app,
        endpoint=endpoint,
        method=request.method,
        path=data.path.decode("utf-8", "surrogateescape"),
        headers=data.headers.fields,
        body=data.content,
    )


def is_loopback(address: Any) -> bool:
    try:
        return _loopback_ip(address[0])
    except (TypeError, IndexError):
        return False


@functools.lru_cache(maxsize=1024)
def _loopback_ip(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def is_internal(flow: http.HTTPFlow) -> bool:
    """A flow the addon made itself to show an attempt: never routed again."""
    return ATTEMPT in flow.metadata


def to_response(reply: Reply) -> http.Response:
    return http.Response.make(reply.status, reply.body, dict(reply.headers))


def body_headers(headers: http.Headers) -> tuple[str, str | None]:
    """(content type, content length) of a message, in one pass over the fields."""
    content_type, length = "", None
    for key, value in headers.fields:
        name = key.lower()
        if name == b"content-type":
            content_type = content_type or value.decode("latin-1")
        elif name == b"content-length":
            length = length or value.decode("latin-1")
    return content_type, length


def streams(content_type: str, length: str | None) -> bool:
    """Event streams, and bodies of unknown or large length, are relayed as they arrive.

    A small JSON answer with a known length is buffered instead: nothing a client could
    notice, and mitmproxy's streaming path costs more per request than the wait.
    """
    if "text/event-stream" in content_type:
        return True
    return length is None or not length.isdigit() or int(length) > STREAM_ABOVE_BYTES


async def told_head(flow: http.HTTPFlow, later: "asyncio.Future[Verdict | None]") -> None:
    """The relay's stand-in head becomes the one the exchange tells (``Answer.later``), once
    it is known and before mitmproxy sends anything of the answer on. None: no answer comes,
    and mitmproxy sees the relay's connection end."""
    verdict = await later
    response = flow.response
    if verdict is None or response is None:
        return
    status, told, streamed = verdict
    data = response.data
    data.status_code = status
    data.reason = REASONS.get(status, b"Unknown")
    data.headers = http.Headers(told)
    response.stream = streamed or streams(*body_headers(data.headers))
    if response.stream:
        compat.quiet_stream_start(flow.client_conn.peername)


def attempt_flow(flow: http.HTTPFlow, app: str, record: AttemptRecord, of: int) -> http.HTTPFlow:
    """One attempt at a provider as a flow of its own: the request as sent (secrets masked),
    the provider's status, headers and body as far as they were kept."""
    request = http.Request.make(
        record.method,
        record.url,
        record.body or b"",
        [(k.encode("latin-1"), v.encode()) for k, v in record.headers],
    )
    request.timestamp_start = request.timestamp_end = record.started
    address = (request.host, request.port)
    attempt = http.HTTPFlow(flow.client_conn, connection.Server(address=address))
    attempt.request = request
    if record.status is not None:
        response = http.Response.make(
            record.status,
            record.response_body,
            [(k.encode("latin-1"), v.encode("latin-1")) for k, v in record.response_headers],
        )
        response.timestamp_start = response.timestamp_end = record.ended or record.started
        attempt.response = response
    elif record.error:
        attempt.error = Error(record.error, record.ended or record.started)
    attempt.metadata[ATTEMPT] = {
        "of": flow.id,
        "app": app,
        "provider": record.provider,
        "attempt": record.number,
    }
    outcome = record.error or (str(record.status) if record.status is not None else "")
    attempt.comment = (
        f"{app} attempt {record.number}/{of} → {record.provider}: {outcome} (for {flow.id[:8]})"
    )
    attempt.marked = ":x:" if record.failed else ":white_check_mark:"
    return attempt
