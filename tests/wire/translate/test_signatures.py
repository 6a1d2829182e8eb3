"""Thinking signatures after a failover: the rejection recognised, the history stripped."""

from __future__ import annotations

import json

import pytest

from ccswitch_addon.wire.translate.signatures import is_signature_rejection, strip_thinking


@pytest.mark.parametrize(
    "body",
    [
        '{"type":"error","error":{"type":"invalid_request_error",'
        '"message":"messages.1.content.0: Invalid `signature` in `thinking` block"}}',
        '{"error":{"message":"Invalid signature in thinking block"}}',
        '{"error":{"code":400,"message":"Thought signature is not valid.",'
        '"status":"INVALID_ARGUMENT"}}',
        '{"error":{"message":'
        '"Function call is missing a thought_signature in functionCall parts."}}',
        '{"error":{"message":"thinking block signature verification failed"}}',
    ],
)
def test_rejections_are_recognised(body: str) -> None:
    assert is_signature_rejection(400, body.encode())


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, '{"error":{"message":"max_tokens: must be greater than thinking.budget_tokens"}}'),
        (400, '{"error":{"message":"prompt is too long"}}'),
        (401, '{"error":{"message":"Invalid signature in thinking block"}}'),
    ],
)
def test_other_errors_are_not(status: int, body: str) -> None:
    assert not is_signature_rejection(status, body.encode())


def test_thinking_and_signatures_are_stripped() -> None:
    body = {
        "model": "m",
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "abc"},
                    {"type": "redacted_thinking", "data": "xyz"},
                    {"type": "text", "text": "a", "signature": "zzz"},
                ],
            },
            {"role": "user", "content": "more"},
        ],
    }
    stripped = json.loads(strip_thinking(json.dumps(body).encode()))
    assert stripped["messages"][1]["content"] == [{"type": "text", "text": "a"}]
    assert stripped["thinking"] == body["thinking"]  # the last assistant turn starts with text


def test_thinking_is_dropped_when_the_last_assistant_turn_would_start_with_a_tool_call() -> None:
    body = {
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "abc"},
                    {"type": "tool_use", "id": "t1", "name": "Read", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x"}],
            },
        ],
    }
    stripped = json.loads(strip_thinking(json.dumps(body).encode()))
    assert "thinking" not in stripped
    assert stripped["messages"][1]["content"] == [
        {"type": "tool_use", "id": "t1", "name": "Read", "input": {}}
    ]


def test_nothing_to_strip_keeps_the_bytes() -> None:
    body = b'{"messages": [{"role": "user", "content": "q"}], "x": 1.0}'
    assert strip_thinking(body) is body
    assert strip_thinking(b"not json") == b"not json"
