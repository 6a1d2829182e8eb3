"""The circuit breaker: every transition, driven by a fake clock, plus property tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from conftest import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from ccswitch_addon.core.breaker import CircuitBreaker, Permit, State
from ccswitch_addon.core.config import BreakerConfig
from ccswitch_addon.core.outcome import (
    Effect,
    ErrorKind,
    Outcome,
    classify_error,
    classify_status,
)

OK = classify_status(200)
FAIL = classify_status(500)
NEUTRAL = classify_status(400)
CONNECT = classify_error(ErrorKind.CONNECT)
RESET = classify_error(ErrorKind.RESET)
TIMEOUT = classify_error(ErrorKind.TIMEOUT)

CONFIG = BreakerConfig(
    failure_threshold=3,
    success_threshold=2,
    open_seconds=30,
    error_rate_threshold=0.5,
    min_requests=10,
    window_seconds=60,
)

Transition = tuple[CircuitBreaker, State, State]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Transition] = []

    def __call__(self, breaker: CircuitBreaker, old: State, new: State) -> None:
        self.calls.append((breaker, old, new))

    def pairs(self) -> list[tuple[State, State]]:
        return [(old, new) for _, old, new in self.calls]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make(clock: FakeClock, recorder: Recorder | None = None, **changes: Any) -> CircuitBreaker:
    return CircuitBreaker(
        replace(CONFIG, **changes),
        clock,
        recorder or Recorder(),
        name="test",
        random=lambda: 0.5,  # no jitter: the growth factor is exactly 2 per repeated trip
    )


def send(breaker: CircuitBreaker, outcome: Outcome) -> Permit:
    permit = breaker.acquire()
    assert permit is not None
    breaker.release(permit, outcome)
    return permit


def trip(breaker: CircuitBreaker) -> None:
    send(breaker, CONNECT)
    assert breaker.state is State.OPEN


# --- closed → open ------------------------------------------------------------------------


def test_opens_after_failure_threshold_consecutive_failures(
    clock: FakeClock, recorder: Recorder
) -> None:
    breaker = make(clock, recorder)
    send(breaker, FAIL)
    send(breaker, FAIL)
    assert breaker.state is State.CLOSED
    assert breaker.consecutive_failures == 2
    assert recorder.calls == []
    send(breaker, FAIL)
    assert breaker.state is State.OPEN
    assert recorder.calls == [(breaker, State.CLOSED, State.OPEN)]
    assert breaker.acquire() is None
    assert breaker.available() is False
    assert breaker.reopens_at() == clock.now + 30


def test_a_success_resets_the_streak(clock: FakeClock) -> None:
    breaker = make(clock, min_requests=1000)  # the ratio stays out of it
    for _ in range(5):
        send(breaker, FAIL)
        send(breaker, FAIL)
        send(breaker, OK)
        assert breaker.consecutive_failures == 0
    assert breaker.state is State.CLOSED


def test_neutral_outcomes_neither_count_nor_reset(clock: FakeClock) -> None:
    breaker = make(clock)
    send(breaker, FAIL)
    send(breaker, FAIL)
    for _ in range(20):
        send(breaker, NEUTRAL)
        send(breaker, classify_error(ErrorKind.CLIENT_GONE))
    assert breaker.consecutive_failures == 2
    assert breaker.window_counts() == (2, 2)
    send(breaker, FAIL)
    assert breaker.state is State.OPEN


def test_opens_on_the_error_ratio_once_min_requests_are_in(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=100)
    for _ in range(4):
        send(breaker, OK)
        send(breaker, FAIL)
    send(breaker, OK)
    assert breaker.window_counts() == (9, 4)
    assert breaker.state is State.CLOSED
    send(breaker, FAIL)  # 5 of 10: the ratio reaches 0.5
    assert breaker.state is State.OPEN


def test_the_ratio_does_not_count_below_min_requests(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=100)
    for _ in range(9):
        send(breaker, FAIL)
    assert breaker.window_counts() == (9, 9)
    assert breaker.state is State.CLOSED
    send(breaker, FAIL)
    assert breaker.state is State.OPEN


def test_a_ratio_below_the_threshold_stays_closed(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=100)
    for _ in range(20):
        send(breaker, OK)
        send(breaker, OK)
        send(breaker, FAIL)
    assert breaker.window_counts() == (60, 20)
    assert breaker.state is State.CLOSED


def test_the_window_forgets_an_old_bad_period(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=100)
    for _ in range(9):
        send(breaker, FAIL)
        clock.advance(1)
    assert breaker.window_counts() == (9, 9)
    clock.advance(59)
    assert breaker.window_counts() == (1, 1)  # only the last second is still within 60 s
    clock.advance(1)
    assert breaker.window_counts() == (0, 0)
    send(breaker, FAIL)
    assert breaker.state is State.CLOSED
    assert breaker.window_counts() == (1, 1)


@pytest.mark.parametrize("outcome", [CONNECT, RESET], ids=["connect", "reset"])
def test_unreachable_opens_at_once(clock: FakeClock, outcome: Outcome) -> None:
    breaker = make(clock, failure_threshold=8)
    send(breaker, outcome)
    assert breaker.state is State.OPEN


def test_a_timeout_is_an_ordinary_failure(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=8)
    send(breaker, TIMEOUT)
    assert breaker.state is State.CLOSED
    assert breaker.consecutive_failures == 1


# --- open → half_open → closed / open -------------------------------------------------------


def test_open_turns_half_open_lazily_after_open_seconds(
    clock: FakeClock, recorder: Recorder
) -> None:
    breaker = make(clock, recorder)
    trip(breaker)
    opened = clock.now
    clock.advance(29.9)
    assert breaker.state is State.OPEN
    assert breaker.label() == "open"
    assert breaker.acquire() is None
    assert breaker.reopens_at() == opened + 30
    clock.advance(0.1)
    assert recorder.pairs() == [(State.CLOSED, State.OPEN)]  # nothing happens until asked
    assert breaker.state is State.HALF_OPEN
    assert breaker.state is State.HALF_OPEN
    assert breaker.label() == "half_open"
    assert breaker.reopens_at() is None
    assert recorder.pairs() == [(State.CLOSED, State.OPEN), (State.OPEN, State.HALF_OPEN)]


def half_open(clock: FakeClock, recorder: Recorder | None = None, **changes: Any) -> CircuitBreaker:
    breaker = make(clock, recorder, **changes)
    trip(breaker)
    clock.advance(breaker.config.open_seconds)
    assert breaker.state is State.HALF_OPEN
    return breaker


def test_half_open_admits_exactly_one_probe_at_a_time(clock: FakeClock) -> None:
    breaker = half_open(clock)
    probe = breaker.acquire()
    assert probe is not None
    assert probe.probe is True
    assert breaker.available() is False
    assert [breaker.acquire() for _ in range(20)] == [None] * 20
    assert breaker.reopens_at() is None


@pytest.mark.parametrize(
    "outcome",
    [OK, NEUTRAL, classify_error(ErrorKind.CLIENT_GONE)],
    ids=["success", "neutral-400", "client-gone"],
)
def test_every_outcome_releases_the_probe(clock: FakeClock, outcome: Outcome) -> None:
    breaker = half_open(clock, success_threshold=2)
    probe = breaker.acquire()
    assert probe is not None
    breaker.release(probe, outcome)
    assert breaker.state is State.HALF_OPEN
    again = breaker.acquire()
    assert again is not None
    assert again.probe is True
    assert breaker.acquire() is None


def test_success_threshold_probes_close_it(clock: FakeClock, recorder: Recorder) -> None:
    breaker = half_open(clock, recorder, success_threshold=3)
    send(breaker, OK)
    send(breaker, OK)
    assert breaker.state is State.HALF_OPEN
    send(breaker, OK)
    assert breaker.state is State.CLOSED
    assert recorder.pairs()[-1] == (State.HALF_OPEN, State.CLOSED)
    assert breaker.window_counts() == (0, 0)  # the failures before recovery are forgotten
    permits = [breaker.acquire() for _ in range(5)]
    assert all(p is not None and not p.probe for p in permits)


def test_a_failed_probe_reopens(clock: FakeClock, recorder: Recorder) -> None:
    breaker = half_open(clock, recorder)
    send(breaker, FAIL)
    assert breaker.state is State.OPEN
    assert recorder.pairs()[-1] == (State.HALF_OPEN, State.OPEN)
    # A repeated trip stays open at least as long, twice as long without jitter.
    assert breaker.reopens_at() == clock.now + 60
    clock.advance(59)
    assert breaker.state is State.OPEN
    clock.advance(1)
    assert breaker.state is State.HALF_OPEN


def test_outcomes_of_requests_sent_before_the_trip_do_not_move_it(clock: FakeClock) -> None:
    breaker = make(clock)
    send(breaker, OK)  # proven: no admission limit on the burst below
    early = [breaker.acquire() for _ in range(5)]
    trip(breaker)
    for permit in early:
        assert permit is not None
        breaker.release(permit, OK)
    assert breaker.state is State.OPEN
    clock.advance(30)
    assert breaker.state is State.HALF_OPEN
    late = breaker.acquire()
    assert late is not None
    assert late.probe is True


def test_an_abandoned_probe_is_given_up_after_its_lease(clock: FakeClock) -> None:
    breaker = half_open(clock)
    assert breaker.acquire() is not None
    clock.advance(CircuitBreaker.PROBE_LEASE_SECONDS)
    assert breaker.acquire() is None
    clock.advance(1)
    assert breaker.acquire() is not None


# --- admission of an unproven provider --------------------------------------------------------


def test_a_fresh_provider_takes_failure_threshold_unanswered_requests(clock: FakeClock) -> None:
    breaker = make(clock)  # failure_threshold 3
    out = [breaker.acquire() for _ in range(3)]
    assert all(p is not None for p in out)
    assert breaker.acquire() is None
    assert breaker.held()
    assert breaker.available()
    assert out[0] is not None
    breaker.confirm(out[0])  # a success's headers: it answers
    assert not breaker.held()
    assert [breaker.acquire() is not None for _ in range(10)] == [True] * 10


def test_a_burst_at_a_dead_provider_costs_at_most_failure_threshold(clock: FakeClock) -> None:
    breaker = make(clock)
    sent = []
    for _ in range(20):  # twenty requests arrive before any answer
        permit = breaker.acquire()
        if permit is not None:
            sent.append(permit)
    assert len(sent) == 3
    for permit in sent:
        breaker.release(permit, FAIL)
    assert breaker.state is State.OPEN
    assert not breaker.held()  # the waiting requests now go elsewhere


def test_each_failure_narrows_what_may_be_out(clock: FakeClock) -> None:
    breaker = make(clock)
    send(breaker, OK)
    send(breaker, FAIL)  # failing since its last success: unproven again
    assert breaker.admission_limit() == 2
    first, second = breaker.acquire(), breaker.acquire()
    assert first is not None
    assert second is not None
    assert breaker.acquire() is None
    breaker.release(first, NEUTRAL)  # an answer that says nothing frees the slot only
    assert breaker.acquire() is not None
    assert breaker.acquire(hold=False) is not None  # a request that waited long enough
    assert breaker.unconfirmed == 3


def test_a_stream_that_breaks_after_its_headers_counts_as_a_failure(clock: FakeClock) -> None:
    breaker = make(clock)
    permit = breaker.acquire()
    assert permit is not None
    breaker.confirm(permit)
    breaker.release(permit, classify_error(ErrorKind.STREAM, "stream ended before its end marker"))
    assert breaker.consecutive_failures == 1
    assert breaker.admission_limit() == 2


def test_closing_through_probes_proves_it_a_reset_does_not(clock: FakeClock) -> None:
    breaker = half_open(clock, success_threshold=1)
    send(breaker, OK)
    assert breaker.state is State.CLOSED
    assert [breaker.acquire() is not None for _ in range(5)] == [True] * 5
    breaker.reset()  # a fresh start: unproven; the five above were admitted uncounted
    assert [breaker.acquire() is not None for _ in range(4)] == [True, True, True, False]


# --- cooldown ---------------------------------------------------------------------------------


def test_retry_after_cools_the_provider_down(clock: FakeClock) -> None:
    breaker = make(clock)
    send(breaker, classify_status(429, "120", clock.now))
    until = clock.now + 120
    assert breaker.state is State.CLOSED
    assert breaker.label() == "cooldown"
    assert breaker.cooldown_reason == "Retry-After"
    assert breaker.available() is False
    assert breaker.acquire() is None
    assert breaker.cooldown_until == until
    assert breaker.reopens_at() == until
    clock.advance(119.9)
    assert breaker.label() == "cooldown"
    clock.advance(0.1)
    assert breaker.label() == "closed"
    assert breaker.cooldown_until is None
    assert breaker.acquire() is not None


def test_a_cooldown_is_capped_at_an_hour(clock: FakeClock) -> None:
    breaker = make(clock)
    far = Outcome(
        Effect.FAILURE, True, "429", cooldown_until=clock.now + 86400, cooldown_reason="Retry-After"
    )
    send(breaker, far)
    assert breaker.cooldown_until == clock.now + 3600


def test_a_shorter_cooldown_does_not_cut_a_longer_one(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=10)
    first, second = breaker.acquire(), breaker.acquire()
    assert first is not None
    assert second is not None
    breaker.release(first, classify_status(503, "300", clock.now))
    breaker.release(second, classify_status(503, "10", clock.now))
    assert breaker.cooldown_until == clock.now + 300


def test_cooldown_shows_over_open_and_sets_the_later_reopen_time(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    send(breaker, classify_status(429, "600", clock.now))
    assert breaker.state is State.OPEN
    assert breaker.label() == "cooldown"
    assert breaker.reopens_at() == clock.now + 600
    clock.advance(30)
    assert breaker.state is State.HALF_OPEN
    assert breaker.acquire() is None  # still cooling down


# --- manual control, reload, restart ------------------------------------------------------------


def test_manual_reset(clock: FakeClock, recorder: Recorder) -> None:
    breaker = make(clock, recorder, failure_threshold=1)
    send(breaker, classify_status(429, "600", clock.now))
    assert breaker.label() == "cooldown"
    breaker.reset()
    assert breaker.state is State.CLOSED
    assert breaker.label() == "closed"
    assert breaker.cooldown_until is None
    assert breaker.cooldown_reason is None
    assert breaker.consecutive_failures == 0
    assert breaker.reopens_at() is None
    assert recorder.pairs() == [(State.CLOSED, State.OPEN), (State.OPEN, State.CLOSED)]
    assert breaker.acquire() is not None


def test_reset_of_a_closed_breaker_clears_the_streak_without_a_transition(
    clock: FakeClock, recorder: Recorder
) -> None:
    breaker = make(clock, recorder)
    send(breaker, FAIL)
    send(breaker, FAIL)
    breaker.reset()
    assert breaker.consecutive_failures == 0
    assert recorder.calls == []


def test_reconfigure_keeps_state_and_applies_new_thresholds(clock: FakeClock) -> None:
    opened = make(clock)
    trip(opened)
    until = opened.reopens_at()
    opened.reconfigure(replace(CONFIG, open_seconds=5, failure_threshold=50))
    assert opened.state is State.OPEN
    assert opened.reopens_at() == until

    closed = make(clock, failure_threshold=5)
    send(closed, FAIL)
    send(closed, FAIL)
    closed.reconfigure(replace(CONFIG, failure_threshold=3))
    assert closed.consecutive_failures == 2
    assert closed.window_counts() == (2, 2)
    send(closed, FAIL)
    assert closed.state is State.OPEN


def test_restore_an_open_snapshot_that_has_not_expired(clock: FakeClock) -> None:
    first = make(clock)
    trip(first)
    state, open_until, cooldown_until = first.snapshot()
    assert state is State.OPEN
    clock.advance(10)
    recorder = Recorder()
    second = make(clock, recorder)
    second.restore(state, open_until, cooldown_until)
    assert second.state is State.OPEN
    assert second.reopens_at() == open_until
    assert recorder.pairs() == [(State.CLOSED, State.OPEN)]
    clock.advance(20)
    assert second.state is State.HALF_OPEN


def test_restore_an_expired_snapshot_comes_back_closed(clock: FakeClock) -> None:
    first = make(clock)
    trip(first)
    state, open_until, cooldown_until = first.snapshot()
    clock.advance(31)
    recorder = Recorder()
    second = make(clock, recorder)
    second.restore(state, open_until, cooldown_until)
    assert second.state is State.CLOSED
    assert second.acquire() is not None
    assert recorder.calls == []


def test_restore_brings_back_a_cooldown_only_if_it_is_still_running(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.restore(State.CLOSED, 0.0, clock.now + 50)
    assert breaker.label() == "cooldown"
    assert breaker.cooldown_until == clock.now + 50
    stale = make(clock)
    stale.restore(State.CLOSED, 0.0, clock.now - 1)
    assert stale.cooldown_until is None
    assert stale.label() == "closed"


def test_listener_once_per_transition_with_the_breaker(clock: FakeClock) -> None:
    recorder = Recorder()
    breaker = make(clock, recorder, success_threshold=1)
    trip(breaker)
    for _ in range(3):
        assert breaker.acquire() is None
    clock.advance(30)
    for _ in range(3):
        assert breaker.label() == "half_open"
    send(breaker, OK)
    assert recorder.calls == [
        (breaker, State.CLOSED, State.OPEN),
        (breaker, State.OPEN, State.HALF_OPEN),
        (breaker, State.HALF_OPEN, State.CLOSED),
    ]


def test_release_is_idempotent(clock: FakeClock) -> None:
    breaker = make(clock)
    permit = breaker.acquire()
    assert permit is not None
    for _ in range(5):
        breaker.release(permit, FAIL)
    assert permit.released is True
    assert breaker.consecutive_failures == 1
    assert breaker.window_counts() == (1, 1)


def test_releasing_an_old_probe_twice_does_not_free_the_next_one(clock: FakeClock) -> None:
    breaker = half_open(clock, success_threshold=3)
    first = breaker.acquire()
    assert first is not None
    breaker.release(first, NEUTRAL)
    second = breaker.acquire()
    assert second is not None
    breaker.release(first, NEUTRAL)
    assert breaker.acquire() is None


def test_bypass_permits_feed_the_statistics(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    permit = breaker.bypass()
    assert permit.probe is False
    breaker.release(permit, FAIL)
    assert breaker.window_counts() == (2, 2)


# --- properties -----------------------------------------------------------------------------------

OUTCOMES = {
    "success": OK,
    "failure": FAIL,
    "neutral": NEUTRAL,
    "connect": CONNECT,
    "timeout": TIMEOUT,
    "client_gone": classify_error(ErrorKind.CLIENT_GONE),
    "stream": classify_error(ErrorKind.STREAM),
}
# What the provider side reports (upstream/exchange.py): no response headers in time, a stream
# silent after its commit point, a client that went away.
FIRST_BYTE_TIMEOUT = classify_error(ErrorKind.TIMEOUT, "no first byte in 60s")
STREAM_IDLE = classify_error(ErrorKind.STREAM, "silent for 120s")
CLIENT_GONE = classify_error(ErrorKind.CLIENT_GONE)
PROPERTY_CONFIG = BreakerConfig(
    failure_threshold=3,
    success_threshold=2,
    open_seconds=20,
    error_rate_threshold=0.5,
    min_requests=4,
    window_seconds=30,
    max_open_seconds=80,
)


class BreakerMachine(RuleBasedStateMachine):
    """Random acquire/release/advance sequences against the breaker's promises."""

    permits = Bundle("permits")

    @initialize()
    def start(self) -> None:
        self.clock = FakeClock()
        self.recorder = Recorder()
        self.breaker = CircuitBreaker(
            PROPERTY_CONFIG, self.clock, self.recorder, random=lambda: 0.5
        )
        # A leaked probe must show as a leak here, not be hidden by the lease running out.
        self.breaker.PROBE_LEASE_SECONDS = float("inf")
        self.outstanding: list[Permit] = []
        self.confirmed: set[Permit] = set()  # response headers came (a stream may be running)
        self.probe_episode: dict[Permit, int] = {}  # the half-open spell it was issued in

    def episode_now(self) -> int:
        half_opens = [new for _, _, new in self.recorder.calls if new is State.HALF_OPEN]
        return len(half_opens)

    @rule(target=permits, hold=st.booleans())
    def acquire(self, hold: bool) -> Permit | None:
        held = self.breaker.held()
        permit = self.breaker.acquire(hold)
        if permit is None:
            return None
        assert not (hold and held), "a held provider handed out a permit"
        if permit.probe:
            episode = self.episode_now()
            in_flight = [
                p for p in self.outstanding if p.probe and self.probe_episode[p] == episode
            ]
            assert in_flight == [], "two probes in flight in one half-open spell"
            self.probe_episode[permit] = episode
        self.outstanding.append(permit)
        return permit

    def facts(self) -> tuple[object, ...]:
        """Everything an outcome may move, for checking that one moved nothing."""
        b = self.breaker
        return (
            b.state,
            b.window_counts(),
            b.consecutive_failures,
            b.cooldown_until,
            b.trips,
            b.reopens_at(),
        )

    def settle(self, permit: Permit, outcome: Outcome) -> None:
        """Release as the exchange does; a permit already back is a no-op, whatever comes."""
        if permit not in self.outstanding:
            before = self.facts(), self.breaker.unconfirmed, self.breaker.available()
            self.breaker.release(permit, outcome)
            assert (self.facts(), self.breaker.unconfirmed, self.breaker.available()) == before
            return
        self.breaker.release(permit, outcome)
        self.outstanding.remove(permit)
        self.confirmed.discard(permit)

    @rule(permit=consumes(permits), kind=st.sampled_from(sorted(OUTCOMES)))
    def release(self, permit: Permit | None, kind: str) -> None:
        if permit is None:
            return
        self.settle(permit, OUTCOMES[kind])

    @precondition(lambda self: len(self.outstanding) > 0)
    @rule(data=st.data())
    def confirm(self, data: st.DataObject) -> None:
        permit = data.draw(st.sampled_from(self.outstanding))
        self.breaker.confirm(permit)
        self.confirmed.add(permit)

    @precondition(lambda self: any(p not in self.confirmed for p in self.outstanding))
    @rule(data=st.data())
    def first_byte_timeout(self, data: st.DataObject) -> None:
        """No response headers in first_byte_seconds: abandoned, a failure."""
        waiting = [p for p in self.outstanding if p not in self.confirmed]
        self.counted_as_failure(data.draw(st.sampled_from(waiting)), FIRST_BYTE_TIMEOUT)

    @precondition(lambda self: len(self.confirmed) > 0)
    @rule(data=st.data())
    def stream_goes_silent(self, data: st.DataObject) -> None:
        """Silent past stream_idle_seconds after the commit point: a failure."""
        streaming = [p for p in self.outstanding if p in self.confirmed]
        self.counted_as_failure(data.draw(st.sampled_from(streaming)), STREAM_IDLE)

    def counted_as_failure(self, permit: Permit, outcome: Outcome) -> None:
        """A closed breaker counts it; the half-open spell's probe failing reopens it."""
        state, (_, failures) = self.breaker.state, self.breaker.window_counts()
        probing = permit.probe and state is State.HALF_OPEN and permit in self.outstanding
        self.settle(permit, outcome)
        if state is State.CLOSED:
            assert self.breaker.window_counts()[1] == failures + 1, "a failure not counted"
        if probing:
            assert self.breaker.state is State.OPEN, "a failed probe left it half-open"

    @precondition(lambda self: len(self.outstanding) > 0)
    @rule(data=st.data())
    def client_cancels(self, data: st.DataObject) -> None:
        """The client goes away at any point (while connecting, waiting for headers, or
        mid-stream): neutral, moving nothing but handing the permit back."""
        permit = data.draw(st.sampled_from(self.outstanding))
        was_probe = permit.probe and self.breaker.state is State.HALF_OPEN
        before = self.facts()
        self.settle(permit, CLIENT_GONE)
        assert self.facts() == before, "a client going away moved the breaker"
        if was_probe and self.breaker.cooldown_until is None:
            assert self.breaker.available(), "a cancelled probe kept its permit"

    @rule(seconds=st.integers(1, 120), status=st.sampled_from([429, 503]))
    def retry_after(self, seconds: int, status: int) -> None:
        permit = self.breaker.acquire()
        if permit is not None:
            self.breaker.release(permit, classify_status(status, str(seconds), self.clock.now))

    @rule(seconds=st.floats(0, 45, allow_nan=False))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def until_the_deadline(self) -> None:
        reopens = self.breaker.reopens_at()
        if reopens is not None:
            self.clock.now = reopens

    @precondition(lambda self: len(self.recorder.calls) > 0)
    @rule()
    def reset(self) -> None:
        self.breaker.reset()
        assert self.breaker.state is State.CLOSED

    @invariant()
    def no_permit_is_leaked(self) -> None:
        if self.breaker.cooldown_until is not None or self.breaker.state is State.OPEN:
            return
        if self.breaker.state is State.HALF_OPEN:
            episode = self.episode_now()
            if any(p.probe and self.probe_episode[p] == episode for p in self.outstanding):
                return
        assert self.breaker.available(), "every probe is back, yet no permit is handed out"

    @invariant()
    def unanswered_requests_are_counted_exactly(self) -> None:
        assert self.breaker.unconfirmed == sum(p.unconfirmed for p in self.outstanding)
        if not self.outstanding:
            assert not self.breaker.held(), "nothing is out, yet requests are held"
        if self.breaker.held():
            assert self.breaker.unconfirmed >= self.breaker.admission_limit()

    @invariant()
    def open_hands_out_nothing(self) -> None:
        if self.breaker.state is State.OPEN:
            assert self.breaker.available() is False
            reopens = self.breaker.reopens_at()
            assert reopens is not None
            assert reopens > self.clock.now

    @invariant()
    def transitions_are_real_changes(self) -> None:
        for breaker, old, new in self.recorder.calls:
            assert breaker is self.breaker
            assert old is not new

    def teardown(self) -> None:
        if not hasattr(self, "breaker"):
            return
        for permit in list(self.outstanding):
            self.breaker.release(permit, OK)
        self.outstanding.clear()
        # Every permit is back: once the deadlines pass a request may go again.
        reopens = self.breaker.reopens_at()
        if reopens is not None:
            self.clock.now = reopens
        assert self.breaker.state in (State.CLOSED, State.HALF_OPEN)
        assert self.breaker.acquire() is not None
        # The window forgets everything older than window_seconds.
        self.clock.advance(PROPERTY_CONFIG.window_seconds + 1)
        assert self.breaker.window_counts() == (0, 0)


BreakerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_breaker_state_machine = BreakerMachine.TestCase


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(0, 200, allow_nan=False), st.sampled_from(["success", "neutral"])),
        max_size=200,
    )
)
def test_only_successes_never_open_it(steps: list[tuple[float, str]]) -> None:
    clock = FakeClock()
    recorder = Recorder()
    breaker = CircuitBreaker(PROPERTY_CONFIG, clock, recorder)
    for seconds, kind in steps:
        clock.advance(seconds)
        permit = breaker.acquire()
        assert permit is not None
        breaker.release(permit, OUTCOMES[kind])
        assert breaker.state is State.CLOSED
    assert recorder.calls == []
    assert breaker.window_counts()[1] == 0


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(0, 10, allow_nan=False), st.booleans()), min_size=1, max_size=100
    ),
    window=st.integers(1, 120),
)
def test_the_window_forgets_old_outcomes(steps: list[tuple[float, bool]], window: int) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        replace(PROPERTY_CONFIG, window_seconds=window, failure_threshold=100, min_requests=10**5),
        clock,
    )
    failures = 0
    for seconds, failed in steps:
        clock.advance(seconds)
        send(breaker, FAIL if failed else OK)
        failures += failed
    requests, counted = breaker.window_counts()
    assert 1 <= requests <= len(steps)
    assert counted <= failures
    clock.advance(window + 1)
    assert breaker.window_counts() == (0, 0)


