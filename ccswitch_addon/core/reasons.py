"""Why a provider was not tried, and why a request got no failover, in words a user can act on.

A switch reason names the providers in the order they were considered; when the client
gets a failure because no backup could be tried, the answer, the log, ``ccswitch log`` and
the dashboard say why: ``no failover: deepseek disabled (DEEPSEEK_API_KEY not set),
openrouter open until 14:02``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ccswitch_addon.core.breaker import CircuitBreaker
from ccswitch_addon.core.config import AppConfig, ProviderConfig

__all__ = ["clock_time", "no_failover", "order_of", "skip_reason"]


def clock_time(epoch: float) -> str:
    """A time within the next hours as the user's clock shows it: 14:02."""
    return time.strftime("%H:%M", time.localtime(epoch))


def order_of(app: AppConfig, current: str) -> tuple[str, ...]:
    """The providers in the order a request considers them: the current one, then the queue."""
    if current == app.queue[0]:
        return app.queue
    return (current, *(pid for pid in app.queue if pid != current))


def skip_reason(provider: ProviderConfig, breaker: CircuitBreaker | None) -> str:
    """Why a provider was left out: ``disabled (KEY not set)``, ``open until 14:02``."""
    if provider.disabled:
        return f"disabled ({provider.missing} not set)" if provider.missing else "disabled"
    if breaker is None:
        return "unavailable"
    label = breaker.label()
    until = breaker.reopens_at()
    if label == "cooldown" and until:
        return f"cooling down until {clock_time(until)}"
    if label == "open" and until:
        return f"open until {clock_time(until)}"
    if label == "half_open":
        return "half_open (its probe is in flight)"
    return label


def no_failover(app: AppConfig, tried: Sequence[str], skipped: Sequence[str]) -> str | None:
    """Why the client got a failure without a backup being tried, or None if backups were.

    ``tried``: the providers attempted, in order; ``skipped``: ``"pid: why"`` notes.
    """
    if len(set(tried)) > 1:
        return None
    if not app.failover:
        return f"no failover: failover is off for {app.name}"
    if app.max_attempts is not None and len(tried) >= app.max_attempts:
        return f"no failover: {app.name} allows {app.max_attempts} attempt(s) (max_attempts)"
    notes = [note.replace(": ", " ", 1) for note in skipped if note.partition(":")[0] not in tried]
    if notes:
        return "no failover: " + ", ".join(notes)
    others = [pid for pid in app.queue if pid not in tried]
    if not others:
        return f"no failover: {app.name} has no other provider in its queue"
    return None
