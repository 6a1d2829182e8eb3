"""What an answer means: retry or not, and success, failure or neutral for the breaker."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from ccswitch_addon.core.outcome import (
    COOLDOWN_CAP_SECONDS,
    Effect,
    ErrorKind,
    classify_error,
    classify_status,
    parse_retry_after,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "retry", "effect"),
    [
        *[(s, False, Effect.SUCCESS) for s in (100, 101, 200, 201, 204, 206, 301, 304, 307, 399)],
        *[(s, False, Effect.NEUTRAL) for s in (400, 405, 406, 413, 414, 415, 422, 431, 501)],
        *[(s, True, Effect.FAILURE) for s in (401, 403, 404, 408, 409, 429, 418, 402, 451)],
        *[(s, True, Effect.FAILURE) for s in (500, 502, 503, 504, 529, 599)],
    ],
)
def test_status_table(status: int, retry: bool, effect: Effect) -> None:
    outcome = classify_status(status)
    assert outcome.retry is retry
    assert outcome.effect is effect
    assert outcome.opens_now is False
    assert outcome.cooldown_until is None
    if effect is not Effect.SUCCESS:
        assert outcome.reason == str(status)


@pytest.mark.parametrize(
    ("kind", "retry", "effect", "opens_now"),
    [
        (ErrorKind.CONNECT, True, Effect.FAILURE, True),
        (ErrorKind.RESET, True, Effect.FAILURE, True),
        (ErrorKind.TIMEOUT, True, Effect.FAILURE, False),
        (ErrorKind.CLIENT_GONE, False, Effect.NEUTRAL, False),
        (ErrorKind.STREAM, False, Effect.FAILURE, False),
    ],
)
def test_error_table(kind: ErrorKind, retry: bool, effect: Effect, opens_now: bool) -> None:
    outcome = classify_error(kind, "boom")
    assert (outcome.retry, outcome.effect, outcome.opens_now) == (retry, effect, opens_now)
    assert outcome.reason == f"{kind.value}: boom"
    assert outcome.cooldown_until is None
    assert classify_error(kind).reason == kind.value


HTTP_DATE_IN_120S = format_datetime(datetime.fromtimestamp(NOW + 120, UTC), usegmt=True)
HTTP_DATE_IN_2H = format_datetime(datetime.fromtimestamp(NOW + 7200, UTC), usegmt=True)
HTTP_DATE_PAST = format_datetime(datetime.fromtimestamp(NOW - 60, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("header", "until"),
    [
        ("30", NOW + 30),
        (" 2.5 ", NOW + 2.5),
        ("7200", NOW + COOLDOWN_CAP_SECONDS),
        ("9" * 400, NOW + COOLDOWN_CAP_SECONDS),
        (HTTP_DATE_IN_120S, NOW + 120),
        (HTTP_DATE_IN_2H, NOW + COOLDOWN_CAP_SECONDS),
        (HTTP_DATE_PAST, None),
        ("0", None),
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("Infinity", None),
        ("1e3", None),
        ("1_000", None),
        ("١٢", None),  # Arabic-Indic digits: float() takes them, HTTP does not
        ("+30", None),
        ("soon", None),
        ("Wed, 99 Foo 2015 07:28:00 GMT", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, until: float | None) -> None:
    assert parse_retry_after(header, NOW) == until


def test_cap_is_an_hour() -> None:
    assert COOLDOWN_CAP_SECONDS == 3600


@pytest.mark.parametrize("status", [429, 503, 529, 500, 502, 401])
def test_retry_after_on_any_failure_sets_a_cooldown(status: int) -> None:
    outcome = classify_status(status, "45", NOW)
    assert outcome.cooldown_until == NOW + 45
    assert outcome.cooldown_reason == "Retry-After"
    assert (outcome.effect, outcome.retry) == (Effect.FAILURE, True)
    capped = classify_status(status, HTTP_DATE_IN_2H, NOW)
    assert capped.cooldown_until == NOW + 3600
    garbage = classify_status(status, "tomorrow-ish", NOW)
    assert garbage.cooldown_until is None
    assert garbage.cooldown_reason is None
    assert garbage.effect is Effect.FAILURE


@pytest.mark.parametrize("status", [200, 304, 400, 413, 422])
def test_retry_after_is_ignored_where_the_provider_is_not_at_fault(status: int) -> None:
    outcome = classify_status(status, "45", NOW)
    assert outcome.cooldown_until is None
    assert outcome.cooldown_reason is None
