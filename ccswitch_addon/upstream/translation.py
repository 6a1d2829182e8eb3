"""One attempt's provider leg in the provider's own format: the translation wired in.

``Leg.of`` picks the translator for (the tool's format, from the app's API and the request
path; the provider's ``format``) and builds the request the provider gets: the model mapped
first (a Chat provider's token-limit field depends on the model), then translated, sent to the
provider format's endpoint joined to ``base_url``. A count_tokens for a Chat provider is
answered locally, and a request the translator cannot express gets the tool's own 400.

Everything the provider sends back goes through the same leg: error bodies and JSON answers
reshaped, streams run through the stream translator (``TranslatedBody``), so usage parsing,
stream health and the commit point see what the tool receives. Without a translator every
method hands its input back unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

from ccswitch_addon.core.bodies import inflate
from ccswitch_addon.core.config import AppConfig, ProviderConfig
from ccswitch_addon.core.rewrite import map_model, rewrite_body_model, rewrite_gemini_path
from ccswitch_addon.upstream.client import ProviderError, ProviderResponse
from ccswitch_addon.upstream.held import asks_for_stream
from ccswitch_addon.upstream.outgoing import INFLATE_LIMIT, Outgoing, build
from ccswitch_addon.wire.api import Api
from ccswitch_addon.wire.replies import api_error
from ccswitch_addon.wire.translate import (
    BadAnswer,
    ConversationMemory,
    Format,
    StreamTranslator,
    Translator,
    UnsupportedPair,
    UntranslatableRequest,
    is_signature_rejection,
    strip_thinking,
    tool_format,
    translator_for,
)
from ccswitch_addon.wire.translate.collect import collect
from ccswitch_addon.wire.translate.common import dumps

__all__ = ["Leg", "Readable", "TranslatedBody", "plain_body", "stripped_for_retry"]

# The tool's own headers that mean nothing to a provider of another format.
_TOOL_ONLY = (b"anthropic-", b"openai-beta", b"x-goog-api-client")
Headers = tuple[tuple[bytes, bytes], ...]


class Readable(Protocol):
    async def readany(self) -> bytes: ...


@dataclass(slots=True)
class Leg:
    """What one attempt sends, and how what comes back is turned into the tool's format."""

    translator: Translator | None
    out: Outgoing | None  # None when ``reply`` answers the client instead
    reply: tuple[int, bytes] | None = None  # a local answer (count_tokens) or the tool's 400
    local: bool = False  # ``reply`` is a success given without a provider
    tool: Format = Format.ANTHROPIC  # the format the tool speaks
    asked: bytes | None = None  # the tool's body, read only to see whether it asked for a stream
    path: str = ""

    @classmethod
    def of(
        cls,
        app: AppConfig,
        provider: ProviderConfig,
        method: str,
        path: str,
        headers: Headers,
        body: bytes | None,
        memory: ConversationMemory | None,
    ) -> Leg:
        tool = tool_format(app.api, path)
        try:
            translator = translator_for(
                tool, provider.format, memory=memory, replay_reasoning=provider.replay_reasoning
            )
        except UnsupportedPair as e:  # e.g. a Chat Completions request to a Gemini provider
            reply = api_error(app.api, 400, f"ccswitch: {e}")
            return cls(None, None, (reply.status, reply.body), tool=tool)
        if translator is None:
            out = build(app, provider, method, path, headers, body)
            return cls(None, out, tool=tool, asked=body, path=path)
        headers, plain = plain_body(headers, body)
        local = translator.local(path, plain)
        if local is not None:
            return cls(translator, None, local, local=local[0] < 400, tool=tool)
        # The mapping first: the translator picks max_tokens or max_completion_tokens by model.
        tool_path = path
        if tool is Format.GEMINI:  # Gemini names the model in the path
            tool_path, requested, sent = rewrite_gemini_path(path, provider.models)
            mapped: bytes | None = None
        else:
            mapped, requested = rewrite_body_model(plain, provider.models)
            sent = map_model(provider.models, requested) or requested
        try:
            provider_path, provider_body = translator.request(tool_path, mapped or plain)
        except UntranslatableRequest as e:
            return cls(translator, None, translator.reject(e), tool=tool)
        kept = tuple((n, v) for n, v in headers if not n.lower().startswith(_TOOL_ONLY))
        kept += translator.headers
        unmapped = dataclasses.replace(provider, models={})
        out = build(app, unmapped, method, provider_path, kept, provider_body)
        out = dataclasses.replace(out, model_requested=requested, model_sent=sent)
        return cls(translator, out, tool=tool, asked=plain, path=path)

    # --- what comes back ---------------------------------------------------------------------

    def streams(self, content_type: str) -> bool:
        """Whether the answer goes to the tool as a stream: a stream it asked for. A relay's
        stream to a request that asked for none is read whole and sent as one JSON answer."""
        if "text/event-stream" not in content_type.lower():
            return False
        return _asked_for_stream(self.tool, self.path, self.asked)

    def asked_for_events(self) -> bool:
        """Whether the tool asked for an event stream (Gemini's stream without ``alt=sse`` is
        a JSON array, no event stream)."""
        if self.tool is Format.GEMINI and "alt=sse" not in self.path:
            return False
        if self.tool is not Format.GEMINI and not (self.asked or b"").lstrip().startswith(b"{"):
            return False  # compressed (sent untranslated): cannot tell, so no failure of it
        return _asked_for_stream(self.tool, self.path, self.asked)

    def error_body(self, status: int, body: bytes) -> bytes:
        """A provider's error body as the tool's (status kept)."""
        if self.translator is None:
            return body
        return self.translator.answer(status, "application/json", body)

    def answer(self, status: int, content_type: str, body: bytes, whole: bool) -> tuple[bytes, str]:
        """(the complete answer as the tool's, why it cannot be: "" when it can)."""
        if self.translator is None and "text/event-stream" not in content_type.lower():
            return body, ""
        if not whole:
            return body, "the answer is too large to translate"
        try:
            if self.translator is None:  # a stream the tool did not ask for, in its own format
                return dumps(collect(self.tool, body)).encode(), ""
            return self.translator.answer(status, content_type, body), ""
        except BadAnswer as e:
            return body, str(e)

    def content_type(self, provider_type: str, streamed: bool) -> str:
        """The content type of what the tool gets."""
        if self.translator is None and (streamed or "text/event-stream" not in provider_type):
            return provider_type
        return "text/event-stream; charset=utf-8" if streamed else "application/json"

    def headers(self, headers: list[tuple[str, str]], streamed: bool) -> list[tuple[str, str]]:
        """The provider's response headers with the content type of the translated body."""
        provider_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        if self.translator is None and self.content_type(provider_type, streamed) == provider_type:
            return headers
        kept = [(k, v) for k, v in headers if k.lower() != "content-type"]
        return [*kept, ("content-type", self.content_type(provider_type, streamed))]

    def body(self, response: ProviderResponse) -> Readable:
        """Where the stream's bytes come from: translated, or as the provider sent them."""
        if self.translator is None:
            return response
        return TranslatedBody(response, self.translator.stream())


