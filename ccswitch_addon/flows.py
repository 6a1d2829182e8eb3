"""What the addon does to mitmproxy flows: rewrite, retry and probe flows, outcomes, masking.

With addon.py and attempts.py the only modules that touch mitmproxy; the decisions stay in
the core.
"""

# No `from __future__ import annotations`: see addon.py (dataclasses in a script module).
import functools
import ipaddress
import time
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import connection, http
from mitmproxy.net.http import url

from ccswitch_addon.core.breaker import Permit
from ccswitch_addon.core.config import Api, AppConfig, Auth, ProviderConfig
from ccswitch_addon.core.outcome import ErrorKind, Outcome, classify_error, classify_status
from ccswitch_addon.core.rewrite import (
    CLIENT_CREDENTIAL_HEADERS,
    CLIENT_CREDENTIAL_QUERY,
    credential_headers,
    join_path,
    mask,
    peek_model,
    probe_request,
    rewrite_body_model,
    rewrite_gemini_path,
)
from ccswitch_addon.core.rules import BODY_LIMIT, classify_response
from ccswitch_addon.engine import Attempt
from ccswitch_addon.wire.replies import Reply
from ccswitch_addon.wire.usage import BodyWatch

ATTEMPT = "ccswitch_attempt"  # metadata key of the flows that carry a retry
PROBE = "ccswitch_probe"  # metadata key of the flows that carry an active health probe


@dataclass(frozen=True, slots=True)
class Original:
    """The parts of the client's request that a rewrite changes, kept for a retry.

    Cheaper than a full Request.copy() on every request: the header fields are an immutable
    tuple and the body immutable bytes, so keeping them copies nothing.
    """

    path: bytes
    fields: tuple[tuple[bytes, bytes], ...]
    body: bytes | None

    @classmethod
    def of(cls, request: http.Request) -> "Original":
        return cls(request.data.path, request.headers.fields, request.raw_content)

    def restored(self, request: http.Request) -> http.Request:
        """A new request as the client sent it, beside the flow's own (rewritten) one.

        Built from its parts rather than by Request.copy(), which serializes and rebuilds
        the whole request, body included.
        """
        data = request.data
        return http.Request(
            data.host,
            data.port,
            data.method,
            data.scheme,
            data.authority,
            self.path,
            data.http_version,
            http.Headers(self.fields),
            self.body,
            data.trailers.fields if data.trailers is not None else None,
            data.timestamp_start,
            data.timestamp_end,
        )


@dataclass(slots=True)
class Routed:
    """What the addon keeps about one client request while it is being served."""

    app: AppConfig  # the configuration the request started with, kept through a reload
    candidates: tuple[ProviderConfig, ...]
    original: Original  # as the client sent it, to rewrite again for the next provider
    skipped: list[str]
    provider: ProviderConfig | None = None
    permit: Permit | None = None
    started: float = field(default_factory=time.time)
    attempt_started: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    watch: BodyWatch | None = None
    models: tuple[str | None, str | None] = (None, None)  # requested, sent
    attempt_wall: float = 0.0  # time.time() when the current attempt was sent
    awaiting: bool = False  # the current attempt has no response headers yet
    late: bool = False  # the current attempt was already recorded as a first-byte timeout


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
    """A retry or probe the addon itself sends: routed already, handled by its sender."""
    return ATTEMPT in flow.metadata or PROBE in flow.metadata


def to_response(reply: Reply) -> http.Response:
    return http.Response.make(reply.status, reply.body, dict(reply.headers))


def rewrite_request(
    request: http.Request, app: AppConfig, provider: ProviderConfig
) -> tuple[str | None, str | None]:
    """Point ``request``, still as the client sent it, at ``provider``.

    Returns the requested and the sent model. The body is touched only when a model
    mapping applies: coding tools send contexts of several megabytes.
    """
    path, _, query = request.path.partition("?")
    if app.api is Api.GEMINI:
        path, requested, sent = rewrite_gemini_path(path, provider.models)
    elif provider.models:
        body, requested = rewrite_body_model(
            request.get_content(strict=False) or b"", provider.models
        )
        sent = requested
        if body is not None:
            request.set_content(body)
            sent = provider.models.get(requested or "") or provider.models.get("*")
    else:
        requested = sent = peek_model(request.raw_content)
    wire = wire_of(provider)
    data = request.data
    data.scheme = wire.scheme
    # Through .data: the host, port, scheme and path setters would each rewrite the Host
    # header or re-encode; the Host header is set once below with the other header edits
    # (mitmproxy then uses it for SNI too).
    data.host = provider.host
    data.port = provider.port
    new_path = join_path(provider.base_path, path)
    if wire.keyed and query and CLIENT_CREDENTIAL_QUERY in request.query:
        del request.query[CLIENT_CREDENTIAL_QUERY]
        query = request.path.partition("?")[2]
    data.path = (new_path + "?" + query if query else new_path).encode("utf-8", "surrogateescape")
    h2 = request.is_http2 or request.is_http3
    if h2:  # :authority is the HTTP/2 Host; a Host field is replaced, not added
        data.authority = wire.host
    edit_headers(data.headers, wire.put, wire.remove, host=wire.host, add_host=not h2)
    return requested, sent


