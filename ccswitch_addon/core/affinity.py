"""Conversation affinity: a conversation keeps the provider that last served it.

A conversation's prompt cache lives at one provider; each move pays a full cache write of its
context at the next one. So a conversation stays where it is while that provider can take
requests, and returns to a higher provider of its queue only after idling
``affinity_seconds`` (``failback: idle``), or as soon as that provider's breaker is closed
again (``failback: at_once``). Affinity never holds a conversation on a provider that cannot
take it: the router offers only providers that can.

The table is bounded (least recently used out) and lives in memory only: after a restart
each conversation starts over at its queue's head, as it would after idling.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ccswitch_addon.core.yamlnodes import Node

__all__ = [
    "CAPACITY",
    "Affinity",
    "Failback",
    "Placement",
    "Stay",
    "parse_affinity",
    "place",
    "short_id",
]

CAPACITY = 20_000  # conversations remembered; each entry is ~200 bytes
AFFINITY_MAX = 86_400.0


class Failback(enum.StrEnum):
    IDLE = "idle"  # back to a higher provider only after idling affinity_seconds
    AT_ONCE = "at_once"  # back as soon as that provider's breaker is closed


def parse_affinity(entries: Mapping[str, Node]) -> tuple[float, Failback]:
    seconds = (
        entries["affinity_seconds"].number(0, AFFINITY_MAX)
        if "affinity_seconds" in entries
        else 300.0
    )
    failback = (
        entries["failback"].choice(Failback, "failback") if "failback" in entries else Failback.IDLE
    )
    return seconds, failback


def short_id(conversation: str) -> str:
    """Enough of a conversation id to tell it apart in a log line."""
    return conversation[:4] + "…" if len(conversation) > 4 else conversation


@dataclass(slots=True)
class Stay:
    provider: str
    last: float  # when it last served this conversation


@dataclass(frozen=True, slots=True)
class Placement:
    """Where affinity puts a conversation: ``first`` (a provider id) goes ahead of the
    queue order, or None for the queue order; ``why`` for the log."""

    first: str | None
    why: str | None


_NONE = Placement(None, None)


def place(
    offered: Sequence[str],
    stay: Stay | None,
    conversation: str,
    seconds: float,
    failback: Failback,
    now: float,
    closed: Callable[[str], bool],
) -> Placement:
    """Where a conversation goes among the providers that can take it (in queue order)."""
    if stay is None or seconds <= 0 or now - stay.last >= seconds:
        return _NONE
    who = short_id(conversation)
    if stay.provider not in offered:
        return Placement(None, f"affinity: conversation {who} moved off {stay.provider}")
    if failback is Failback.AT_ONCE:
        for pid in offered:
            if pid == stay.provider:
                break
            if closed(pid):
                return Placement(None, f"failback: conversation {who} returns to {pid}")
    if stay.provider == offered[0]:  # where the queue sends it anyway: nothing to say
        return Placement(stay.provider, None)
    return Placement(stay.provider, f"affinity: conversation {who} stays on {stay.provider}")


class Affinity:
    """Which provider last served each live conversation, per app and route."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._stays: OrderedDict[tuple[str, str, str], Stay] = OrderedDict()

    def __len__(self) -> int:
        return len(self._stays)

    def get(self, app: str, route: str, conversation: str) -> Stay | None:
        return self._stays.get((app, route, conversation))

    def served(self, app: str, route: str, conversation: str, provider: str, now: float) -> None:
        key = (app, route, conversation)
        stay = self._stays.get(key)
        if stay is None:
            self._stays[key] = Stay(provider, now)
            if len(self._stays) > self.capacity:
                self._stays.popitem(last=False)
        else:
            stay.provider, stay.last = provider, now
            self._stays.move_to_end(key)

    def forget(self, app: str, route: str | None = None) -> int:
        """Drop an app's conversations (of one route, "" for the default queue); how many."""
        gone = [k for k in self._stays if k[0] == app and (route is None or k[1] == route)]
        for key in gone:
            del self._stays[key]
        return len(gone)

    def live(self, app: str, seconds: float, now: float) -> dict[str, int]:
        """Conversations per provider that were served within ``seconds``."""
        counts: dict[str, int] = {}
        # Newest last: once one is idle, every one before it is too.
        for (name, _, _), stay in reversed(self._stays.items()):
            if now - stay.last >= seconds:
                break
            if name == app:
                counts[stay.provider] = counts.get(stay.provider, 0) + 1
        return counts

    def keep(self, known: Callable[[str, str], bool]) -> None:
        """After a reload: drop conversations of apps or providers that are gone."""
        for key in [k for k, stay in self._stays.items() if not known(k[0], stay.provider)]:
            del self._stays[key]
