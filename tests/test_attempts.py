"""Attempts: permits that wait at an unproven provider, outcomes told to the breaker."""

from __future__ import annotations

import asyncio

import pytest
from conftest import FakeClock

from ccswitch_addon.attempts import Attempts
from ccswitch_addon.core.breaker import State
from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.outcome import ErrorKind, classify_error, classify_status
from ccswitch_addon.engine import Engine
from ccswitch_addon.flows import Original, Routed

CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    breaker: {failure_threshold: 2, open_seconds: 60}
    providers:
      primary: {base_url: "http://127.0.0.1:9001", auth: passthrough}
      backup: {base_url: "http://127.0.0.1:9002", auth: passthrough}
"""


@pytest.fixture
def attempts(clock: FakeClock) -> Attempts:
    return Attempts(Engine(parse_config(CONFIG, "providers.yaml"), clock))


def routed(attempts: Attempts) -> Routed:
    app = attempts.engine.router.app("claude")
    return Routed(app, tuple(app.providers.values()), Original(b"/v1/messages", (), b"{}"), [])


def primary(attempts: Attempts) -> Routed:
    """A request holding a permit for the primary."""
    one = routed(attempts)
    one.provider = one.candidates[0]
    one.permit = attempts.engine.router.acquire("claude", "primary")
    assert one.permit is not None
    return one


async def test_a_permit_comes_at_once_while_the_limit_is_not_reached(attempts: Attempts) -> None:
    permit = await asyncio.wait_for(
        attempts.acquire(routed(attempts), routed(attempts).candidates[0]), 1
    )
    assert permit is not None


async def test_a_held_request_goes_when_a_success_answers(attempts: Attempts) -> None:
    first, _second = primary(attempts), primary(attempts)  # failure_threshold 2: the limit
    waiting = asyncio.ensure_future(attempts.acquire(routed(attempts), first.candidates[0]))
    await asyncio.sleep(0)
    assert not waiting.done()
    attempts.engine.router.confirm("claude", "primary", first.permit)
    attempts.wake("claude", "primary")
    assert await asyncio.wait_for(waiting, 1) is not None


async def test_a_held_request_gets_none_when_the_provider_trips(attempts: Attempts) -> None:
    first, second = primary(attempts), primary(attempts)
    waiting = asyncio.ensure_future(attempts.acquire(routed(attempts), first.candidates[0]))
    await asyncio.sleep(0)
    attempts.record(first, classify_status(529), first.permit)
    assert not waiting.done()  # one failure of two: still held
    attempts.record(second, classify_status(529), second.permit)
    assert await asyncio.wait_for(waiting, 1) is None  # open: the next provider's turn
    assert attempts.engine.router.breaker("claude", "primary").state is State.OPEN


async def test_after_hold_seconds_it_goes_anyway(
    attempts: Attempts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ccswitch_addon.attempts.HOLD_SECONDS", 0.01)
    primary(attempts), primary(attempts)
    permit = await asyncio.wait_for(
        attempts.acquire(routed(attempts), routed(attempts).candidates[0]), 5
    )
    assert permit is not None
    assert attempts.engine.router.breaker("claude", "primary").unconfirmed == 3


def test_release_hands_back_a_permit_without_blaming_the_provider(attempts: Attempts) -> None:
    one = primary(attempts)
    attempts.release(one)
    breaker = attempts.engine.router.breaker("claude", "primary")
    assert one.permit is None
    assert breaker.unconfirmed == 0
    assert breaker.consecutive_failures == 0


def test_a_late_first_byte_counts_once(attempts: Attempts) -> None:
    one = primary(attempts)
    Attempts.start(one)
    attempts.first_byte_late(one)
    breaker = attempts.engine.router.breaker("claude", "primary")
    assert breaker.consecutive_failures == 1
    attempts.finish(one, classify_error(ErrorKind.STREAM, "late"), None)  # the answer, later
    assert breaker.consecutive_failures == 1  # recorded as the timeout already
    assert one.attempts[-1].error is not None
    assert one.attempts[-1].error.startswith("first byte after")
