"""Budgets shared through a real Redis: atomic sums across instances, and Redis down."""

from __future__ import annotations

import asyncio
import datetime

import redis.asyncio as aioredis
from redis_server import RedisServer

from ccswitch_addon.core.budget import Budgets, Spent
from ccswitch_addon.state.spend import SharedSpend, spend_key

NOON = datetime.datetime(2026, 12, 6, 12, 0).timestamp()


def rows(usd: float) -> list[Spent]:
    budgets = Budgets(lambda: NOON)
    budgets.add("claude", "primary", usd, NOON)
    return budgets.rows_of("claude", "primary")


async def test_instances_add_up_atomically(redis_server: RedisServer) -> None:
    clients = [aioredis.Redis.from_url(redis_server.url, decode_responses=True) for _ in range(2)]
    try:
        shared = [SharedSpend(c, "ccsw", 2.0) for c in clients]
        results = await asyncio.gather(
            *(shared[i % 2].add(rows(0.25), 0.25, NOON) for i in range(40))
        )
        assert all(r is not None for r in results)
        day = await clients[0].get(spend_key("ccsw", rows(0)[0]))
        assert float(day) == 10.0
        assert "{claude:primary}:spend:day:2026-12-06" in spend_key("ccsw", rows(0)[0])
        ttl = await clients[0].ttl(spend_key("ccsw", rows(0)[1]))
        assert ttl > 86400  # kept a day past the month's end
        last = await shared[0].add(rows(1.0), 1.0, NOON)
        assert last is not None
        assert [r.usd for r in last] == [11.0, 11.0]
    finally:
        for c in clients:
            await c.aclose()


async def test_redis_down_gives_none(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        shared = SharedSpend(client, "ccsw", 0.5)
        redis_server.kill()
        assert await shared.add(rows(1.0), 1.0, NOON) is None
    finally:
        await client.aclose()
