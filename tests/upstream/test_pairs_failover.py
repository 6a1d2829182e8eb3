"""The pairs through the Chat form on the provider side: failover between formats within one
request, errors in the tool's shape with the provider's status, a stream that breaks."""

from __future__ import annotations

import json

from e2e.fakes import parse_sse

from .conftest import MakeHarness
from .providers import status, stream, whole

CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    breaker: {failure_threshold: 3, first_byte_seconds: 2, stream_idle_seconds: 2}
    providers:
      primary: {base_url: "<primary>", api_key: "${K}", format: gemini}
      backup: {base_url: "<backup>", api_key: "${K}", format: openai_responses}
  gemini:
    queue: [primary, backup]
    breaker: {failure_threshold: 3, first_byte_seconds: 2, stream_idle_seconds: 2}
    providers:
      primary: {base_url: "<primary>", api_key: "${K}", format: anthropic}
      backup: {base_url: "<backup>", api_key: "${K}", format: openai_chat}
"""
CLAUDE = {
    "model": "m",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}
GEMINI_PATH = "/v1beta/models/gemini-3.5-pro:streamGenerateContent?alt=sse"
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


async def test_claude_fails_over_from_a_gemini_provider_to_a_responses_one(
    harness: MakeHarness,
) -> None:
    h = await harness(
        CONFIG, primary=status(503, "gemini"), backup=stream(whole("openai_responses", 3))
    )
    answer = await h.send("claude", body=CLAUDE)
    assert answer.status == 200
    assert answer.headers["x-ccswitch-provider"] == "backup"
    names = [e.event for e in parse_sse(answer.body)]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    text = "".join(
        json.loads(e.data)["delta"].get("text", "")
        for e in parse_sse(answer.body)
        if e.event == "content_block_delta"
    )
    assert text == "chunk0 chunk1 chunk2 "
    primary, backup = h.providers["primary"].seen, h.providers["backup"].seen
    assert primary[0].path == "/v1beta/models/m:streamGenerateContent?alt=sse"
    assert backup[0].path == "/v1/responses"
    assert h.breaker("primary").consecutive_failures == 1
    [finished] = h.finished
    assert (finished.usage.input_tokens, finished.usage.output_tokens) == (5, 7)


async def test_every_provider_failing_gives_the_last_error_in_the_tools_shape(
    harness: MakeHarness,
) -> None:
    h = await harness(CONFIG, primary=status(529, "anthropic"), backup=status(429, "openai_chat"))
    answer = await h.send("gemini", path=GEMINI_PATH, body=GEMINI)
    assert answer.status == 429
    error = json.loads(answer.body)["error"]
    assert error["code"] == 429
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["message"]


async def test_a_provider_stream_cut_before_any_output_fails_over_unseen(
    harness: MakeHarness,
) -> None:
    cut = whole("anthropic", 3)[:1]  # message_start only, then the connection drops
    h = await harness(
        CONFIG, primary=stream(cut, then="drop"), backup=stream(whole("openai_chat", 2))
    )
    answer = await h.send("gemini", path=GEMINI_PATH, body=GEMINI)
    assert answer.status == 200
    assert answer.headers["x-ccswitch-provider"] == "backup"
    chunks = [json.loads(e.data) for e in parse_sse(answer.body)]
    text = "".join(
        p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"]
    )
    assert text == "chunk0 chunk1 "
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert h.breaker("primary", "gemini").consecutive_failures == 1
