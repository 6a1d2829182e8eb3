"""The translation wired into an attempt (upstream/translation.py): the request a provider of
another format gets, local answers, streams read through the translator, signature retries."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ccswitch_addon.core.config import AppConfig, parse_config
from ccswitch_addon.engine import Engine
from ccswitch_addon.state.store import Store
from ccswitch_addon.upstream.client import Disconnected
from ccswitch_addon.upstream.outgoing import build
from ccswitch_addon.upstream.translation import Leg, TranslatedBody, stripped_for_retry
from ccswitch_addon.wire.api import Api
from ccswitch_addon.wire.translate import ConversationMemory
from ccswitch_addon.wire.translate.translator import AnthropicToChat

CONFIG = """\
apps:
  claude:
    queue: [native, chat]
    providers:
      native: {base_url: "https://api.anthropic.com", auth: passthrough}
      chat:
        base_url: "https://chat.example/v1"
        format: openai_chat
        api_key: sk-chat-literal-key-0123
        models: {"claude-sonnet-4-5": "gpt-5", "*": "small"}
  codex:
    queue: [chat]
    providers:
      chat: {base_url: "https://chat.example", format: openai_chat, api_key: sk-chat-2-0123456}
"""
HEADERS = (
    (b"content-type", b"application/json"),
    (b"x-api-key", b"tool-key"),
    (b"anthropic-version", b"2023-06-01"),
    (b"anthropic-beta", b"interleaved-thinking-2025-05-14"),
)
REQUEST = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 100,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}


def app(name: str = "claude") -> AppConfig:
    return parse_config(CONFIG, "p.yaml", env={}).apps[name]


def leg(provider: str, body: bytes, path: str = "/v1/messages?beta=true", headers=HEADERS) -> Leg:  # type: ignore[no-untyped-def]
    claude = app()
    return Leg.of(claude, claude.providers[provider], "POST", path, headers, body, None)


def test_a_provider_of_the_tools_format_gets_the_request_as_before() -> None:
    body = json.dumps(REQUEST).encode()
    chosen = leg("native", body)
    claude = app()
    assert chosen.translator is None
    assert chosen.reply is None
    assert chosen.out == build(
        claude, claude.providers["native"], "POST", "/v1/messages?beta=true", HEADERS, body
    )


def test_a_chat_provider_gets_a_translated_request_with_the_model_mapped_first() -> None:
    body = gzip.compress(json.dumps(REQUEST).encode())
    chosen = leg("chat", body, headers=(*HEADERS, (b"content-encoding", b"gzip")))
    out = chosen.out
    assert out is not None
    assert chosen.translator is not None
    assert out.url == "https://chat.example/v1/chat/completions"  # no ?beta, no doubled /v1
    sent = json.loads(out.body or b"")
    assert sent["model"] == "gpt-5"
    assert sent["max_completion_tokens"] == 100  # chosen for the mapped model's family
    assert sent["stream_options"] == {"include_usage": True}
    assert (out.model_requested, out.model_sent) == ("claude-sonnet-4-5", "gpt-5")
    names = {name.lower() for name, _ in out.headers}
    assert "content-encoding" not in names
    assert "x-api-key" not in names
    assert not any(name.startswith("anthropic-") for name in names)
    assert ("Authorization", "Bearer sk-chat-literal-key-0123") in out.headers or (
        "authorization",
        "Bearer sk-chat-literal-key-0123",
    ) in out.headers


def test_count_tokens_for_a_chat_provider_is_answered_here() -> None:
    chosen = leg("chat", json.dumps(REQUEST).encode(), path="/v1/messages/count_tokens")
    assert chosen.out is None
    assert chosen.local
    assert chosen.reply is not None
    assert chosen.reply[0] == 200
    assert json.loads(chosen.reply[1])["input_tokens"] > 0


def test_an_untranslatable_request_gets_the_tools_own_400_not_a_provider() -> None:
    chosen = leg("chat", b"[1, 2]")
    assert chosen.out is None
    assert not chosen.local
    assert chosen.reply is not None
    assert chosen.reply[0] == 400
    assert json.loads(chosen.reply[1])["error"]["type"] == "invalid_request_error"


def test_a_responses_request_without_its_history_is_refused() -> None:
    codex = app("codex")
    body = json.dumps({"model": "m", "previous_response_id": "resp_gone", "input": []}).encode()
    chosen = Leg.of(
        codex, codex.providers["chat"], "POST", "/v1/responses", (), body, ConversationMemory()
    )
    assert chosen.reply is not None
    assert chosen.reply[0] == 400
    assert b"previous_response_not_found" in chosen.reply[1]


def test_errors_and_answers_come_back_in_the_tools_format() -> None:
    chosen = leg("chat", json.dumps(REQUEST).encode())
    error = json.dumps({"error": {"message": "slow down", "type": "requests"}}).encode()
    shaped = json.loads(chosen.error_body(429, error))
    assert shaped["error"]["type"] == "rate_limit_error"
    assert "slow down" in shaped["error"]["message"]
    answer = {
        "choices": [{"message": {"content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    body, problem = chosen.answer(200, "application/json", json.dumps(answer).encode(), True)
    assert problem == ""
    assert json.loads(body)["content"][0]["text"] == "hello"
    _, problem = chosen.answer(200, "application/json", b"not json", True)
    assert "not JSON" in problem
    _, problem = chosen.answer(200, "application/json", b"{", False)
    assert "too large" in problem
    headers = chosen.headers([("Content-Type", "text/plain"), ("x-request-id", "1")], False)
    assert headers == [("x-request-id", "1"), ("content-type", "application/json")]


class Chunks:
    """A response's readany over a list: bytes, or an exception to raise."""

    def __init__(self, *chunks: bytes | Exception) -> None:
        self.chunks = list(chunks)

    async def readany(self) -> bytes:
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if isinstance(chunk, Exception):
            raise chunk
        return chunk


