"""Failover switches: notice when another provider takes over an app, and announce it once."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["SwitchEvent", "SwitchManager"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SwitchEvent:
    time: float
    app: str
    from_: str | None
    to: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "app": self.app,
            "from": self.from_,
            "to": self.to,
            "reason": self.reason,
        }

    def describe(self) -> str:
        return f"{self.app}: {self.from_ or '-'} → {self.to} ({self.reason})"


Listener = Callable[[SwitchEvent], None]


class SwitchManager:
    """Tracks the provider that last served each app and turns changes into events.

    Many requests failing over together make one event: the first one moves the active
    provider, the rest find it already there. Flapping is held back by ``min_interval``:
    a change within it is announced later, by the next request after it, and only if the
    app did not flap back to the provider last announced in the meantime.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        min_interval: float = 5.0,
        keep: int = 50,
    ) -> None:
        self._clock = clock
        self.min_interval = min_interval
        self._active: dict[str, str] = {}
        self._announced: dict[str, str | None] = {}
        self._reason: dict[str, str] = {}
        self._last_event: dict[str, float] = {}
        self._listeners: list[Listener] = []
        self.events: deque[SwitchEvent] = deque(maxlen=keep)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def active(self, app: str) -> str | None:
        return self._active.get(app)

    def restore(self, active: dict[str, str], events: Iterable[SwitchEvent]) -> None:
        """Bring back what a previous run knew: the active providers and recent events."""
        self._active.update(active)
        self._announced.update(active)
        self.events.extend(events)

    def served(
        self, app: str, pid: str, reason: str | Callable[[], str], baseline: str | None
    ) -> SwitchEvent | None:
        """A request of ``app`` was served by ``pid``. ``baseline`` stands for the active
        provider before anything served (normally the app's current provider). ``reason``
        may be a function, called only when the served provider is a change."""
        self._active[app] = pid
        announced = self._announced.setdefault(app, baseline)
        if pid == announced:
            self._reason.pop(app, None)
            return None
        if app not in self._reason:
            self._reason[app] = reason if isinstance(reason, str) else reason()
        now = self._clock()
        if now - self._last_event.get(app, float("-inf")) < self.min_interval:
            return None
        event = SwitchEvent(now, app, announced, pid, self._reason.pop(app))
        self._announced[app] = pid
        self._last_event[app] = now
        self._emit(event)
        return event

    def manual(self, app: str, from_: str | None, to: str, by: str) -> SwitchEvent:
        """Someone chose ``to`` as the app's current provider (``from_`` was).

        Recorded at once, and outside the flapping hold-back: a failover right after it (the
        chosen provider failing) is a new cause and must be an event of its own.
        """
        event = SwitchEvent(self._clock(), app, from_, to, f"manual switch by {by}")
        self._announced[app] = to
        self._reason.pop(app, None)
        self._emit(event)
        return event

    def announce(self, event: SwitchEvent) -> None:
        """An event decided elsewhere (a budget spent): traffic moves to ``event.to``, which
        therefore makes no second event when it serves."""
        self._announced[event.app] = event.to
        self._reason.pop(event.app, None)
        self._last_event[event.app] = event.time
        self._emit(event)

    def _emit(self, event: SwitchEvent) -> None:
        self.events.append(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not break routing
                logger.exception("switch listener %r failed", listener)

    def adopt(self, app: str, pid: str, event: SwitchEvent | None = None) -> None:
        """The active provider as the fleet's shared store has it (state/shared.py); an
        event that store made is announced here like one of this manager's own."""
        self._active[app] = self._announced[app] = pid
        self._reason.pop(app, None)
        if event is None:
            return
        self._last_event[app] = event.time
        self.events.append(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not break routing
                logger.exception("switch listener %r failed", listener)

    def rebase(self, app: str, pid: str) -> None:
        """A reload made ``pid`` the provider the app's queue starts at: what serves next is
        compared with it, so the configuration's own change is no failover event."""
        self._announced[app] = pid
        self._reason.pop(app, None)

    def forget(self, apps: Iterable[str]) -> None:
        """Drop apps that a reload removed."""
        for app in list(apps):
            for table in (self._active, self._announced, self._reason, self._last_event):
                table.pop(app, None)
