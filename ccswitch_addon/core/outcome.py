"""What a provider's answer means: retry elsewhere or not, and what the breaker learns from it."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

__all__ = [
    "COOLDOWN_CAP_SECONDS",
    "Effect",
    "ErrorKind",
    "Outcome",
    "classify_error",
    "classify_status",
    "parse_retry_after",
]

COOLDOWN_CAP_SECONDS = 3600.0

# The request itself is wrong: another provider would refuse it too.
CLIENT_FAULT = frozenset({400, 405, 406, 413, 414, 415, 422, 431, 501})

# delay-seconds is plain digits; float() alone would also take "inf", "1_000" or "١٢".
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


class Effect(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"


class ErrorKind(enum.StrEnum):
    CONNECT = "connect"  # refused, DNS, TLS handshake: nothing was sent
    RESET = "reset"  # the connection broke before a response arrived
    TIMEOUT = "timeout"
    STREAM = "stream"  # a started response broke or carried an error: the client already has it
    BROKEN = "broken"  # a 2xx answer that failed before the client got any of it: retried
    CLIENT_GONE = "client_gone"


@dataclass(frozen=True)
class Outcome:
    effect: Effect
    retry: bool  # try the next provider for this request
    reason: str  # short, for comments, logs and events: "529", "connect: refused"
    opens_now: bool = False  # the provider is unreachable: open without waiting for a streak
    cooldown_until: float | None = None  # skip the provider until then (epoch seconds)
    cooldown_reason: str | None = None  # why, for the status: "Retry-After", "quota reset"


SUCCESS = Outcome(Effect.SUCCESS, retry=False, reason="ok")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as an absolute time (seconds or an HTTP date), capped; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        delay = float(value)
    else:
        try:
            delay = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if delay <= 0:  # already past
        return None
    return now + min(delay, COOLDOWN_CAP_SECONDS)


def classify_status(status: int, retry_after: str | None = None, now: float = 0.0) -> Outcome:
    if status < 400:
        return SUCCESS
    reason = str(status)
    if status in CLIENT_FAULT:
        return Outcome(Effect.NEUTRAL, retry=False, reason=reason)
    # Whatever the status (529, 500, 429, …), a provider that says when to come back is
    # believed, within the cap.
    cooldown = parse_retry_after(retry_after, now)
    return Outcome(
        Effect.FAILURE,
        retry=True,
        reason=reason,
        cooldown_until=cooldown,
        cooldown_reason="Retry-After" if cooldown is not None else None,
    )


def classify_error(kind: ErrorKind, detail: str = "") -> Outcome:
    reason = f"{kind.value}: {detail}" if detail else kind.value
    if kind is ErrorKind.CLIENT_GONE:
        return Outcome(Effect.NEUTRAL, retry=False, reason=reason)
    if kind is ErrorKind.STREAM:
        return Outcome(Effect.FAILURE, retry=False, reason=reason)
    if kind is ErrorKind.BROKEN:
        return Outcome(Effect.FAILURE, retry=True, reason=reason)
    unreachable = kind in (ErrorKind.CONNECT, ErrorKind.RESET)
    return Outcome(Effect.FAILURE, retry=True, reason=reason, opens_now=unreachable)