# --- breaker growth, slow calls, quota cooldowns, active probes -----------------------------------


def jittered(clock: FakeClock, jitter: float, **changes: Any) -> CircuitBreaker:
    """A breaker whose random() always returns ``jitter`` (0.0: −10 %, 1.0: +10 %)."""
    return CircuitBreaker(replace(CONFIG, **changes), clock, Recorder(), random=lambda: jitter)


def open_time(breaker: CircuitBreaker, clock: FakeClock) -> float:
    """How long the breaker stays open from now (it must be open)."""
    assert breaker.state is State.OPEN
    reopens = breaker.reopens_at()
    assert reopens is not None
    return reopens - clock.now


def fail_the_probe(breaker: CircuitBreaker, clock: FakeClock) -> None:
    """Wait out the open time, then let the half-open probe fail."""
    clock.advance(open_time(breaker, clock))
    assert breaker.state is State.HALF_OPEN
    send(breaker, FAIL)


@pytest.mark.parametrize("jitter", [0.0, 0.5, 1.0])
def test_the_first_trip_opens_for_exactly_open_seconds(clock: FakeClock, jitter: float) -> None:
    breaker = jittered(clock, jitter)
    trip(breaker)
    assert breaker.trips == 1
    assert open_time(breaker, clock) == 30
    clock.advance(29.999)
    assert breaker.state is State.OPEN
    clock.advance(0.001)
    assert breaker.state is State.HALF_OPEN


