"""Subscription windows: the ``anthropic-ratelimit-unified-*`` headers of a Claude plan.

A subscription answers every request with its status (``allowed``, ``allowed_warning``,
``rejected``), when the binding limit resets, and per window (5h, 7d) how full it is (0–1)
and when it resets. ``rejected`` cools the provider until the reset (the engine does that
through the breaker); ``switch_at_utilization`` moves new conversations away before it
comes to that, with hysteresis so that a provider hovering at the threshold does not flap.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HYSTERESIS", "PREFIX", "Observed", "Windows", "session_of"]

PREFIX = "anthropic-ratelimit-unified-"
STATUS = PREFIX + "status"
WINDOWS = ("5h", "7d")
# A provider moved away at the threshold takes new conversations again only once its
# fullest window is this far below it (or that window has reset).
HYSTERESIS = 0.05
SESSIONS = 4096  # conversations remembered (least recently seen out)
SESSION_HEADERS = ("x-claude-code-session-id", "session_id", "x-codex-window-id")
_SESSION_NAMES = frozenset(name.encode() for name in SESSION_HEADERS)


def session_of(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The conversation a request belongs to, from the tools' session headers."""
    for name, value in headers:
        if value and name.lower() in _SESSION_NAMES:
            return value.decode("latin-1")
    return None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number else None  # NaN is no figure


@dataclass(slots=True)
class _Provider:
    status: str | None = None
    reset: float | None = None
    windows: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    seen: float = 0.0
    moved: bool = False  # past switch_at_utilization: new conversations go elsewhere

    def fullest(self, now: float) -> tuple[float, float | None]:
        """(utilization, reset) of the fullest window that has not reset yet."""
        best: tuple[float, float | None] = (0.0, None)
        for utilization, reset in self.windows.values():
            if utilization is None or (reset is not None and reset <= now):
                continue
            if utilization >= best[0]:
                best = (utilization, reset)
        return best


@dataclass(frozen=True, slots=True)
class Observed:
    """What one response's headers said: ``rejected`` and until when, for the cooldown."""

    status: str
    reset: float | None


class Windows:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._providers: dict[tuple[str, str], _Provider] = {}
        self._sessions: OrderedDict[tuple[str, str], str] = OrderedDict()  # → provider

    def observe(self, app: str, pid: str, headers: Mapping[str, str]) -> Observed | None:
        """Take a response's unified headers; None when it carries none."""
        status = headers.get(STATUS)
        if status is None:
            return None
        entry = self._providers.setdefault((app, pid), _Provider())
        entry.status = status.strip().lower()
        entry.reset = _number(headers.get(PREFIX + "reset"))
        for window in WINDOWS:
            utilization = _number(headers.get(f"{PREFIX}{window}-utilization"))
            reset = _number(headers.get(f"{PREFIX}{window}-reset"))
            if utilization is not None or reset is not None:
                entry.windows[window] = (utilization, reset)
        entry.seen = self._clock()
        if entry.status == "rejected":
            fullest = entry.fullest(entry.seen)[1]
            return Observed(entry.status, entry.reset or fullest)
        return Observed(entry.status, entry.reset)

    def served(self, app: str, session: str | None, pid: str) -> None:
        """The conversation is now at this provider (it stays while the window fills)."""
        if session is None:
            return
        key = (app, session)
        self._sessions[key] = pid
        self._sessions.move_to_end(key)
        if len(self._sessions) > SESSIONS:
            self._sessions.popitem(last=False)

    def moves_away(
        self, app: str, pid: str, threshold: float | None, session: str | None
    ) -> float | None:
        """Until when a new conversation should go elsewhere (None: it may come here)."""
        if threshold is None:
            return None
        entry = self._providers.get((app, pid))
        if entry is None:
            return None
        now = self._clock()
        utilization, reset = entry.fullest(now)
        if entry.moved:
            entry.moved = utilization >= threshold - HYSTERESIS
        else:
            entry.moved = utilization >= threshold
        if not entry.moved:
            return None
        if session is not None and self._sessions.get((app, session)) == pid:
            return None  # a conversation already there stays until the plan rejects it
        return reset or now + 60.0

    def status(self, app: str, pid: str) -> dict[str, Any] | None:
        """The provider's windows for the status JSON, or None before any header."""
        entry = self._providers.get((app, pid))
        if entry is None:
            return None
        return {
            "status": entry.status,
            "reset": entry.reset,
            "moved": entry.moved,
            "seen": entry.seen,
            **{
                window: {"utilization": utilization, "reset": reset}
                for window, (utilization, reset) in entry.windows.items()
            },
        }