class TranslatedBody:
    """A streamed answer read through the stream translator: ``readany`` as the response's.

    Never returns b"" before the end (a read that translates to nothing reads on). When the
    provider's connection breaks, the translator's closing events (an ``error`` event when
    no finish_reason came) are returned first and the error is raised on the next read.
    """

    def __init__(self, content: Readable, machine: StreamTranslator) -> None:
        self._content = content
        self.machine = machine
        self._ended = False
        self._broken: ProviderError | None = None

    async def readany(self) -> bytes:
        if self._broken is not None:
            raise self._broken
        while not self._ended:
            try:
                chunk = await self._content.readany()
            except ProviderError as e:
                self._ended = True
                out = self.machine.close()
                if self.machine.failure is not None:
                    self._broken = e
                return out or await self.readany()
            if not chunk:
                self._ended = True
                return self.machine.close()
            out = self.machine.feed(chunk)
            if out:
                return out
        return b""


def _asked_for_stream(tool: Format, path: str, body: bytes | None) -> bool:
    if tool is Format.GEMINI:
        return ":streamGenerateContent" in path
    if not body or not body.lstrip().startswith(b"{"):
        return bool(body)  # compressed: the flag cannot be read, keep the stream as it came
    return asks_for_stream(body)


def plain_body(headers: Headers, body: bytes | None) -> tuple[Headers, bytes]:
    """The request body decoded from its content-encoding, and the headers without it."""
    coding = next(
        (
            v.decode("latin-1").strip().lower()
            for n, v in headers
            if n.lower() == b"content-encoding"
        ),
        "",
    )
    if coding in ("", "identity", "none"):
        return headers, body or b""
    plain = inflate(body or b"", coding, INFLATE_LIMIT)
    return tuple((n, v) for n, v in headers if n.lower() != b"content-encoding"), plain


def stripped_for_retry(
    api: Api, status: int, answer: bytes, headers: Headers, body: bytes | None
) -> tuple[Headers, bytes] | None:
    """The request without thinking, when a provider refused it over a thinking signature.

    Only an Anthropic-format request carries thinking blocks; None when there is nothing to
    strip (the retry would be refused again) or the answer is another error.
    """
    if api is not Api.ANTHROPIC or not is_signature_rejection(status, answer):
        return None
    headers, plain = plain_body(headers, body)
    stripped = strip_thinking(plain)
    return None if stripped is plain else (headers, stripped)
