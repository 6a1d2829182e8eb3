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
            sent = provider.models.get(requested or "") or provider.models.get("*")
    else:
        requested = sent = peek_model(body)
    keyed = provider.auth is not Auth.PASSTHROUGH
    if keyed and query:
        query = _without_key(query)
    url = f"{provider.scheme}://{_authority(provider)}{join_path(provider.base_path, path)}"
    if query:
        url += "?" + query
    put = (*credential_headers(provider), *provider.headers.items())
    replaced = {name.lower().encode() for name, _ in put}
    headers: list[tuple[str, str]] = []
    for name, value in client_headers:
        lower = name.lower()
        if (
            lower in _DROP
            or lower in replaced
            or (keyed and lower in _CREDENTIALS)
            or lower.startswith(b"x-ccswitch-")
        ):
            continue
        headers.append((name.decode("latin-1"), value.decode("latin-1")))
    headers.extend(put)
    headers.append(_ACCEPT_ENCODING)
    # The key, credential headers, and values taken from ${VAR}; a plain extra header (an
    # X-Title) is shown as it is.
    secrets = frozenset(value for _, value in credential_headers(provider)) | {
        value
        for name, value in provider.headers.items()
        if name.lower() in provider.secret_headers or name.lower() in CLIENT_CREDENTIAL_HEADERS
    }
    if not keyed:  # the tool's own key, passed on: still not for display
        secrets |= {
            value.decode("latin-1")
            for name, value in client_headers
            if name.lower() in _CREDENTIALS
        }
    return Outgoing(method, url, tuple(headers), body, requested, sent, secrets)


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
