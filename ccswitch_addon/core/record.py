"""What one client request did: its attempts, and how it finished."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ccswitch_addon.wire.usage import Usage

__all__ = ["Attempt", "Finished"]


@dataclass(slots=True)
class Attempt:
    provider: str
    ms: float
    failed: bool
    status: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"provider": self.provider, "ms": self.ms}
        if self.status is not None:
            entry["status"] = self.status
        if self.error is not None:
            entry["error"] = self.error
        return entry

    def short(self) -> str:
        return f"{self.provider}: {self.error or self.status}"


@dataclass(slots=True)
class Finished:
    """One client request, done: what was tried and what the client got."""

    app: str
    served: str | None  # the provider whose answer the client got as a success
    attempts: list[Attempt]
    skipped: list[str] = field(default_factory=list)  # "primary: open until 14:02"
    model_requested: str | None = None
    model_sent: str | None = None
    total_ms: float = 0.0
    ttfb_ms: float | None = None
    usage: Usage = field(default_factory=Usage)
    streaming: bool = False
    route: str | None = None  # the route that took the request; None: the app's queue
    why: str | None = None  # "affinity: conversation 4f2a… stays on relay"
    conversation: str | None = None  # with affinity on: the conversation it belongs to
    order: tuple[str, ...] = ()  # the providers in the order this request considered them
    note: str | None = None  # why no backup was tried: "no failover: deepseek disabled (…)"

    def because(self) -> str | None:
        """The route and why this provider, as the log and mitmweb show them."""
        parts = ([f"route {self.route}"] if self.route else []) + ([self.why] if self.why else [])
        return "; ".join(parts) or None

    session: str | None = None  # the conversation (the tools' session header), if sent
    cost_usd: float | None = None  # priced by the engine once finished; None: unknown

    def failures(self) -> list[str]:
        """The attempts that did not serve, as ``primary: 529``."""
        return [a.short() for a in self.attempts if a.provider != self.served]

    def before_served(self) -> list[str]:
        """What happened before the provider that served, in the order of the queue:
        ``primary: 529``, ``chat: skipped, disabled (KEY not set)``; those after it are not
        named."""
        steps = [
            (self._place(a.provider), index, a.short())
            for index, a in enumerate(a for a in self.attempts if a.provider != self.served)
        ]
        served = self._place(self.served) if self.served is not None else len(self.order)
        for note in self.skipped:
            pid, _, why = note.partition(": ")
            place = self._place(pid)
            if place < served or not self.order:  # no order known: every skip counts
                steps.append((place, -1, f"{pid}: skipped, {why}"))
        return [text for _, _, text in sorted(steps, key=lambda s: s[:2])]

    def chain(self) -> str:
        """Each attempt in order with its result: ``official 529 → openrouter 200``."""
        return " → ".join(f"{a.provider} {a.error or a.status}" for a in self.attempts)

    def _place(self, pid: str) -> int:
        return self.order.index(pid) if pid in self.order else len(self.order)

    def comment(self) -> str:
        """How mitmweb shows the flow: ``claude → backup (after primary: 529)``."""
        if self.served is None:
            failed = self.failures()
            text = f"{self.app}: every attempt failed ({'; '.join(failed) or 'none made'})"
            return text + (f"; {self.note}" if self.note else "")
        why = self.before_served()
        because = self.because()
        text = (
            f"{self.app} → {self.served}"
            + (f" [{because}]" if because else "")
            + (f" (after {', '.join(why)})" if why else "")
        )
        return text + (f"; {self.note}" if self.note else "")
