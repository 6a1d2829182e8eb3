"""A circuit breaker per provider: closed → open → half_open → closed, plus a cooldown overlay."""

from __future__ import annotations

import enum
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ccswitch_addon.core.config import BreakerConfig
from ccswitch_addon.core.outcome import COOLDOWN_CAP_SECONDS, Effect, Outcome

__all__ = ["CircuitBreaker", "Permit", "Shared", "State", "Window"]

Clock = Callable[[], float]


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def _no_listener(breaker: CircuitBreaker, old: State, new: State) -> None:
    pass


@dataclass(eq=False, slots=True)
class Permit:
    """Leave to send one request. Released exactly once, whatever the outcome."""

    probe: bool
    issued_at: float
    released: bool = False
    unconfirmed: bool = False  # counted against an unproven provider's admission limit


@dataclass(frozen=True, slots=True)
class Shared:
    """A breaker as the fleet's shared store has it (see state/shared.py), on this clock."""

    state: State
    open_until: float
    cooldown_until: float
    cooldown_reason: str | None
    consecutive: int
    trips: int
    proven: bool
    probe_until: float | None  # another instance's half-open probe lease runs until then


class Window:
    """Outcomes of the last ``seconds``, in one-second buckets: bounded memory, O(1) updates."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._buckets: deque[list[int]] = deque()  # [second, requests, failures, slow]
        self._requests = 0
        self._failures = 0
        self._slow = 0

    def add(self, now: float, failed: bool, slow: bool = False) -> None:
        self._expire(now)
        second = int(now)
        if (
            self._buckets and self._buckets[-1][0] >= second
        ):  # same second, or the clock stepped back
            bucket = self._buckets[-1]
        else:
            bucket = [second, 0, 0, 0]
            self._buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += failed
        bucket[3] += slow
        self._requests += 1
        self._failures += failed
        self._slow += slow

    def counts(self, now: float) -> tuple[int, int]:
        """(requests, failures) within the window."""
        self._expire(now)
        return self._requests, self._failures

    def slow_calls(self, now: float) -> int:
        self._expire(now)
        return self._slow

    def clear(self) -> None:
        self._buckets.clear()
        self._requests = self._failures = self._slow = 0

    def _expire(self, now: float) -> None:
        cutoff = now - self.seconds
        while self._buckets and self._buckets[0][0] + 1 <= cutoff:
            _, requests, failures, slow = self._buckets.popleft()
            self._requests -= requests
            self._failures -= failures
            self._slow -= slow


class CircuitBreaker:
    # A probe whose owner never reports back must not block the provider forever.
    PROBE_LEASE_SECONDS = 900.0

    def __init__(
        self,
        config: BreakerConfig,
        clock: Clock = time.time,
        listener: Callable[[CircuitBreaker, State, State], None] = _no_listener,
        name: str = "",
        random: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.name = name
        self._clock = clock
        self._listener = listener
        self._state = State.CLOSED
        self._open_until = 0.0
        self._cooldown_until = 0.0
        self._consecutive = 0
        self._probe_successes = 0
        self._probe: Permit | None = None
        self._window = Window(config.window_seconds)
        self._random = random
        self._trips = 0  # consecutive trips without a long enough closed spell in between
        self._closed_since = clock()
        self.cooldown_reason: str | None = None
        # The failure that opened it last, and when: the dashboard says why it is open.
        self.opened_by: str | None = None
        self.opened_at: float | None = None
        # Admission of an unproven provider (fresh, or failing since its last success): at
        # most failure_threshold − consecutive failures requests out with no answer yet, so
        # a burst cannot all land on a provider that is down before the first answer says so.
        self._proven = False
        self._unconfirmed = 0
        # With a shared store (a team gateway) the store makes the transitions and this
        # breaker follows them through adopt(); outcomes still feed its window.
        self.follower = False
        self._remote_probe = False

    # --- reading ----------------------------------------------------------------

    @property
    def state(self) -> State:
        if self._state is State.OPEN and self._clock() >= self._open_until:
            self._transition(State.HALF_OPEN)
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive

    @property
    def proven(self) -> bool:
        """It has answered with a success since it started or last failed."""
        return self._proven

    @property
    def trips(self) -> int:
        return self._trips

    @property
    def cooldown_until(self) -> float | None:
        return self._cooldown_until if self._clock() < self._cooldown_until else None

    def window_counts(self) -> tuple[int, int]:
        return self._window.counts(self._clock())

    def label(self) -> str:
        """closed | open | half_open | cooldown, as the status reports it."""
        return "cooldown" if self.cooldown_until is not None else self.state.value

    def reopens_at(self) -> float | None:
        """When a request may be sent again; None when one may be sent now or probing."""
        state = self.state
        until = self._open_until if state is State.OPEN else 0.0
        cooldown = self.cooldown_until
        if cooldown is not None:
            until = max(until, cooldown)
        return until or None

    def available(self) -> bool:
        """Whether acquire() would hand out a permit now."""
        if self.cooldown_until is not None:
            return False
        state = self.state
        if state is State.CLOSED:
            return True
        return state is State.HALF_OPEN and not self._probe_in_flight()

    # --- permits and outcomes ------------------------------------------------------

    def held(self) -> bool:
        """Closed but unproven, with as many requests out as it may have unanswered: a
        request should wait for one of their answers rather than go now or elsewhere."""
        return (
            self._state is State.CLOSED
            and not self._proven
            and self._unconfirmed >= self.admission_limit()
            and self.cooldown_until is None
        )

    def admission_limit(self) -> int:
        return max(1, self.config.failure_threshold - self._consecutive)

    @property
    def unconfirmed(self) -> int:
        """Requests out to this provider while unproven that have no answer yet."""
        return self._unconfirmed

    def acquire(self, hold: bool = True) -> Permit | None:
        """A permit, or None. ``hold=False`` admits past the limit of an unproven provider
        (a request that waited long enough)."""
        if not self.available():
            return None
        now = self._clock()
        if self._state is State.HALF_OPEN:
            self._probe, self._remote_probe = Permit(probe=True, issued_at=now), False
            return self._probe
        if self._proven:
            return Permit(probe=False, issued_at=now)
        if hold and self._unconfirmed >= self.admission_limit():
            return None
        self._unconfirmed += 1
        return Permit(probe=False, issued_at=now, unconfirmed=True)

    def confirm(self, permit: Permit) -> None:
        """A success's response headers came: the provider answers. Its outcome (a stream
        may still break) comes later through release()."""
        self._settle(permit)
        if self._state is State.CLOSED and not permit.released:
            self._proven = True

    def _settle(self, permit: Permit) -> None:
        if permit.unconfirmed:
            permit.unconfirmed = False
            self._unconfirmed -= 1

    def bypass(self) -> Permit:
        """A permit that skips the checks (failover off); its outcome still feeds the statistics."""
        return Permit(probe=False, issued_at=self._clock())

    def release(self, permit: Permit, outcome: Outcome, slow: bool = False) -> None:
        if permit.released:
            return
        self._settle(permit)
        permit.released = True
        now = self._clock()
        if permit is self._probe:
            self._probe = None
        if outcome.cooldown_until is not None:
            if outcome.cooldown_reason == "Retry-After":
                capped = min(outcome.cooldown_until, now + COOLDOWN_CAP_SECONDS)
            else:  # quota resets and rules were capped by max_cooldown_seconds already
                capped = min(outcome.cooldown_until, now + self.config.max_cooldown_seconds)
            if capped > self._cooldown_until:
                self._cooldown_until = capped
                self.cooldown_reason = outcome.cooldown_reason or "cooldown"
        if outcome.effect is Effect.NEUTRAL:
            return
        failed = outcome.effect is Effect.FAILURE
        slow = slow and self.config.slow_ms > 0
        self._window.add(now, failed, slow)
        if self.follower:
            # The store decides; its answer replaces these counts. Counted all the same, so
            # that an instance whose store stopped answering (a stall) goes on from here.
            if self._state is State.CLOSED:
                self._consecutive = self._consecutive + 1 if failed else 0
                self._proven = not failed
            return
        state = self.state
        if permit.probe and state is State.HALF_OPEN:
            if failed:
                self._trip(now, f"half-open probe: {outcome.reason}")
                return
            self._probe_successes += 1
            if self._probe_successes >= self.config.success_threshold:
                self._transition(State.CLOSED)
        elif state is State.CLOSED:
            # Outcomes of requests sent before a trip do not move an open or half-open breaker.
            if not failed:
                self._consecutive = 0
                self._proven = True
                if slow and self._slow_exceeded(now):
                    self._trip(now, "slow calls")
                return
            self._consecutive += 1
            self._proven = False
            if (
                outcome.opens_now
                or self._consecutive >= self.config.failure_threshold
                or self._ratio_exceeded(now)
            ):
                self._trip(now, outcome.reason)

    def go_alone(self) -> None:
        """Stop following the shared store (it is out of reach): decide from here on, and
        at once on failures counted while its answer was awaited."""
        self.follower = False
        if self.state is State.CLOSED and self._consecutive >= self.config.failure_threshold:
            self._trip(self._clock(), f"{self._consecutive} failures in a row")

    def cool(self, until: float, reason: str) -> bool:
        """Skip this provider until ``until`` (a subscription window rejected); True when
        that is later than the cooldown it had."""
        if until <= self._cooldown_until:
            return False
        self._cooldown_until = until
        self.cooldown_reason = reason
        return True

    def reset(self) -> None:
        """Manual reset: closed, counters and cooldown cleared."""
        self._cooldown_until = 0.0
        self.cooldown_reason = None
        self._trips = 0
        self._transition(State.CLOSED)

    def probe_succeeded(self) -> None:
        """An active health probe got through: let a real request confirm (half_open)."""
        if self.state is State.OPEN:
            self._open_until = self._clock()
            self._transition(State.HALF_OPEN)

    def reconfigure(self, config: BreakerConfig) -> None:
        """New thresholds from a reload; state, deadlines and recent outcomes are kept."""
        self.config = config
        self._window.seconds = config.window_seconds

    def restore(self, state: State, open_until: float, cooldown_until: float) -> None:
        """Bring back a persisted snapshot; a deadline already past comes back closed."""
        now = self._clock()
        self._cooldown_until = cooldown_until if cooldown_until > now else 0.0
        if state is not State.CLOSED and open_until > now:
            self._open_until = open_until
            self._transition(State.OPEN)

    def adopt(self, shared: Shared) -> None:
        """Take the shared store's view; the listener hears a changed state as usual."""
        old = self._state
        self._state = shared.state
        self._open_until = shared.open_until if shared.state is not State.CLOSED else 0.0
        self._cooldown_until = shared.cooldown_until
        self.cooldown_reason = shared.cooldown_reason if shared.cooldown_until else None
        self._consecutive = shared.consecutive
        self._trips = shared.trips
        self._proven = shared.proven
        if shared.state is not State.HALF_OPEN:
            self._probe_successes = 0
        own = self._probe is not None and not self._remote_probe
        if shared.probe_until is not None and not own:
            # Seen as this breaker's own probe, it expires with the other instance's lease.
            self._probe = Permit(
                probe=True, issued_at=shared.probe_until - self.PROBE_LEASE_SECONDS
            )
            self._remote_probe = True
        elif self._remote_probe or shared.state is not State.HALF_OPEN:
            self._probe, self._remote_probe = None, False
        if old is State.HALF_OPEN and shared.state is State.CLOSED:
            self._window.clear()
            self._closed_since = self._clock()
        if old is not shared.state:
            self._listener(self, old, shared.state)

    def snapshot(self) -> tuple[State, float, float]:
        return self.state, self._open_until, self._cooldown_until

    # --- transitions ------------------------------------------------------------------

    def _ratio_exceeded(self, now: float) -> bool:
        requests, failures = self._window.counts(now)
        return (
            failures > 0
            and requests >= self.config.min_requests
            and failures / requests >= self.config.error_rate_threshold
        )

    def _slow_exceeded(self, now: float) -> bool:
        requests, _ = self._window.counts(now)
        slow = self._window.slow_calls(now)
        return (
            slow > 0
            and requests >= self.config.min_requests
            and slow / requests >= self.config.slow_rate_threshold
        )

    def open_duration(self, trips: int) -> float:
        """open_seconds × 2^(trips−1), ±10 % jitter from the second trip on, capped."""
        base = self.config.open_seconds
        if trips <= 1:
            return base
        grown = base * 2.0 ** (trips - 1) * (0.9 + 0.2 * self._random())
        return min(grown, max(self.config.max_open_seconds, base))

    def _probe_in_flight(self) -> bool:
        if self._probe is None:
            return False
        if self._clock() - self._probe.issued_at > self.PROBE_LEASE_SECONDS:
            self._probe = None  # leaked by its owner; let another request probe
            self._remote_probe = False
            return False
        return True

    def _trip(self, now: float, why: str) -> None:
        self.opened_by, self.opened_at = why, now
        if self._state is State.CLOSED and now - self._closed_since >= 4 * self.config.open_seconds:
            self._trips = 0  # it stayed healthy long enough: start over
        self._trips += 1
        self._open_until = now + self.open_duration(self._trips)
        self._transition(State.OPEN)

    def _transition(self, new: State) -> None:
        old = self._state
        self._state = new
        self._probe, self._remote_probe = None, False
        self._probe_successes = 0
        self._consecutive = 0
        # Closed by its probes' successes it has proven itself; by a reset or a restart not.
        self._proven = new is State.CLOSED and old is State.HALF_OPEN
        if new is State.CLOSED:
            self._window.clear()  # recovery confirmed: old failures must not trip it again
            self._open_until = 0.0
            self._closed_since = self._clock()
        if old is not new:
            self._listener(self, old, new)
