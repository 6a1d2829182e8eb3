"""Shared fixtures for the unit tests: time is injected, never waited for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis_server import RedisServer


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


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server of this test's own, on a temporary port and socket."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()
