"""A hostile provider of the tool's own format (nothing translated) against a request that asked
for a stream: what it answers must fail over before the commit point, as it does for a
translated provider, and a stream cut after it ends with the API's error event."""

from __future__ import annotations

import gzip
import json

import pytest
from e2e.fakes import json_body, parse_sse

from .conftest import MakeHarness
from .providers import status, stream, whole
from .test_exchange import CONFIG, STREAMS, served_by
from .test_hostile import MakeRaw, answers, json_answer, provider, rawp

__all__ = ["rawp"]  # the raw-socket provider fixture, shared with test_hostile

STREAM_BODY = {
    "claude": {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    "codex": {"model": "m", "stream": True, "input": "hi"},
    "gemini": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
}
FORMATS = ["anthropic", "openai_responses", "gemini"]


def _answer(content_type: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n%s" % (
        content_type,
        len(body),
        extra,
        body,
    )


NOT_STREAMS = {
    "empty json": json_answer(b""),
    "empty object": json_answer(b"{}"),
    "html login": _answer(b"text/html", b"<html>login</html>"),
    "empty event stream": _answer(b"text/event-stream", b""),
    "html as event stream": _answer(b"text/event-stream", b"<html>login</html>\n" * 5000),
    "nothing but NULs as event stream": _answer(b"text/event-stream", b"\0" * (200 * 1024)),
}


async def _stream_harness(harness: MakeHarness, fmt: str, primary_url: str):  # type: ignore[no-untyped-def]
    return await harness(CONFIG.replace("<primary>", primary_url), backup=stream(whole(fmt)))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", list(NOT_STREAMS))
async def test_a_stream_request_answered_with_no_event_stream_fails_over(
    harness: MakeHarness, rawp: MakeRaw, fmt: str, kind: str
) -> None:
    app, path = STREAMS[fmt]
    primary = await provider(rawp, answers(NOT_STREAMS[kind]))
    h = await _stream_harness(harness, fmt, primary.url)
    answer = await h.send(app, path=path, body=STREAM_BODY[app])
    assert answer.status == 200
    assert served_by(answer.headers) == ("backup", "2")
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert parse_sse(answer.body)
    assert h.finished[0].attempts[0].failed
    assert h.breaker("primary", app).consecutive_failures == 1


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("code", [302, 307])
async def test_a_redirect_to_a_stream_request_is_a_failure(
    harness: MakeHarness, rawp: MakeRaw, fmt: str, code: int
) -> None:
    app, path = STREAMS[fmt]
    redirect = (
        b"HTTP/1.1 %d Found\r\nlocation: http://127.0.0.1:9/steal\r\ncontent-length: 0\r\n\r\n"
    )
    primary = await provider(rawp, answers(redirect % code))
    h = await _stream_harness(harness, fmt, primary.url)
    answer = await h.send(app, path=path, body=STREAM_BODY[app])
    assert served_by(answer.headers) == ("backup", "2")
    assert "location" not in answer.headers
    assert h.finished[0].attempts[0].failed


BOMB = gzip.compress(b"\0" * (64 * 1024 * 1024), 9)


@pytest.mark.parametrize("content_type", [b"text/event-stream", b"application/json"])
async def test_a_gzip_bomb_to_a_stream_request_fails_over(
    harness: MakeHarness, rawp: MakeRaw, content_type: bytes
) -> None:
    app, path = STREAMS["anthropic"]
    bomb = _answer(content_type, BOMB, b"content-encoding: gzip\r\n")
    primary = await provider(rawp, answers(bomb))
    h = await _stream_harness(harness, "anthropic", primary.url)
    answer = await h.send(app, path=path, body=STREAM_BODY[app])
    assert served_by(answer.headers) == ("backup", "2")
    assert b"\0" not in answer.body
    assert h.finished[0].attempts[0].failed


@pytest.mark.parametrize("fmt", FORMATS)
async def test_a_stream_request_answered_with_a_complete_json_answer_fails_over(
    harness: MakeHarness, rawp: MakeRaw, fmt: str
) -> None:
    # The tool reads events only: a valid JSON answer would end its stream with nothing.
    app, path = STREAMS[fmt]
    document = json.dumps(json_body(fmt, "m", text="hi", input_tokens=1, output_tokens=1))
    primary = await provider(rawp, answers(json_answer(document.encode())))
    h = await _stream_harness(harness, fmt, primary.url)
    answer = await h.send(app, path=path, body=STREAM_BODY[app])
    assert served_by(answer.headers) == ("backup", "2")
    assert "a stream was asked for" in (h.finished[0].attempts[0].error or "")
    # Asked for no stream, the same answer serves.
    body = {k: v for k, v in STREAM_BODY[app].items() if k != "stream"}
    whole_path = path.replace(":streamGenerateContent?alt=sse", ":generateContent")
    answer = await h.send(app, path=whole_path, body=body)
    assert served_by(answer.headers) == ("primary", "1")


async def test_a_431_is_the_requests_fault_passed_on_with_no_breaker_moved(
    harness: MakeHarness, rawp: MakeRaw
) -> None:
    refused = b'{"type":"error","error":{"type":"invalid_request_error","message":"too big"}}'
    primary = await provider(rawp, answers(json_answer(refused, status=b"431 Too Large")))
    h = await harness(CONFIG.replace("<primary>", primary.url))
    answer = await h.send(body={"model": "m"})
    assert answer.status == 431
    assert served_by(answer.headers) == ("primary", "1")
    assert json.loads(answer.body)["error"]["message"] == "too big"
    assert h.providers["backup"].seen == []
    assert h.breaker("primary").consecutive_failures == 0
    assert not h.finished[0].attempts[0].failed


async def test_count_tokens_answered_locally_after_a_529_is_recorded_as_the_backups_200(
    harness: MakeHarness,
) -> None:
    config = CONFIG.replace(
        'backup: {base_url: "<backup>", api_key: "${K}"}',
        'backup: {base_url: "<backup>", api_key: "${K}", format: openai_chat}',
        1,
    )
    h = await harness(config, primary=status(529))
    turn = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    answer = await h.send(path="/v1/messages/count_tokens", body=turn)
    assert answer.status == 200
    assert json.loads(answer.body)["input_tokens"] > 0
    assert served_by(answer.headers) == ("backup", "2")
    assert h.providers["backup"].seen == []
    done = h.finished[0]
    assert done.served == "backup"
    assert done.chain() == "primary 529 → backup 200"
    assert done.attempts[-1].status == 200
    assert not done.attempts[-1].failed


async def test_a_compressed_request_answered_with_json_is_served(
    harness: MakeHarness, rawp: MakeRaw
) -> None:
    # Whether a compressed body asked for a stream cannot be read: its JSON answer is no failure.
    document = json.dumps(json_body("anthropic", "m", text="hi", input_tokens=1, output_tokens=1))
    primary = await provider(rawp, answers(json_answer(document.encode())))
    h = await _stream_harness(harness, "anthropic", primary.url)
    job, exchange = h.exchange(body={"model": "m", "stream": False})
    assert exchange.body is not None
    exchange.body = gzip.compress(exchange.body)
    exchange.headers += ((b"content-encoding", b"gzip"),)
    async with h.open(job) as response:
        assert response.status == 200
        assert response.headers["x-ccswitch-provider"] == "primary"
        assert json.loads(await response.read())["content"][0]["text"] == "hi"
