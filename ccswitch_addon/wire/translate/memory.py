"""Conversation memory for ``previous_response_id``: what a Chat provider does not keep.

A Responses request may name the previous response instead of repeating the conversation;
a Chat provider has no such history, so the translator remembers each turn (its input items
and the answer's output items) and rebuilds the full list. Bounded by turns and by size,
least recently used first; ``to_json``/``from_json`` let the engine keep it in the state file.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ccswitch_addon.wire.translate.common import dumps

__all__ = ["ConversationMemory"]


@dataclass(frozen=True, slots=True)
class _Turn:
    previous: str | None
    items: tuple[Any, ...]  # Responses items: this turn's input, then the answer's output
    size: int  # characters of the items as JSON


class ConversationMemory:
    def __init__(self, max_turns: int = 512, max_chars: int = 32_000_000) -> None:
        self.max_turns = max_turns
        self.max_chars = max_chars
        self._turns: OrderedDict[str, _Turn] = OrderedDict()
        self._chars = 0
        # Told of each turn kept (id, previous id, items): the engine writes it to the state file.
        self.on_remember: Callable[[str, str | None, list[Any]], None] | None = None

    def __len__(self) -> int:
        return len(self._turns)

    def remember(self, response_id: str, previous: str | None, items: list[Any]) -> None:
        size = len(dumps(items))
        if size > self.max_chars:
            return
        old = self._turns.pop(response_id, None)
        if old is not None:
            self._chars -= old.size
        self._turns[response_id] = _Turn(previous, tuple(items), size)
        self._chars += size
        if self.on_remember is not None:
            self.on_remember(response_id, previous, items)
        while len(self._turns) > self.max_turns or self._chars > self.max_chars:
            _, dropped = self._turns.popitem(last=False)
            self._chars -= dropped.size

    def history(self, response_id: str) -> list[Any] | None:
        """Every item up to and including that response, or None when a turn is missing."""
        chain: list[_Turn] = []
        current: str | None = response_id
        seen: set[str] = set()
        while current is not None:
            turn = self._turns.get(current)
            if turn is None or current in seen:
                return None
            seen.add(current)
            self._turns.move_to_end(current)  # a live conversation stays remembered
            chain.append(turn)
            current = turn.previous
        return [item for turn in reversed(chain) for item in turn.items]

    def to_json(self) -> str:
        return dumps(
            [
                {"id": rid, "previous": turn.previous, "items": list(turn.items)}
                for rid, turn in self._turns.items()
            ]
        )

    @classmethod
    def from_json(
        cls, text: str, max_turns: int = 512, max_chars: int = 32_000_000
    ) -> ConversationMemory:
        """The memory saved by ``to_json``; raises ValueError for anything else."""
        memory = cls(max_turns, max_chars)
        entries = json.loads(text)
        if not isinstance(entries, list):
            raise ValueError("conversation memory: expected a list")
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise ValueError("conversation memory: an entry without an id")
            items = entry.get("items")
            previous = entry.get("previous")
            if not isinstance(items, list) or not (previous is None or isinstance(previous, str)):
                raise ValueError(f"conversation memory: entry {entry['id']!r} is malformed")
            memory.remember(entry["id"], previous, items)
        return memory
