"""Shared fixtures for the unit tests: time is injected, never waited for."""

from __future__ import annotations

import pytest


class FakeClock:
    """A clock the test moves by hand; pass the object itself wherever a clock is expected."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