@pytest.mark.parametrize(("jitter", "factor"), [(0.0, 0.9), (0.5, 1.0), (1.0, 1.1)])
def test_each_repeated_trip_doubles_the_open_time_within_ten_percent(
    clock: FakeClock, jitter: float, factor: float
) -> None:
    breaker = jittered(clock, jitter)
    trip(breaker)
    fail_the_probe(breaker, clock)
    assert breaker.trips == 2
    assert open_time(breaker, clock) == pytest.approx(30 * 2 * factor)
    fail_the_probe(breaker, clock)
    assert breaker.trips == 3
    assert open_time(breaker, clock) == pytest.approx(30 * 4 * factor)
    fail_the_probe(breaker, clock)
    assert open_time(breaker, clock) == pytest.approx(30 * 8 * factor)


def test_real_jitter_stays_within_ten_percent(clock: FakeClock) -> None:
    breaker = CircuitBreaker(CONFIG, clock)  # the module's own random.random
    for _ in range(200):
        assert 54 <= breaker.open_duration(2) <= 66
        assert 108 <= breaker.open_duration(3) <= 132
    assert breaker.open_duration(1) == 30


def test_the_open_time_is_capped_by_max_open_seconds(clock: FakeClock) -> None:
    breaker = jittered(clock, 1.0, max_open_seconds=100)
    trip(breaker)
    assert open_time(breaker, clock) == 30
    fail_the_probe(breaker, clock)
    assert open_time(breaker, clock) == pytest.approx(66)
    fail_the_probe(breaker, clock)
    assert open_time(breaker, clock) == 100  # 132 capped
    for _ in range(10):
        fail_the_probe(breaker, clock)
        assert open_time(breaker, clock) == 100
    assert breaker.trips == 13


