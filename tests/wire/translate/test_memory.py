"""The previous_response_id memory: chains, bounds, persistence."""

from __future__ import annotations

import pytest

from ccswitch_addon.wire.translate.memory import ConversationMemory


def test_a_chain_is_rebuilt_in_order() -> None:
    memory = ConversationMemory()
    memory.remember("r1", None, ["a", "b"])
    memory.remember("r2", "r1", ["c"])
    memory.remember("r3", "r2", ["d", "e"])
    assert memory.history("r3") == ["a", "b", "c", "d", "e"]
    assert memory.history("r2") == ["a", "b", "c"]
    assert memory.history("nope") is None


def test_the_oldest_unused_turn_goes_first_and_a_broken_chain_is_none() -> None:
    memory = ConversationMemory(max_turns=3)
    memory.remember("r1", None, ["a"])
    memory.remember("x1", None, ["x"])
    memory.remember("r2", "r1", ["b"])
    assert memory.history("r2") == ["a", "b"]  # touches r1 and r2: x1 is now the oldest
    memory.remember("r3", "r2", ["c"])
    assert len(memory) == 3
    assert memory.history("x1") is None
    assert memory.history("r3") == ["a", "b", "c"]
    memory.remember("y", None, ["y"])  # r1 is now the oldest
    assert memory.history("r3") is None


def test_a_size_bound() -> None:
    memory = ConversationMemory(max_chars=20)  # one turn of 14
    memory.remember("big", None, ["x" * 100])
    assert len(memory) == 0
    memory.remember("a", None, ["1234567890"])
    memory.remember("b", None, ["1234567890"])
    assert memory.history("a") is None
    assert memory.history("b") == ["1234567890"]


def test_a_cycle_is_not_followed_forever() -> None:
    memory = ConversationMemory()
    memory.remember("a", "b", ["1"])
    memory.remember("b", "a", ["2"])
    assert memory.history("a") is None


def test_to_json_and_back() -> None:
    memory = ConversationMemory()
    memory.remember("r1", None, [{"type": "message", "role": "user", "content": "héllo"}])
    memory.remember(
        "r2", "r1", [{"type": "function_call", "call_id": "c", "name": "n", "arguments": "{}"}]
    )
    copy = ConversationMemory.from_json(memory.to_json())
    assert copy.history("r2") == memory.history("r2")
    assert len(copy) == 2


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        '[{"items": []}]',
        '[{"id": "a", "items": 3}]',
        '[{"id": "a", "items": [], "previous": 1}]',
    ],
)
def test_from_json_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="conversation memory"):
        ConversationMemory.from_json(text)
