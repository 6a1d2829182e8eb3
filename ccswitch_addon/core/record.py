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
    skipped: list[str] = field(default_factory=list)  # "primary: open"
    model_requested: str | None = None
    model_sent: str | None = None
    total_ms: float = 0.0
    ttfb_ms: float | None = None
    usage: Usage = field(default_factory=Usage)
    streaming: bool = False
    session: str | None = None  # the conversation (the tools' session header), if sent

    def failures(self) -> list[str]:
        """The attempts that did not serve, as ``primary: 529``."""
        return [a.short() for a in self.attempts if a.provider != self.served]

    def comment(self) -> str:
        """How mitmweb shows the flow: ``claude → backup (after primary: 529)``."""
        failed = self.failures()
        if self.served is None:
            return f"{self.app}: every attempt failed ({'; '.join(failed) or 'none made'})"
        why = failed + self.skipped
        return f"{self.app} → {self.served}" + (f" (after {', '.join(why)})" if why else "")