def test_a_cap_below_open_seconds_never_shortens_the_first_trip(clock: FakeClock) -> None:
    breaker = jittered(clock, 0.5, max_open_seconds=10)
    trip(breaker)
    assert open_time(breaker, clock) == 30
    fail_the_probe(breaker, clock)
    assert open_time(breaker, clock) == 30


def recover(breaker: CircuitBreaker, clock: FakeClock) -> None:
    """From open: wait, then close it with success_threshold (2) successful probes."""
    clock.advance(open_time(breaker, clock))
    send(breaker, OK)
    send(breaker, OK)
    assert breaker.state is State.CLOSED


def trip_by_streak(breaker: CircuitBreaker) -> None:
    for _ in range(3):
        send(breaker, FAIL)
    assert breaker.state is State.OPEN


def test_growth_starts_over_after_a_long_enough_closed_spell(clock: FakeClock) -> None:
    breaker = jittered(clock, 0.5)
    trip(breaker)
    fail_the_probe(breaker, clock)
    assert breaker.trips == 2
    recover(breaker, clock)
    clock.advance(4 * 30)
    trip_by_streak(breaker)
    assert breaker.trips == 1
    assert open_time(breaker, clock) == 30


def test_growth_goes_on_after_a_short_closed_spell(clock: FakeClock) -> None:
    breaker = jittered(clock, 0.5)
    trip(breaker)
    fail_the_probe(breaker, clock)
    recover(breaker, clock)
    clock.advance(4 * 30 - 1)
    trip_by_streak(breaker)
    assert breaker.trips == 3
    assert open_time(breaker, clock) == 120