@dataclass(frozen=True)
class Wire:
    """What a rewrite sets for one provider, as bytes: worked out once per provider."""

    scheme: bytes
    host: bytes  # the Host header: host, and the port when it is not the scheme's default
    put: tuple[tuple[bytes, bytes], ...]  # the provider's credential and extra headers
    remove: frozenset[bytes]  # lower-case names to take out: those put, and when keyed
    keyed: bool  # the client's own credentials


_WIRES: dict[int, tuple[ProviderConfig, Wire]] = {}


def wire_of(provider: ProviderConfig) -> Wire:
    entry = _WIRES.get(id(provider))
    if entry is not None and entry[0] is provider:  # the entry holds it: its id is not reused
        return entry[1]
    if len(_WIRES) >= 1024:  # reloads made new provider objects; start over
        _WIRES.clear()
    keyed = provider.auth is not Auth.PASSTHROUGH
    put = tuple(
        (name.encode(), value.encode("utf-8", "surrogateescape"))
        for name, value in (*credential_headers(provider), *provider.headers.items())
    )
    remove = {name.lower() for name, _ in put}
    if keyed:
        remove.update(name.encode() for name in CLIENT_CREDENTIAL_HEADERS)
    wire = Wire(
        scheme=provider.scheme.encode(),
        host=_ascii_or_idna(url.hostport(provider.scheme, provider.host, provider.port)),
        put=put,
        remove=frozenset(remove),
        keyed=keyed,
    )
    _WIRES[id(provider)] = (provider, wire)
    return wire


def _ascii_or_idna(host: str) -> bytes:
    try:
        return host.encode("ascii")  # the codec "idna" costs microseconds even for ASCII
    except UnicodeEncodeError:
        return host.encode("idna")


def edit_headers(
    headers: http.Headers,
    put: Sequence[tuple[bytes, bytes]],
    remove: Set[bytes] = frozenset(),
    host: bytes | None = None,
    add_host: bool = False,
) -> None:
    """Take out ``remove`` (lower-case names), append ``put`` and replace Host, in one pass
    over the fields.

    mitmproxy's Headers item access scans and lower-cases every field per call; a request
    rewrite made a dozen such calls. Replaced names lose their place and go to the end
    (header order carries no meaning), except Host, which keeps its place.
    """
    fields = []
    seen_host = False
    for pair in headers.fields:
        name = pair[0].lower()
        if name in remove:
            continue
        if name == b"host" and host is not None:
            if seen_host:
                continue
            pair, seen_host = (pair[0], host), True
        fields.append(pair)
    if host is not None and add_host and not seen_host:
        fields.insert(0, (b"Host", host))
    fields.extend(put)
    headers.fields = tuple(fields)


def attempt_flow(flow: http.HTTPFlow, routed: Routed, provider: ProviderConfig) -> http.HTTPFlow:
    request = routed.original.restored(flow.request)
    routed.models = rewrite_request(request, routed.app, provider)
    attempt = http.HTTPFlow(
        flow.client_conn, connection.Server(address=(provider.host, provider.port))
    )
    attempt.request = request
    attempt.is_replay = "request"
    number = len(routed.attempts) + 1
    attempt.metadata[ATTEMPT] = {
        "of": flow.id,
        "app": routed.app.name,
        "provider": provider.id,
        "attempt": number,
    }
    attempt.comment = f"{routed.app.name} attempt {number} → {provider.id} (for {flow.id[:8]})"
    attempt.marked = ":repeat:"
    return attempt


