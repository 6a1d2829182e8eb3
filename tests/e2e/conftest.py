"""Fixtures for the end-to-end tests: fake providers and mitmdump processes, always cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .fakes import FakeProvider
from .proxy import Proxy

LOG_TAIL_LINES = 200


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker here too, so the directory also works outside this pyproject."""
    config.addinivalue_line("markers", "e2e: end-to-end tests with a real mitmdump")


@pytest.fixture
def fakes() -> Iterator[Callable[[str], FakeProvider]]:
    """Factory: ``fakes("primary")`` is a started FakeProvider; all are stopped at teardown."""
    made: list[FakeProvider] = []

    def make(name: str = "fake") -> FakeProvider:
        provider = FakeProvider(name).start()
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.stop()
    # A traceback here is a bug in the fake itself, not in the code under test.
    bugs = [err for provider in made for err in provider.errors]
    assert not bugs, "fake provider handler errors:\n" + "\n".join(bugs)


@pytest.fixture
def fake(fakes: Callable[[str], FakeProvider]) -> FakeProvider:
    """A started FakeProvider named "fake"."""
    return fakes("fake")


@pytest.fixture
def make_proxy(tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    """Factory: ``make_proxy(config, mode=…, addon=…, extra=…, env=…, start=True)`` -> Proxy.

    Every proxy is stopped at teardown and the tail of its log printed (pytest shows it for
    failing tests only).
    """
    made: list[Proxy] = []

    def make(config: str | Path | None = None, *, start: bool = True, **kwargs: Any) -> Proxy:
        proxy = Proxy(tmp_path, config, **kwargs)
        made.append(proxy)
        return proxy.start() if start else proxy

    yield make
    for proxy in made:
        proxy.stop()
        tail = "\n".join(proxy.output().splitlines()[-LOG_TAIL_LINES:])
        print(f"--- {proxy.log_path} (exit {proxy.returncode}) ---\n{tail}")