def test_a_manual_reset_starts_growth_over(clock: FakeClock) -> None:
    breaker = jittered(clock, 0.5)
    trip(breaker)
    fail_the_probe(breaker, clock)
    breaker.reset()
    trip(breaker)
    assert breaker.trips == 1
    assert open_time(breaker, clock) == 30


def send_timed(breaker: CircuitBreaker, slow: bool, outcome: Outcome = OK) -> None:
    permit = breaker.acquire()
    assert permit is not None
    breaker.release(permit, outcome, slow=slow)


def test_slow_calls_open_it_at_the_slow_rate_threshold(clock: FakeClock) -> None:
    breaker = make(clock, slow_ms=1000, slow_rate_threshold=0.8, min_requests=10)
    send_timed(breaker, slow=False)
    send_timed(breaker, slow=False)
    for _ in range(7):
        send_timed(breaker, slow=True)
    assert breaker.state is State.CLOSED  # 7 slow of 9: below min_requests
    send_timed(breaker, slow=True)  # 8 slow of 10: the ratio reaches 0.8
    assert breaker.state is State.OPEN
    assert open_time(breaker, clock) == 30


def test_a_slow_ratio_below_the_threshold_stays_closed(clock: FakeClock) -> None:
    breaker = make(clock, slow_ms=1000, slow_rate_threshold=0.8, min_requests=10)
    for _ in range(10):
        send_timed(breaker, slow=False)
        send_timed(breaker, slow=False)
        send_timed(breaker, slow=False)
        for _ in range(7):
            send_timed(breaker, slow=True)
    assert breaker.window_counts() == (100, 0)
    assert breaker.state is State.CLOSED


