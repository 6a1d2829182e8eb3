"""`ccswitch test`: one minimal real request to each provider, before an outage finds the typo."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ccswitch_addon.core.config import Api, AppConfig, Auth, ProviderConfig
from ccswitch_addon.core.proxy import Proxies
from ccswitch_addon.core.rewrite import credential_headers, join_path, probe_model
from ccswitch_addon.upstream.tunnel import connect_through
from ccswitch_addon.wire.translate import (
    FORMAT_API,
    TranslationError,
    Translator,
    tool_format,
    translator_for,
)
from ccswitch_addon.wire.usage import BodyWatch

__all__ = ["Check", "check_provider"]

PROMPT = "Reply with the single word: ok"
# A provider of another format is asked, through the translation, to call this tool.
TOOL = "ccswitch_ping"
TOOL_PROMPT = f"Call the tool {TOOL} with word set to ok."
_TOOL_SCHEMA = {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}
# Where a passthrough provider's key comes from when testing outside the tool.
TOOL_KEYS: Mapping[Api, tuple[str, ...]] = {
    Api.ANTHROPIC: ("ANTHROPIC_API_KEY",),
    Api.OPENAI: ("OPENAI_API_KEY",),
    Api.GEMINI: ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
}


@dataclass
class Check:
    app: str
    provider: str
    reachable: bool | None = None
    tls: bool | None = None  # None: plain http
    auth: bool | None = None  # None: not tested (passthrough without a key)
    model: bool | None = None
    ttfb_ms: float | None = None
    streaming: bool | None = None
    tools: bool | None = None  # a translated provider: the tool call survived both ways
    detail: str = ""

    @property
    def passed(self) -> bool:
        return (
            all(
                v is not False
                for v in (
                    self.reachable,
                    self.tls,
                    self.auth,
                    self.model,
                    self.streaming,
                    self.tools,
                )
            )
            and self.reachable is True
        )

    def row(self) -> list[str]:
        def mark(value: bool | None, unknown: str = "-") -> str:
            return unknown if value is None else ("ok" if value else "FAIL")

        return [
            self.app,
            self.provider,
            mark(self.reachable),
            mark(self.tls, "n/a"),
            mark(self.auth, "untested"),
            mark(self.model),
            "-" if self.ttfb_ms is None else f"{self.ttfb_ms:.0f}",
            mark(self.streaming),
            self.detail,
        ]


def _request(
    app: AppConfig, provider: ProviderConfig, env: Mapping[str, str]
) -> tuple[str, dict[str, str], bytes, bool]:
    """(path, headers, body, keyed) of a minimal streaming request, as the addon would send it."""
    model = probe_model(app.api, provider)
    headers = {"content-type": "application/json", "accept": "text/event-stream"}
    creds = credential_headers(provider)
    keyed = bool(creds)
    if provider.auth is Auth.PASSTHROUGH:
        key = next((env[name] for name in TOOL_KEYS[app.api] if env.get(name)), None)
        if key:
            keyed = True
            creds = (
                (("authorization", f"Bearer {key}"),)
                if app.api is Api.OPENAI
                else (("x-api-key" if app.api is Api.ANTHROPIC else "x-goog-api-key", key),)
            )
    headers.update(dict(creds))
    if app.api is Api.ANTHROPIC:
        headers["anthropic-version"] = "2023-06-01"  # unless the provider's headers say otherwise
    headers.update(provider.headers)
    if app.api is Api.ANTHROPIC:
        path = "/v1/messages"
        body: object = {
            "model": model,
            "max_tokens": 8,
            "stream": True,
            "messages": [{"role": "user", "content": PROMPT}],
        }
    elif app.api is Api.OPENAI:
        path = "/v1/chat/completions"
        body = {
            "model": model,
            "max_tokens": 8,
            "stream": True,
            "messages": [{"role": "user", "content": PROMPT}],
        }
    else:
        path = f"/v1beta/models/{model}:streamGenerateContent?alt=sse"
        body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    return join_path(provider.base_path, path), headers, json.dumps(body).encode(), keyed


def _translated_request(
    app: AppConfig, provider: ProviderConfig, env: Mapping[str, str]
) -> tuple[str, dict[str, str], bytes, bool, Translator] | None:
    """A streamed request with a tool, in the tool's format, translated for a provider of
    another format as the proxy would; None when the provider takes the tool's own."""
    model = probe_model(app.api, provider)
    path = {
        Api.OPENAI: "/v1/responses",
        Api.ANTHROPIC: "/v1/messages",
        Api.GEMINI: f"/v1beta/models/{model}:streamGenerateContent?alt=sse",
    }[app.api]
    translator = translator_for(tool_format(app.api, path), provider.format)
    if translator is None:
        return None
    request: dict[str, object]
    if app.api is Api.GEMINI:
        declaration = {"name": TOOL, "description": "Say a word", "parameters": _TOOL_SCHEMA}
        request = {
            "contents": [{"role": "user", "parts": [{"text": TOOL_PROMPT}]}],
            "tools": [{"functionDeclarations": [declaration]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
            "generationConfig": {"maxOutputTokens": 64},
        }
    elif app.api is Api.ANTHROPIC:
        request = {
            "model": model,
            "max_tokens": 64,
            "stream": True,
            "tools": [{"name": TOOL, "description": "Say a word", "input_schema": _TOOL_SCHEMA}],
            "tool_choice": {"type": "any"},
            "messages": [{"role": "user", "content": TOOL_PROMPT}],
        }
    else:
        request = {
            "model": model,
            "max_output_tokens": 64,
            "stream": True,
            "store": False,
            "tools": [{"type": "function", "name": TOOL, "parameters": _TOOL_SCHEMA}],
            "tool_choice": "required",
            "input": [{"role": "user", "content": TOOL_PROMPT}],
        }
    provider_path, body = translator.request(path, json.dumps(request).encode())
    headers = {"content-type": "application/json", "accept": "text/event-stream"}
    creds = credential_headers(provider)
    keyed = bool(creds)
    if provider.auth is Auth.PASSTHROUGH:
        key = next(
            (env[name] for name in TOOL_KEYS[FORMAT_API[provider.format]] if env.get(name)), None
        )
        if key:
            keyed, creds = True, (("authorization", f"Bearer {key}"),)
    headers.update(dict(creds))
    headers.update({k.decode(): v.decode() for k, v in translator.headers})
    headers.update(provider.headers)
    return join_path(provider.base_path, provider_path), headers, body, keyed, translator


def _translated_back(
    check: Check, translator: Translator, status: int, content_type: str, data: bytes
) -> tuple[str, bytes]:
    """The provider's answer as the tool would get it; whether the tool call survived."""
    streamed = status < 400 and "text/event-stream" in content_type.lower()
    try:
        if streamed:
            machine = translator.stream()
            data = machine.feed(data) + machine.close()
        else:
            data = translator.answer(status, content_type, data)
    except TranslationError as e:
        check.tools = False
        return content_type, f"cannot translate the answer: {e}".encode()
    if status < 400:
        call = {
            "anthropic": b'"type":"tool_use"',
            "gemini": b'"functionCall"',
        }.get(translator.tool.value, b'"function_call"')
        check.tools = call in data.replace(b'": "', b'":"') and TOOL.encode() in data
    return ("text/event-stream" if streamed else "application/json"), data


def check_provider(
    app: AppConfig,
    provider: ProviderConfig,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    proxies: Proxies | None = None,
) -> Check:
    check = Check(app.name, provider.id)
    env = os.environ if env is None else env
    translator: Translator | None = None
    try:
        translated = _translated_request(app, provider, env)
    except TranslationError as e:
        check.detail = f"cannot translate the test request: {e}"
        return check
    if translated is not None:
        path, headers, body, keyed, translator = translated
    else:
        path, headers, body, keyed = _request(app, provider, env)
    try:  # by the way the proxy goes: its proxy, if any
        proxy = (proxies or Proxies()).route(provider.proxy, provider.scheme, provider.host)
        if proxy is None:
            raw = socket.create_connection((provider.host, provider.port), timeout=timeout)
        else:
            raw = connect_through(proxy, provider.host, provider.port, timeout)
    except (OSError, ValueError) as e:  # ProxyFailed is an OSError
        check.reachable, check.detail = False, f"cannot connect: {e}"
        return check
    check.reachable = True
    connection = http.client.HTTPConnection(provider.host, provider.port, timeout=timeout)
    try:
        if provider.scheme == "https":
            try:
                context = ssl.create_default_context()
                connection.sock = context.wrap_socket(raw, server_hostname=provider.host)
            except (ssl.SSLError, OSError) as e:
                check.tls, check.detail = False, f"TLS: {e}"
                return check
            check.tls = True
        else:
            connection.sock = raw
        started = time.monotonic()
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        check.ttfb_ms = (time.monotonic() - started) * 1000
        data = response.read()
        content_type = response.getheader("content-type") or ""
        if translator is not None:
            content_type, data = _translated_back(
                check, translator, response.status, content_type, data
            )
        _judge(check, app.api, response.status, content_type, data, keyed)
        if translator is not None and check.streaming:
            survived = "tool calls survive" if check.tools else "FAIL: the tool call was lost"
            check.detail = f"translated to {provider.format.value}: {survived}"
        return check
    except (OSError, http.client.HTTPException) as e:
        check.detail = f"request failed: {e}"
        check.streaming = False
        return check
    finally:
        connection.close()


def _judge(
    check: Check, api: Api, status: int, content_type: str, data: bytes, keyed: bool
) -> Check:
    text = data[:300].decode("utf-8", "replace").replace("\n", " ")
    if status in (401, 403):
        check.auth = False if keyed else None
        check.detail = f"{status}: {text}" if keyed else f"{status} (passthrough: no key to test)"
        return check
    check.auth = True if keyed else None
    if status == 404 or (status in (400, 422) and "model" in text.lower()):
        check.model, check.detail = False, f"{status}: {text}"
        return check
    if status >= 400:
        check.detail = f"{status}: {text}"
        check.streaming = False
        return check
    check.model = True
    watch = BodyWatch(api, content_type)
    watch(data)
    watch(b"")
    problem = watch.result().problem() if watch.sse else "answered without streaming"
    check.streaming = problem is None
    check.detail = problem or "ok"
    return check
