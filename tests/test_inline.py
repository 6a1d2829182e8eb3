"""inline.py: a held answer as mitmproxy's response."""

from __future__ import annotations

from ccswitch_addon.inline import response_of
from ccswitch_addon.upstream.held import HeldAnswer


def test_the_response_carries_the_providers_bytes_and_its_length() -> None:
    held = HeldAnswer()
    body = b'{"text":"h\xc3\xa9llo"}'
    held.whole(529, [("content-type", "application/json"), ("x-raw", "caf\xe9")], body)
    response = response_of(held)
    assert response.status_code == 529
    assert response.raw_content == body
    assert response.headers.fields == (
        (b"content-type", b"application/json"),
        (b"x-raw", b"caf\xe9"),  # read as latin-1, sent as it came
        (b"content-length", b"%d" % len(body)),
    )


def test_no_header_value_can_end_its_line() -> None:
    held = HeldAnswer()
    held.whole(200, [("x-note", "a\r\nset-cookie: x=1"), ("x-name", "naïve ✓")], b"")
    fields = response_of(held).headers.fields
    assert fields[0] == (b"x-note", b"aset-cookie: x=1")
    assert fields[1] == (b"x-name", "naïve ✓".encode())  # beyond latin-1: UTF-8