def test_slow_calls_below_min_requests_do_not_open_it(clock: FakeClock) -> None:
    breaker = make(clock, slow_ms=1000, slow_rate_threshold=0.5, min_requests=10)
    for _ in range(9):
        send_timed(breaker, slow=True)
    assert breaker.state is State.CLOSED
    send_timed(breaker, slow=True)
    assert breaker.state is State.OPEN


def test_slow_calls_never_open_it_with_slow_ms_zero(clock: FakeClock) -> None:
    breaker = make(clock, slow_ms=0, slow_rate_threshold=0.1, min_requests=1)
    for _ in range(100):
        send_timed(breaker, slow=True)
    assert breaker.state is State.CLOSED
    assert breaker.window_counts() == (100, 0)


def test_slow_calls_leave_the_window_with_it(clock: FakeClock) -> None:
    breaker = make(clock, slow_ms=1000, slow_rate_threshold=0.8, min_requests=10)
    for _ in range(9):
        send_timed(breaker, slow=True)
    clock.advance(61)  # the nine slow calls are out of the window
    send_timed(breaker, slow=True)
    assert breaker.state is State.CLOSED
    assert breaker.window_counts() == (1, 0)


def cooling(until: float, reason: str | None, effect: Effect = Effect.FAILURE) -> Outcome:
    return Outcome(effect, True, "429", cooldown_until=until, cooldown_reason=reason)


