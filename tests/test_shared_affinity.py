"""Conversation affinity shared by the fleet through a real redis-server (state/shared.py):
a conversation served by one instance stays on that provider at the other."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
from redis_server import RedisServer

from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.facts import Facts
from ccswitch_addon.engine import Engine, Finished
from ccswitch_addon.state.shared import SharedState, key
from ccswitch_addon.wire.api import Api

T = TypeVar("T")

CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    affinity_seconds: 300
    providers:
      primary: {base_url: "http://127.0.0.1:1", auth: passthrough}
      backup: {base_url: "http://127.0.0.1:2", auth: passthrough}
"""


async def until(predicate: Callable[[], T], what: str, timeout: float = 5) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
    return value


class Instance:
    def __init__(self, url: str, name: str) -> None:
        self.engine = Engine(parse_config(CONFIG, "p.yaml", env={}))
        self.shared = SharedState(self.engine, url, prefix="t", instance=name)
        self.task = asyncio.get_running_loop().create_task(self.shared.run())

    async def place(self, conversation: str) -> str:
        """Where the router sends this conversation's next request, after asking the fleet."""
        headers = ((b"x-claude-code-session-id", conversation.encode()),)
        facts = Facts(Api.ANTHROPIC, "/v1/messages", headers, json.dumps({"model": "m"}).encode())
        await self.engine.recall(self.engine.router.app("claude"), facts)
        return self.engine.router.select_providers("claude", None, facts).providers[0].id

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[Instance, Instance]]:
    a, b = Instance(redis_server.url, "a"), Instance(redis_server.url, "b")
    await until(lambda: a.shared.reachable and b.shared.reachable, "both in sync")
    yield a, b
    await a.stop()
    await b.stop()


async def test_a_conversation_stays_where_another_instance_served_it(
    pair: tuple[Instance, Instance], redis_server: RedisServer
) -> None:
    a, b = pair
    assert await b.place("c-1") == "primary"  # nobody served it yet
    a.engine.request_done(Finished("claude", "backup", [], total_ms=1.0, conversation="c-1"))
    client: Any = redis_server.client()
    name = key("t", "conv", "claude", "|c-1")
    await until(lambda: client.get(name), "the conversation in Redis")
    ttl = client.pttl(name)
    assert 290_000 < ttl <= 300_000  # it lets go after idling affinity_seconds
    client.close()
    assert await b.place("c-1") == "backup"
    assert await b.place("c-2") == "primary"


async def test_redis_gone_leaves_local_affinity(
    pair: tuple[Instance, Instance], redis_server: RedisServer
) -> None:
    a, _ = pair
    a.engine.request_done(Finished("claude", "backup", [], total_ms=1.0, conversation="c-9"))
    redis_server.stop()
    assert await a.place("c-9") == "backup"  # its own memory, no wait on a dead Redis


async def test_a_manual_switch_is_not_undone_by_the_fleets_memory(
    pair: tuple[Instance, Instance], redis_server: RedisServer
) -> None:
    a, b = pair
    a.engine.request_done(Finished("claude", "backup", [], total_ms=1.0, conversation="c-3"))
    client: Any = redis_server.client()
    await until(lambda: client.get(key("t", "conv", "claude", "|c-3")), "it in Redis")
    client.close()
    assert await b.place("c-3") == "backup"
    b.engine.switch("claude", "primary")
    assert await b.place("c-3") == "primary"
