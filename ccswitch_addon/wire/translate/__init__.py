"""Translation between wire formats: a tool's requests to a provider of another format.

No mitmproxy, no HTTP client, no core imports: pure functions, tables as data, and one
stream state machine per direction (bytes in, bytes out). Supported (tool ← provider):
``anthropic ← openai_chat``, ``openai_responses ← openai_chat`` and ``gemini ← openai_chat``
directly (``anthropic_chat``, ``responses_chat``, ``gemini_chat``), and through that Chat
form of a turn ``anthropic ← openai_responses``, ``anthropic ← gemini``,
``openai_responses ← anthropic`` and ``gemini ← anthropic`` (``pivot``: a provider side per
format, ``chat_responses``, ``chat_gemini``, ``chat_anthropic``), plus identity for every
format. A stream sent to a request that asked for none is read whole (``collect``). What the
sides share is written once: the Chat form's answers, chunks, usage and marks (``chat_form``),
and reading a Chat stream, tool calls included (``chat_stream``).

How the engine uses it, per attempt::

    tool = tool_format(app.api, path)             # what the client sent
    translator = translator_for(tool, provider.format, memory=memory)
    if translator is None:                        # same format: today's path, untouched
        ...
    local = translator.local(path, body)          # e.g. count_tokens for a Chat provider
    if local is not None:
        status, answer = local                    # answer the client, contact no provider
    try:
        provider_path, provider_body = translator.request(path, body)
    except TranslationError as e:
        status, answer = translator.reject(e)     # the tool's own 400, no provider counted
    # send provider_path (joined to base_url) with provider_body, then:
    if streamed 2xx:
        machine = translator.stream()             # fresh per response
        for chunk in upstream: client.write(machine.feed(chunk))
        client.write(machine.close())             # at the clean end of the body
        machine.failure                           # None, or why: count it in the breaker
    else:
        translator.answer(status, content_type, body)   # success or error, status kept
        # raises BadAnswer (a TranslationError) when a success cannot be made valid:
        # count it as the provider's failure

The answers and streams are in the tool's format (JSON, or ``text/event-stream``), so usage
parsing, stream health and the commit point work on what the tool receives. ``model`` in
the body should already be the provider's (apply ``models:`` before ``request``).

Also here: ``is_signature_rejection``/``strip_thinking`` (a provider's 400 over a thinking
signature after a failover: strip and retry once on the same provider), ``estimate_tokens``,
``ConversationMemory`` (``previous_response_id`` history, ``to_json``/``from_json`` for
the state file) and the SSE parser.
"""

from __future__ import annotations

from ccswitch_addon.wire.translate.common import (
    BadAnswer,
    TranslationError,
    UntranslatableRequest,
)
from ccswitch_addon.wire.translate.count_tokens import estimate_tokens
from ccswitch_addon.wire.translate.formats import (
    FORMAT_API,
    SUPPORTED_PAIRS,
    Format,
    provider_formats,
    tool_format,
)
from ccswitch_addon.wire.translate.memory import ConversationMemory
from ccswitch_addon.wire.translate.signatures import is_signature_rejection, strip_thinking
from ccswitch_addon.wire.translate.translator import (
    StreamTranslator,
    Translator,
    UnsupportedPair,
    translator_for,
)

__all__ = [
    "FORMAT_API",
    "SUPPORTED_PAIRS",
    "BadAnswer",
    "ConversationMemory",
    "Format",
    "StreamTranslator",
    "TranslationError",
    "Translator",
    "UnsupportedPair",
    "UntranslatableRequest",
    "estimate_tokens",
    "is_signature_rejection",
    "provider_formats",
    "strip_thinking",
    "tool_format",
    "translator_for",
]
