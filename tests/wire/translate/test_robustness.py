"""Whatever a provider or a tool sends, the translators fail clearly instead of raising."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ccswitch_addon.wire.translate import Format, TranslationError, translator_for
from ccswitch_addon.wire.translate.anthropic_chat_stream import ChatToAnthropicStream
from ccswitch_addon.wire.translate.responses_chat_stream import ChatToResponsesStream

from .streams import events, sse
from .test_anthropic_chat_stream import check_grammar
from .test_responses_chat_stream import check_sequence

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6))
keys = st.sampled_from(
    ["choices", "delta", "content", "tool_calls", "index", "id", "function", "name", "arguments",
     "finish_reason", "usage", "error", "reasoning_content", "message", "role", "type", "input",
     "messages", "system", "tools", "tool_choice", "text", "source", "output", "call_id"]
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)
chunks = st.dictionaries(keys, documents, max_size=4)


def plausible(chunk: dict[str, Any]) -> dict[str, Any]:
    """Most random chunks would be skipped at once; nest some where choices are read."""
    return {"choices": [{"delta": chunk, "finish_reason": chunk.get("finish_reason")}], **chunk}


stream_chunks = st.one_of(
    chunks,
    chunks.map(plausible),
    st.builds(lambda c: {"choices": c}, documents),
    st.builds(lambda d, f: {"choices": [{"delta": d, "finish_reason": f}]}, documents, scalars),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(stream_chunks, max_size=6), st.booleans())
def test_any_chunks_give_a_well_formed_anthropic_stream(sent: list[Any], done: bool) -> None:
    machine = ChatToAnthropicStream()
    output = machine.feed(sse(*sent, done=done)) + machine.close()
    found = events(output)
    check_grammar(found)
    assert found
    assert machine.finished != (machine.failure is not None)


@settings(max_examples=60, deadline=None)
@given(st.lists(stream_chunks, max_size=6), st.booleans())
def test_any_chunks_give_a_well_formed_responses_stream(sent: list[Any], done: bool) -> None:
    machine = ChatToResponsesStream()
    output = machine.feed(sse(*sent, done=done)) + machine.close()
    check_sequence(events(output))
    assert machine.finished != (machine.failure is not None)


@settings(max_examples=60, deadline=None)
@given(documents, st.sampled_from([Format.ANTHROPIC, Format.OPENAI_RESPONSES]))
def test_any_request_translates_or_raises_a_translation_error(body: Any, tool: Format) -> None:
    translator = translator_for(tool, Format.OPENAI_CHAT)
    assert translator is not None
    try:
        _, sent = translator.request("/v1/x", json.dumps(body).encode())
    except TranslationError:
        return
    assert isinstance(json.loads(sent)["messages"], list)


@settings(max_examples=60, deadline=None)
@given(documents, st.sampled_from([Format.ANTHROPIC, Format.OPENAI_RESPONSES]))
def test_any_answer_translates_or_raises_bad_answer(answer: Any, tool: Format) -> None:
    translator = translator_for(tool, Format.OPENAI_CHAT)
    assert translator is not None
    try:
        out = translator.answer(200, "application/json", json.dumps(answer).encode())
    except TranslationError:
        return
    assert isinstance(json.loads(out), dict)
