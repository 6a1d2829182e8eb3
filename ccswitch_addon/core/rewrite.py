"""Pure pieces of rewriting a request for a provider: path join, model mapping, credentials."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from ccswitch_addon.core.config import Api, Auth, ProviderConfig
from ccswitch_addon.core.modelmap import lookup

__all__ = [
    "CLIENT_CREDENTIAL_HEADERS",
    "CLIENT_CREDENTIAL_QUERY",
    "credential_headers",
    "join_path",
    "map_model",
    "mask",
    "peek_model",
    "probe_request",
    "rewrite_body_model",
    "rewrite_gemini_path",
    "top_level_model",
]

# Every header a client may carry its own key in; removed before a provider's key is set.
CLIENT_CREDENTIAL_HEADERS = ("x-api-key", "authorization", "x-goog-api-key")
CLIENT_CREDENTIAL_QUERY = "key"

_VERSION = re.compile(r"v\d+[a-z0-9]*")
_GEMINI_MODEL = re.compile(r"(/models/)([^/:?]+)(:)")
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')


def join_path(base_path: str, path: str) -> str:
    """Append a request path to a base URL's path without doubling a version segment.

    ``/v1`` + ``/v1/chat/completions`` → ``/v1/chat/completions``;
    ``/api`` + ``/v1/messages`` → ``/api/v1/messages``.
    """
    if not base_path:
        return path
    last = base_path.rsplit("/", 1)[-1]
    if _VERSION.fullmatch(last) and (path == f"/{last}" or path.startswith(f"/{last}/")):
        path = path[len(last) + 1 :]
    return base_path + path


def map_model(models: Mapping[str, str], requested: str | None) -> str | None:
    """The model to send instead of ``requested``, or None to leave it alone."""
    if not models or requested is None:
        return None
    mapped = lookup(models, requested)
    return mapped if mapped and mapped != requested else None


def peek_model(body: bytes | None) -> str | None:
    """The requested model, found cheaply near the start of a JSON body (for logs only)."""
    if not body:
        return None
    match = _MODEL_FIELD.search(body, 0, 4096)
    return match.group(1).decode("utf-8", "replace") if match else None


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def _top_level_model(text: str) -> tuple[int, int, object] | None:
    """(start, end, value) of the top-level "model" member of a JSON object, if there is one.

    Walks the top-level members in order and stops at "model": coding tools put it first,
    so a context of megabytes after it is never parsed.
    """
    index = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    if text[index : index + 1] != "{":
        return None
    index += 1
    while True:
        index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
        if text[index : index + 1] != '"':
            return None
        key, index = _DECODER.raw_decode(text, index)
        index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
        if text[index : index + 1] != ":":
            return None
        start = _SPACE.match(text, index + 1).end()  # type: ignore[union-attr]
        value, end = _DECODER.raw_decode(text, start)
        if key == "model":
            return start, end, value
        index = _SPACE.match(text, end).end()  # type: ignore[union-attr]
        if text[index : index + 1] != ",":
            return None
        index += 1


top_level_model = _top_level_model  # for core.facts: which model a request asks for


def rewrite_body_model(body: bytes, models: Mapping[str, str]) -> tuple[bytes | None, str | None]:
    """(new body or None if unchanged, requested model) for a JSON body with a top-level model.

    Only the model's value is replaced; every other byte of the body stays as the client
    sent it (no re-serialization of a long context).
    """
    if not models or b'"model"' not in body:
        return None, peek_model(body)
    try:
        text = body.decode("utf-8")
        found = _top_level_model(text)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, too deep: checked before
        return None, None
    if found is None or not isinstance(found[2], str):
        return None, None
    start, end, requested = found[0], found[1], found[2]
    mapped = map_model(models, requested)
    if mapped is None:
        return None, requested
    replaced = text[:start] + json.dumps(mapped, ensure_ascii=False) + text[end:]
    return replaced.encode("utf-8"), requested


def rewrite_gemini_path(path: str, models: Mapping[str, str]) -> tuple[str, str | None, str | None]:
    """(path, requested, sent) with the ``/models/{model}:`` segment mapped."""
    match = _GEMINI_MODEL.search(path)
    if match is None:
        return path, None, None
    requested = match.group(2)
    mapped = map_model(models, requested)
    if mapped is None:
        return path, requested, requested
    return path[: match.start(2)] + mapped + path[match.end(2) :], requested, mapped


def credential_headers(provider: ProviderConfig) -> tuple[tuple[str, str], ...]:
    """The header that carries this provider's own key (none for passthrough)."""
    key = provider.api_key
    if provider.auth is Auth.PASSTHROUGH or not key:
        return ()
    if provider.auth is Auth.BEARER:
        return (("authorization", f"Bearer {key}"),)
    return ((provider.auth.value, key),)


def mask(secret: str | None) -> str:
    """``sk-o…2222``: enough to tell keys apart, never enough to use one."""
    if not secret:
        return "-"
    if len(secret) < 12:
        return "…" * 3
    return f"{secret[:4]}…{secret[-4:]}"


DEFAULT_MODELS = {
    Api.ANTHROPIC: "claude-sonnet-4-5",
    Api.OPENAI: "gpt-5",
    Api.GEMINI: "gemini-2.5-flash",
}


def probe_model(api: Api, provider: ProviderConfig) -> str:
    """The model a probe or pre-flight test asks for: the provider's own mapping of the default."""
    default = DEFAULT_MODELS[api]
    return map_model(provider.models, default) or default


def probe_request(
    api: Api, provider: ProviderConfig
) -> tuple[str, str, list[tuple[str, str]], bytes | None]:
    """(method, path with the base, headers, body) of the provider's active health probe."""
    probe = provider.probe
    assert probe is not None
    headers = [*credential_headers(provider), *provider.headers.items()]
    body = None
    if probe.body is not None:
        body = probe.body.replace("{model}", probe_model(api, provider)).encode()
        headers.append(("content-type", "application/json"))
    if api is Api.ANTHROPIC:
        headers.append(("anthropic-version", "2023-06-01"))
    return probe.method, join_path(provider.base_path, probe.path), headers, body
