"""Request bodies checked before the rewrite parses or inflates them."""

from __future__ import annotations

import gzip
import zlib

import brotli  # type: ignore[import-untyped]
import pytest

from ccswitch_addon.core import zstd
from ccswitch_addon.core.bodies import BodyProblem, check_json_body, inflate

MIB = 1024 * 1024


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "m", "messages": []}',
        b'  {"max_tokens": 5, "model": "m"}',
        b"{}",
        b'{"messages": [{"a": [[1]]}]}',
        b'{"model": "m", "rest": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # after model: not parsed
    ],
)
def test_bodies_the_rewrite_can_take(body: bytes) -> None:
    check_json_body(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"", "must be a JSON object"),
        (b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b'{"a": ' + b'{"a": ' * 100_000 + b"}" * 100_001, "nested too deeply"),
        (b'{"model": nope}', "not valid JSON"),
        (b'{"messages": [1,], "model": "m"}', "not valid JSON"),
        (b'{"a" 1}', "not valid JSON"),
        (b'{"model": "m\xff"}', "not valid JSON"),
    ],
)
def test_bodies_refused_with_400(body: bytes, message: str) -> None:
    with pytest.raises(BodyProblem) as raised:
        check_json_body(body)
    assert raised.value.status == 400
    assert message in str(raised.value)


BOMB = b"a" * (64 * MIB)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some clients send
        ("br", brotli.compress),
        ("zstd", zstd.compress),
    ],
)
def test_inflate_stops_at_the_limit(encoding: str, compress: object) -> None:
    assert callable(compress)
    packed = compress(BOMB)
    with pytest.raises(BodyProblem) as raised:
        inflate(packed, encoding, MIB)
    assert raised.value.status == 413
    small = compress(b'{"model": "m"}')
    assert inflate(small, encoding, MIB) == b'{"model": "m"}'


def test_inflate_refuses_what_does_not_decode() -> None:
    for encoding in ("gzip", "br", "zstd", "compress"):
        with pytest.raises(BodyProblem) as raised:
            inflate(b"not compressed at all", encoding, MIB)
        assert raised.value.status == 400
    assert inflate(b"{}", "identity", MIB) == b"{}"
