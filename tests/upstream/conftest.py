"""Fixtures for the provider side: fakes and a relay on loopback, torn down after each test."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from .providers import Behaviour, Harness, Provider, ok_json

SECRET = "sk-provider-secret-0123456789"

MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def harness() -> AsyncIterator[MakeHarness]:
    """``await harness(CONFIG, primary=behaviour, backup=behaviour)``: fakes started, then the
    relay for CONFIG (``<primary>`` is the fake's URL; a fake named there without a
    behaviour answers with JSON), everything stopped at the end."""
    started: list[Harness] = []
    fakes: list[Provider] = []

    async def make(config: str, **behaviours: Behaviour | None) -> Harness:
        providers = {}
        names = dict.fromkeys([*re.findall(r"<(\w+)>", config), *behaviours])
        for name in names:
            provider = Provider(behaviours.get(name) or ok_json())
            await provider.start()
            fakes.append(provider)
            providers[name] = provider
        made = Harness(providers, config, {"K": SECRET})
        await made.start()
        started.append(made)
        return made

    yield make
    for made in started:
        await made.stop()
    for provider in fakes:
        await provider.stop()