def test_a_quota_cooldown_is_capped_by_max_cooldown_seconds(clock: FakeClock) -> None:
    breaker = make(clock, max_cooldown_seconds=7200)
    send(breaker, cooling(clock.now + 10 * 86400, "quota reset"))
    assert breaker.cooldown_until == clock.now + 7200
    assert breaker.cooldown_reason == "quota reset"
    assert breaker.label() == "cooldown"


def test_a_quota_cooldown_may_outlast_an_hour_but_retry_after_may_not(clock: FakeClock) -> None:
    week = 7 * 86400
    quota = make(clock, max_cooldown_seconds=week)
    send(quota, cooling(clock.now + 2 * 86400, "quota reset"))
    assert quota.cooldown_until == clock.now + 2 * 86400
    retry_after = make(clock, max_cooldown_seconds=week)
    send(retry_after, cooling(clock.now + 2 * 86400, "Retry-After"))
    assert retry_after.cooldown_until == clock.now + 3600


def test_a_rule_cooldown_is_neutral_and_keeps_its_reason(clock: FakeClock) -> None:
    breaker = make(clock, max_cooldown_seconds=600)
    send(breaker, cooling(clock.now + 3600, "rule p.yaml:7", Effect.NEUTRAL))
    assert breaker.cooldown_until == clock.now + 600
    assert breaker.cooldown_reason == "rule p.yaml:7"
    assert breaker.window_counts() == (0, 0)
    assert breaker.consecutive_failures == 0


def test_the_reason_of_the_longer_cooldown_is_kept(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=10)
    first, second, third = breaker.acquire(), breaker.acquire(), breaker.acquire()
    assert first is not None
    assert second is not None
    assert third is not None
    breaker.release(first, cooling(clock.now + 600, "quota reset"))
    breaker.release(second, cooling(clock.now + 60, "Retry-After"))
    assert (breaker.cooldown_until, breaker.cooldown_reason) == (clock.now + 600, "quota reset")
    breaker.release(third, cooling(clock.now + 1800, "Retry-After"))
    assert (breaker.cooldown_until, breaker.cooldown_reason) == (clock.now + 1800, "Retry-After")


def test_a_cooldown_without_a_reason_is_called_cooldown(clock: FakeClock) -> None:
    breaker = make(clock)
    send(breaker, cooling(clock.now + 60, None))
    assert breaker.cooldown_reason == "cooldown"


def test_reset_clears_the_cooldown_reason(clock: FakeClock) -> None:
    breaker = make(clock)
    send(breaker, cooling(clock.now + 600, "quota reset"))
    assert breaker.cooldown_reason == "quota reset"
    breaker.reset()
    assert breaker.cooldown_reason is None
    assert breaker.cooldown_until is None
    assert breaker.label() == "closed"


def test_probe_succeeded_moves_open_to_half_open_at_once(
    clock: FakeClock, recorder: Recorder
) -> None:
    breaker = make(clock, recorder)
    trip(breaker)
    clock.advance(5)
    breaker.probe_succeeded()
    assert breaker.state is State.HALF_OPEN
    assert breaker.reopens_at() is None
    assert recorder.pairs() == [(State.CLOSED, State.OPEN), (State.OPEN, State.HALF_OPEN)]
    probe = breaker.acquire()
    assert probe is not None
    assert probe.probe is True
    assert breaker.acquire() is None


def test_a_real_request_failing_after_a_good_probe_reopens_for_longer(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    breaker.probe_succeeded()
    send(breaker, FAIL)
    assert breaker.trips == 2
    assert open_time(breaker, clock) == 60


def test_probe_succeeded_does_nothing_unless_open(clock: FakeClock, recorder: Recorder) -> None:
    closed = make(clock, recorder)
    send(closed, FAIL)
    closed.probe_succeeded()
    assert closed.state is State.CLOSED
    assert closed.consecutive_failures == 1
    assert recorder.calls == []
    permit = closed.acquire()
    assert permit is not None
    assert permit.probe is False

    probing = half_open(clock)
    assert probing.acquire() is not None
    probing.probe_succeeded()  # the probe in flight stays the only one
    assert probing.state is State.HALF_OPEN
    assert probing.acquire() is None


# --- following a shared store ------------------------------------------------------------


def test_a_follower_counts_but_does_not_trip_until_it_goes_alone(
    clock: FakeClock, recorder: Recorder
) -> None:
    b = make(clock, recorder)
    send(b, OK)
    b.follower = True
    for _ in range(3):
        permit = b.acquire(hold=False)
        assert permit is not None
        b.release(permit, FAIL)
    assert b.state is State.CLOSED  # the store decides while it answers
    assert b.consecutive_failures == 3
    assert not b.proven  # the next requests go through admission
    b.go_alone()  # the store stopped answering: the failures counted meanwhile trip it
    assert b.state is State.OPEN
    assert recorder.pairs() == [(State.CLOSED, State.OPEN)]
    assert not b.follower


def test_going_alone_below_the_threshold_changes_nothing(clock: FakeClock) -> None:
    b = make(clock)
    b.follower = True
    send(b, FAIL)
    send(b, OK)  # a success ends the streak, as in the store
    send(b, FAIL)
    b.go_alone()
    assert b.state is State.CLOSED
    assert b.consecutive_failures == 1