def chat_chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


async def read_all(body: TranslatedBody) -> list[bytes]:
    out = []
    while chunk := await body.readany():
        out.append(chunk)
    return out


async def test_a_read_that_translates_to_nothing_reads_on_instead_of_ending() -> None:
    first = chat_chunk({"content": "hi"})
    body = TranslatedBody(
        Chunks(first[:7], first[7:], chat_chunk({}, "stop"), b"data: [DONE]\n\n"),
        AnthropicToChat().stream(),
    )
    out = await read_all(body)
    assert all(out)  # never b"" before the end
    text = b"".join(out)
    assert text.startswith(b"event: message_start")
    assert text.endswith(b'message_stop"}\n\n')
    assert body.machine.failure is None


async def test_a_stream_without_finish_reason_ends_with_an_error_event() -> None:
    body = TranslatedBody(Chunks(chat_chunk({"content": "hi"})), AnthropicToChat().stream())
    text = b"".join(await read_all(body))
    assert b"event: error" in text
    assert b"finish_reason" in text
    assert body.machine.failure is not None


async def test_a_broken_connection_gives_the_error_event_then_the_error() -> None:
    broken = Disconnected("cut")
    body = TranslatedBody(Chunks(chat_chunk({"content": "hi"}), broken), AnthropicToChat().stream())
    first = await body.readany()
    assert b"content_block_delta" in first
    closing = await body.readany()
    assert b"event: error" in closing
    with pytest.raises(Disconnected):
        await body.readany()


async def test_a_connection_broken_after_the_finish_reason_ends_cleanly() -> None:
    broken = Disconnected("cut")
    chunks = Chunks(chat_chunk({"content": "hi"}), chat_chunk({}, "stop"), broken)
    body = TranslatedBody(chunks, AnthropicToChat().stream())
    text = b"".join(await read_all(body))
    assert text.endswith(b'message_stop"}\n\n')


SIGNED = {
    **REQUEST,
    "messages": [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hm", "signature": "from-another-provider"},
                {"type": "text", "text": "hello"},
            ],
        },
        {"role": "user", "content": "again"},
    ],
}
REFUSAL = json.dumps(
    {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "messages.1.content.0: Invalid `signature` in `thinking` block",
        },
    }
).encode()


def test_a_signature_refusal_gives_the_request_without_thinking() -> None:
    body = gzip.compress(json.dumps(SIGNED).encode())
    headers = (*HEADERS, (b"content-encoding", b"gzip"))
    stripped = stripped_for_retry(Api.ANTHROPIC, 400, REFUSAL, headers, body)
    assert stripped is not None
    new_headers, new_body = stripped
    assert b"content-encoding" not in {name for name, _ in new_headers}
    assert json.loads(new_body)["messages"][1]["content"] == [{"type": "text", "text": "hello"}]