def probe_flow(app: AppConfig, provider: ProviderConfig) -> http.HTTPFlow:
    """An active health probe for an open provider, as a flow of its own (marked in mitmweb)."""
    method, path, headers, body = probe_request(app.api, provider)
    request = http.Request.make(
        method,
        f"{provider.scheme}://{provider.host}:{provider.port}{path}",
        body or b"",
        http.Headers([(k.encode(), v.encode()) for k, v in headers]),
    )
    client = connection.Client(peername=("127.0.0.1", 0), sockname=("127.0.0.1", 0))
    probe = http.HTTPFlow(client, connection.Server(address=(provider.host, provider.port)))
    probe.request = request
    probe.is_replay = "request"
    probe.metadata[PROBE] = {"app": app.name, "provider": provider.id}
    probe.comment = f"ccswitch probe {app.name}:{provider.id}"
    probe.marked = ":stethoscope:"
    return probe


STREAM_ABOVE_BYTES = 1024 * 1024


def body_headers(headers: http.Headers) -> tuple[str, str | None, bool]:
    """(content type, content length, encoded) of a message, in one pass over the fields."""
    content_type, length, encoded = "", None, False
    for key, value in headers.fields:
        name = key.lower()
        if name == b"content-type":
            content_type = content_type or value.decode("latin-1")
        elif name == b"content-length":
            length = length or value.decode("latin-1")
        elif name == b"content-encoding":
            encoded = True
    return content_type, length, encoded


def should_stream(response: http.Response) -> bool:
    """Event streams, and bodies of unknown or large length, are relayed as they arrive.

    A small JSON answer with a known length is buffered instead: nothing a client could
    notice, and mitmproxy's streaming path costs more per request than the wait.
    """
    content_type, length, _ = body_headers(response.headers)
    return streams(content_type, length)


def streams(content_type: str, length: str | None) -> bool:
    """should_stream() from the headers already read."""
    if "text/event-stream" in content_type:
        return True
    return length is None or not length.isdigit() or int(length) > STREAM_ABOVE_BYTES


def watch_body(api: Api, response: http.Response) -> BodyWatch:
    """A watcher fed a complete (buffered) body at once."""
    content_type, _, encoded = body_headers(response.headers)
    watch = BodyWatch(api, content_type)
    watch.complete((response.get_content(strict=False) if encoded else response.raw_content) or b"")
    return watch


_LABELS = frozenset({b"x-ccswitch-provider", b"x-ccswitch-attempts"})


def label(response: http.Response, provider: str, attempts: int) -> None:
    edit_headers(
        response.headers,
        ((b"x-ccswitch-provider", provider.encode()), (b"x-ccswitch-attempts", b"%d" % attempts)),
        _LABELS,
    )


def mask_key(request: http.Request, provider: ProviderConfig) -> None:
    """The request has gone upstream: keep only a masked key in the flow that mitmweb shows
    and that flow files save."""
    for name, value in credential_headers(provider):
        masked = mask(value) if name != "authorization" else f"Bearer {mask(provider.api_key)}"
        sent, shown, raw = name.encode(), masked.encode(), value.encode()
        request.headers.fields = tuple(
            (key, shown) if value == raw and key.lower() == sent else (key, value)
            for key, value in request.headers.fields
        )


def response_outcome(response: http.Response, routed: Routed) -> Outcome:
    """What this answer means; a success that streamed is judged by what the watcher saw."""
    assert routed.provider is not None
    if response.status_code < 400:
        problem = routed.watch.problem() if routed.watch is not None else None
        return (
            classify_error(ErrorKind.STREAM, problem)
            if problem
            else classify_status(response.status_code)
        )

    def body() -> str:
        content = response.get_content(strict=False) or b""
        return content[:BODY_LIMIT].decode("utf-8", "replace")

    return classify_response(
        response.status_code,
        response.headers,
        body,
        time.time(),
        routed.app.rules_for(routed.provider),
        routed.app.breaker.max_cooldown_seconds,
    )


def error_outcome(flow: http.HTTPFlow) -> Outcome:
    message = flow.error.msg if flow.error else ""
    if flow.error and message == flow.error.KILLED_MESSAGE:
        return classify_error(ErrorKind.CLIENT_GONE, "killed")
    if flow.response is not None:  # the headers came, then the stream broke
        return classify_error(ErrorKind.STREAM, message)
    server = flow.server_conn
    if server.timestamp_tcp_setup is None or (server.tls and server.timestamp_tls_setup is None):
        return classify_error(ErrorKind.CONNECT, message)
    if not flow.client_conn.connected:
        return classify_error(ErrorKind.CLIENT_GONE, message)
    return classify_error(ErrorKind.RESET, message)
