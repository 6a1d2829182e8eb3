"""Request bodies the model rewrite would parse: checked first, without recursion or bombs.

json.loads of a body nested 100,000 deep raises RecursionError, and a 400 KB gzip body can
inflate to gigabytes; both are refused here (the caller answers 400 or 413 in the API's shape)
before the rewrite parses or inflates the body.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass

import brotli  # type: ignore[import-untyped]

from ccswitch_addon.core import zstd

__all__ = ["BodyProblem", "check_json_body", "inflate"]

_CHUNK = 1024  # compressed bytes fed at a time: one chunk cannot inflate far past the limit


@dataclass(frozen=True)
class BodyProblem(Exception):
    status: int  # 400: not a JSON object; 413: inflates past the limit
    message: str

    def __str__(self) -> str:
        return self.message


def check_json_body(body: bytes) -> None:
    """BodyProblem(400) unless ``body`` is a JSON object whose members up to ``model`` parse.

    That is the part the model rewrite parses (it splices the new model in and leaves the rest
    as sent): checked here before routing, so a bad body is refused, not sent anywhere.
    """
    if not body.lstrip(b" \t\r\n").startswith(b"{"):
        raise BodyProblem(400, "ccswitch: the request body must be a JSON object")
    try:
        _members_up_to_model(body.decode("utf-8"))
    except RecursionError:
        raise BodyProblem(400, "ccswitch: the request body is nested too deeply") from None
    except ValueError as e:
        raise BodyProblem(400, f"ccswitch: the request body is not valid JSON: {e}") from None


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def _members_up_to_model(text: str) -> None:
    """Parse the top-level members in order until "model" (ValueError where one is broken)."""
    index = _SPACE.match(text, 0).end() + 1  # type: ignore[union-attr]  # past the "{"
    while True:
        index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
        if text[index : index + 1] == "}":
            return
        key, index = _DECODER.raw_decode(text, index)
        index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
        if text[index : index + 1] != ":":
            raise ValueError(f"expected ':' at {index}")
        index = _SPACE.match(text, index + 1).end()  # type: ignore[union-attr]
        _, index = _DECODER.raw_decode(text, index)
        if key == "model":
            return
        index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
        if text[index : index + 1] == "}":
            return
        if text[index : index + 1] != ",":
            raise ValueError(f"expected ',' or '}}' at {index}")
        index += 1


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """The body decoded per its content-encoding, never more than ``limit`` bytes of it.

    BodyProblem(413) past the limit, BodyProblem(400) when it does not decode.
    """
    coding = encoding.strip().lower()
    try:
        if coding in ("", "identity", "none"):
            out = body
        elif coding in ("gzip", "x-gzip", "deflate"):
            out = _inflate_zlib(body, coding, limit)
        elif coding == "br":
            out = _inflate_brotli(body, limit)
        elif coding == "zstd":
            out = zstd.decompress_bounded(body, limit)
        else:
            raise BodyProblem(400, f"ccswitch: unsupported content-encoding {encoding!r}")
    except (zlib.error, zstd.ZstdError, ValueError, OSError) as e:
        raise BodyProblem(
            400, f"ccswitch: the {coding} request body does not decode: {e}"
        ) from None
    if len(out) > limit:
        raise BodyProblem(
            413, f"ccswitch: the request body inflates past {limit} bytes (ccswitch_body_limit)"
        )
    return out


def _inflate_zlib(body: bytes, coding: str, limit: int) -> bytes:
    # deflate is zlib-wrapped per the RFC, but some clients send it raw: try both.
    modes = (zlib.MAX_WBITS | 16,) if coding != "deflate" else (zlib.MAX_WBITS, -zlib.MAX_WBITS)
    last: zlib.error | None = None
    for wbits in modes:
        decompressor = zlib.decompressobj(wbits)
        try:
            out = decompressor.decompress(body, limit + 1)
        except zlib.error as e:
            last = e
            continue
        return out
    assert last is not None
    raise last


def _inflate_brotli(body: bytes, limit: int) -> bytes:
    decompressor = brotli.Decompressor()
    parts: list[bytes] = []
    size = 0
    for start in range(0, len(body), _CHUNK):
        try:
            part = decompressor.process(body[start : start + _CHUNK])
        except brotli.error as e:
            raise ValueError(str(e)) from None
        parts.append(part)
        size += len(part)
        if size > limit:
            break
    return b"".join(parts)
