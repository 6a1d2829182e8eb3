"""The request one attempt sends to one provider, built from the client's request."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from ccswitch_addon.core.bodies import inflate
from ccswitch_addon.core.config import AppConfig, Auth, ProviderConfig
from ccswitch_addon.core.rewrite import (
    CLIENT_CREDENTIAL_HEADERS,
    CLIENT_CREDENTIAL_QUERY,
    credential_headers,
    join_path,
    map_model,
    mask,
    peek_model,
    rewrite_body_model,
    rewrite_gemini_path,
)
from ccswitch_addon.wire.api import Api

__all__ = ["Outgoing", "build", "shown_headers"]

# Hop-by-hop and framing headers: the client's connection is not the provider's. The body
# encoding is left to the client library, which decodes what it asks for.
_DROP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"accept-encoding",
        b"expect",
        b"http2-settings",
    }
)
_CREDENTIALS = frozenset(name.encode() for name in CLIENT_CREDENTIAL_HEADERS)
_ACCEPT_ENCODING = ("accept-encoding", "gzip, deflate")
# The request hook's guard has already refused a body that inflates past ccswitch_body_limit.
INFLATE_LIMIT = 1 << 31


@dataclass(frozen=True, slots=True)
class Outgoing:
    method: str
    url: str  # already percent-encoded: sent as it is
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    model_requested: str | None
    model_sent: str | None
    secrets: frozenset[str]  # header values that must never be shown


def build(
    app: AppConfig,
    provider: ProviderConfig,
    method: str,
    path: str,
    client_headers: Sequence[tuple[bytes, bytes]],
    body: bytes | None,
) -> Outgoing:
    """Point the client's request at ``provider``: URL, model, credentials, extra headers.

    The body is parsed and rewritten only when a model mapping applies: coding tools send
    contexts of several megabytes.
    """
    path, _, query = path.partition("?")
    if app.api is Api.GEMINI:
        path, requested, sent = rewrite_gemini_path(path, provider.models)
    elif provider.models:
        encoding = _content_encoding(client_headers)
        plain = inflate(body or b"", encoding, INFLATE_LIMIT) if encoding else body or b""
        rewritten, requested = rewrite_body_model(plain, provider.models)
        sent = requested
        if rewritten is not None:
            body = _encode(rewritten, encoding) if encoding else rewritten
            if encoding and body is rewritten:  # sent as it is now: say so
                client_headers = [
                    (name, value)
                    for name, value in client_headers
                    if name.lower() != b"content-encoding"
                ]
            sent = map_model(provider.models, requested) or requested
    else:
        requested = sent = peek_model(body)
    plan = _plan_of(provider)
    if plan.keyed and query:
        query = _without_key(query)
    url = plan.origin + join_path(provider.base_path, path)
    if query:
        url += "?" + query
    drop, keyed = plan.drop, plan.keyed
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in client_headers
        if (lower := name.lower()) not in drop and not lower.startswith(b"x-ccswitch-")
    ]
    headers += plan.put
    secrets = plan.secrets
    if not keyed:  # the tool's own key, passed on: still not for display
        secrets = secrets | {
            value.decode("latin-1")
            for name, value in client_headers
            if name.lower() in _CREDENTIALS
        }
    return Outgoing(method, url, tuple(headers), body, requested, sent, secrets)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What every request to one provider shares, worked out once per provider."""

    keyed: bool
    origin: str  # scheme://authority
    drop: frozenset[bytes]  # client header names (lower case) never sent on
    put: tuple[tuple[str, str], ...]  # the provider's credential and extra headers, and ours
    secrets: frozenset[str]  # header values never shown


_plans: dict[int, tuple[ProviderConfig, _Plan]] = {}


def _plan_of(provider: ProviderConfig) -> _Plan:
    cached = _plans.get(id(provider))
    if cached is not None and cached[0] is provider:
        return cached[1]
    keyed = provider.auth is not Auth.PASSTHROUGH
    credentials = credential_headers(provider)
    put = (*credentials, *provider.headers.items())
    replaced = {name.lower().encode() for name, _ in put}
    # The key, credential headers, and values taken from ${VAR}; a plain extra header (an
    # X-Title) is shown as it is.
    secrets = frozenset(value for _, value in credentials) | {
        value
        for name, value in provider.headers.items()
        if name.lower() in provider.secret_headers or name.lower() in CLIENT_CREDENTIAL_HEADERS
    }
    plan = _Plan(
        keyed=keyed,
        origin=f"{provider.scheme}://{_authority(provider)}",
        drop=frozenset(_DROP | replaced | (_CREDENTIALS if keyed else frozenset())),
        put=(*put, _ACCEPT_ENCODING),
        secrets=secrets,
    )
    if len(_plans) > 1024:  # configurations come and go with reloads
        _plans.clear()
    _plans[id(provider)] = (provider, plan)
    return plan


def shown_headers(outgoing: Outgoing) -> list[tuple[str, str]]:
    """The headers as they may be shown (in mitmweb, flow files): every secret masked."""
    shown = []
    for name, value in outgoing.headers:
        if value in outgoing.secrets:
            scheme, _, token = value.partition(" ")
            value = f"{scheme} {mask(token)}" if token and scheme == "Bearer" else mask(value)
        shown.append((name, value))
    return shown


def _content_encoding(headers: Sequence[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name.lower() == b"content-encoding":
            coding = value.decode("latin-1").strip().lower()
            return "" if coding in ("identity", "none") else coding
    return ""


def _encode(body: bytes, coding: str) -> bytes:
    """The rewritten body in the client's own encoding where that is cheap to make again."""
    if coding in ("gzip", "x-gzip"):
        return gzip.compress(body, compresslevel=1)
    if coding == "deflate":
        return zlib.compress(body, 1)
    return body  # br, zstd: sent as identity


def _authority(provider: ProviderConfig) -> str:
    host = f"[{provider.host}]" if ":" in provider.host else provider.host
    default = 443 if provider.scheme == "https" else 80
    return host if provider.port == default else f"{host}:{provider.port}"


def _without_key(query: str) -> str:
    """The query without the client's own ``key=`` (Gemini's query-string credential)."""
    return "&".join(
        part
        for part in query.split("&")
        if part.partition("=")[0] != CLIENT_CREDENTIAL_QUERY and part
    )
