"""held.py: which requests are answered whole in the request hook, and the held answer."""

from __future__ import annotations

import pytest

from ccswitch_addon.upstream.held import HeldAnswer, wants_stream
from ccswitch_addon.wire.api import Api


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"model":"m","stream":true}', True),
        (b'{"model": "m", "stream" : \n true, "max_tokens": 5}', True),
        (b'{"model":"m","stream":false}', False),
        (b'{"model":"m"}', False),
        (b"", False),
        # the word inside a string is escaped: never taken for the flag
        (b'{"messages":[{"content":"say \\"stream\\": true"}]}', False),
        # a value "stream" and the flag after it
        (b'{"mode":"stream","stream":true}', True),
        (b'{"mode":"stream"}', False),
        (b'{"tools":[{"input_schema":{"stream":{"type":"boolean"}}}]}', False),
    ],
)
def test_the_stream_flag_is_read_without_parsing(body: bytes, expected: bool) -> None:
    assert wants_stream(Api.ANTHROPIC, "/v1/messages", body, compressed=False) is expected
    assert wants_stream(Api.OPENAI, "/v1/chat/completions", body, compressed=False) is expected


def test_a_compressed_body_may_ask_for_a_stream() -> None:
    assert wants_stream(Api.OPENAI, "/v1/responses", b"\x28\xb5\x2f\xfd", compressed=True)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", True),
        ("/v1beta/models/gemini-2.5-pro:generateContent", False),
        ("/v1beta/models/gemini-2.5-pro:countTokens", False),
    ],
)
def test_gemini_says_it_in_the_path(path: str, expected: bool) -> None:
    assert wants_stream(Api.GEMINI, path, b'{"stream":true}', compressed=False) is expected


async def test_a_held_answer_keeps_a_whole_or_a_streamed_answer() -> None:
    whole = HeldAnswer()
    whole.whole(200, [("content-type", "application/json")], b"{}")
    assert (whole.started, whole.complete, whole.status, whole.body) == (True, True, 200, b"{}")
    with pytest.raises(RuntimeError):
        whole.whole(200, [], b"")

    pieces = HeldAnswer()
    await pieces.start(200, [("content-type", "application/json")])
    assert pieces.started
    assert not pieces.complete
    for part in (b'{"a"', b"", b":1}"):
        await pieces.write(part)
    await pieces.end()
    assert (pieces.complete, pieces.body, pieces.headers) == (
        True,
        b'{"a":1}',
        [("content-type", "application/json")],
    )
