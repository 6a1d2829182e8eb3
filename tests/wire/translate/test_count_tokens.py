"""The local count_tokens estimate."""

from __future__ import annotations

from ccswitch_addon.wire.translate.count_tokens import estimate_tokens, text_tokens


def test_text_tokens() -> None:
    assert text_tokens("") == 0
    assert text_tokens("abcd" * 10) == 10
    assert text_tokens("你好") == 2


def test_every_part_of_a_request_counts() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    small = estimate_tokens(base)
    with_system = estimate_tokens({**base, "system": [{"type": "text", "text": "x" * 400}]})
    with_tools = estimate_tokens(
        {**base, "tools": [{"name": "Read", "input_schema": {"type": "object"}}]}
    )
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}
    with_image = estimate_tokens({**base, "messages": [{"role": "user", "content": [image]}]})
    assert with_system == small + 100
    assert with_tools > small
    assert with_image >= 1600
    history = [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "t", "name": "Read", "input": {"path": "/" * 40}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t", "content": "y" * 80}],
        },
        {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "z" * 40, "signature": "s"}],
        },
    ]
    assert estimate_tokens({"messages": history}) > 40
    assert estimate_tokens({}) == 1