@pytest.mark.parametrize(
    ("api", "status", "answer", "request_body"),
    [
        (Api.ANTHROPIC, 400, b'{"error": {"message": "max_tokens too large"}}', SIGNED),
        (Api.ANTHROPIC, 500, REFUSAL, SIGNED),
        (Api.OPENAI, 400, REFUSAL, SIGNED),
        (Api.ANTHROPIC, 400, REFUSAL, REQUEST),  # nothing to strip: no retry
    ],
    ids=["other-400", "not-400", "not-anthropic", "nothing-to-strip"],
)
def test_no_retry_without_a_signature_refusal_and_something_to_strip(
    api: Api, status: int, answer: bytes, request_body: dict[str, object]
) -> None:
    body = json.dumps(request_body).encode()
    assert stripped_for_retry(api, status, answer, HEADERS, body) is None


def test_remembered_turns_survive_a_restart_in_the_state_file(tmp_path: Path) -> None:
    config = parse_config(CONFIG, "p.yaml", env={})
    engine = Engine(config)
    engine.attach_store(Store(tmp_path / "state.db"))
    engine.memory.remember("resp_1", None, [{"role": "user", "content": "hi"}])
    engine.memory.remember("resp_2", "resp_1", [{"type": "function_call_output", "output": "x"}])
    assert engine.store is not None
    engine.store.flush()
    engine.close()

    again = Engine(config)
    again.attach_store(Store(tmp_path / "state.db"))
    assert again.memory.history("resp_2") == [
        {"role": "user", "content": "hi"},
        {"type": "function_call_output", "output": "x"},
    ]
    again.close()


@pytest.mark.parametrize("replay", [False, True])
def test_a_provider_marked_replay_reasoning_gets_its_thinking_back(replay: bool) -> None:
    config = CONFIG.replace(
        "        format: openai_chat\n",
        f"        format: openai_chat\n        replay_reasoning: {str(replay).lower()}\n",
        1,
    )
    claude = parse_config(config, "p.yaml", env={}).apps["claude"]
    assert claude.providers["chat"].replay_reasoning is replay
    history = {
        **REQUEST,
        "messages": [
            {"role": "user", "content": "list files"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "I should run ls.", "signature": "s"},
                    {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a"}],
            },
        ],
    }
    body = json.dumps(history).encode()
    chosen = Leg.of(claude, claude.providers["chat"], "POST", "/v1/messages", HEADERS, body, None)
    assert chosen.out is not None
    assistant = json.loads(chosen.out.body or b"")["messages"][1]
    assert assistant["tool_calls"][0]["function"]["name"] == "Bash"
    assert ("reasoning_content" in assistant) is replay


@pytest.mark.parametrize(
    ("body", "streams"),
    [
        (b'{"model":"m","stream":true}', True),
        (b'{"model": "m", "stream" : true}', True),
        (b'{"model":"m","stream":false}', False),
        (b'{"model":"m"}', False),
        (b'{"model":"m","messages":[{"content":"say \\"stream\\": true"}]}', False),
        (gzip.compress(b'{"stream":true}'), True),  # unreadable: the stream goes on as it came
    ],
)
def test_a_stream_goes_to_the_tool_only_when_it_asked_for_one(body: bytes, streams: bool) -> None:
    native = leg("native", body)
    assert native.streams("text/event-stream; charset=utf-8") is streams
    assert native.streams("application/json") is False
    if not streams:
        assert native.content_type("text/event-stream", False) == "application/json"
        headers = native.headers([("content-type", "text/event-stream")], streamed=False)
        assert headers == [("content-type", "application/json")]


def test_a_gemini_tool_asks_for_a_stream_in_its_path() -> None:
    text = (
        "apps:\n  gemini:\n    queue: [g]\n    providers:\n"
        "      g: {base_url: 'https://g.example', auth: passthrough}\n"
    )
    gemini = parse_config(text, "p.yaml", env={}).apps["gemini"]
    provider = gemini.providers["g"]
    for path, streams in (
        ("/v1beta/models/m:streamGenerateContent?alt=sse", True),
        ("/v1beta/models/m:generateContent", False),
    ):
        made = Leg.of(gemini, provider, "POST", path, (), b'{"contents":[]}', None)
        assert made.streams("text/event-stream") is streams
