"""The team gateway under a misbehaving Redis (real redis-server, engines in process): a stall
(SIGSTOP), one instance cut off (a TCP forwarder of the test's own), SIGKILL and an empty
restart, a fresh instance joining while the fleet has a breaker open. Each time every
instance comes back in sync, nothing it decided alone is lost or announced twice, and no
probe lease strands the fleet."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator

import pytest
from redis_server import RedisServer
from test_shared import FAIL, Instance, served, until

from ccswitch_addon.core.breaker import State
from ccswitch_addon.core.outcome import SUCCESS
from ccswitch_addon.state.leases import PROBE_MARGIN_SECONDS
from ccswitch_addon.state.shared import key

CB = key("t", "cb", "claude", "primary")
ACTIVE = key("t", "active", "claude")
BACK = "reachable again; in sync"


class Forwarder:
    """A TCP forwarder between one instance and Redis; ``cut()`` drops its connections and
    holds new ones unanswered (a network partition), ``heal()`` forwards again."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.cut_off = False
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> Forwarder:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            if self.cut_off:
                await reader.read()  # held: no answer until the client gives up
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
            self.writers.add(up_writer)
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.cut_off:
                    break
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def cut(self) -> None:
        self.cut_off = True
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()

    def heal(self) -> None:
        self.cut_off = False

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)


@contextlib.asynccontextmanager
async def stalled(server: RedisServer, seconds: float) -> AsyncIterator[None]:
    """Redis frozen (SIGSTOP) for ``seconds`` after the block's body started."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
        await asyncio.sleep(seconds)  # the stall itself: what the test does, not a wait
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[Instance, Instance]]:
    a = Instance(redis_server.url, "a")
    b = Instance(redis_server.url, "b")
    await until(lambda: a.shared.reachable and b.shared.reachable, "both in sync")
    yield a, b
    await a.stop()
    await b.stop()


@pytest.mark.parametrize("stall", [0.35, 1.0])
async def test_after_a_stall_a_failed_call_comes_back_in_sync(
    pair: tuple[Instance, Instance],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    stall: float,
) -> None:
    a, b = pair
    caplog.set_level(logging.INFO, "ccswitch_addon.state.shared")
    async with stalled(redis_server, stall):
        await a.send("primary", FAIL)  # its record call times out: a goes on alone
        assert not a.shared.reachable
    await until(lambda: a.shared.reachable, "a back in sync", timeout=10)
    assert sum(BACK in r.getMessage() for r in caplog.records) >= 1
    # It shares again: failures through a and b open the primary for the fleet.
    for _ in range(3):
        await a.send("primary", FAIL)
    await until(lambda: a.state() is b.state() is State.OPEN, "open at both")
    client = redis_server.client()
    assert client.hget(CB, "state") == "open"
    client.close()


async def test_a_cut_off_instance_writes_its_trip_and_switch_back_once(
    redis_server: RedisServer,
) -> None:
    forwarder = await Forwarder(redis_server.port).start()
    a = Instance(redis_server.url, "a")
    b = Instance(forwarder.url, "b")
    try:
        await until(lambda: a.shared.reachable and b.shared.reachable, "both in sync")
        forwarder.cut()
        await b.send("primary", FAIL)
        await until(lambda: not b.shared.reachable, "b to notice", timeout=10)
        for _ in range(3):
            await b.send("primary", FAIL)
        assert b.state() is State.OPEN  # decided alone
        served(b, "backup")
        assert [e.to for e in b.announced] == ["backup"]  # announced alone, once
        assert a.state() is State.CLOSED
        assert not a.announced
        forwarder.heal()
        await until(lambda: b.shared.reachable, "b back in sync", timeout=10)
        # Its trip and its switch are the fleet's now: a learns both, b hears no echo.
        await until(lambda: a.state() is State.OPEN, "a to see b's trip")
        await until(lambda: [e.to for e in a.announced] == ["backup"], "the switch at a")
        await b.shared.refresh()
        assert [e.to for e in b.announced] == ["backup"]
        assert b.state() is State.OPEN
        assert a.engine.switches.active("claude") == b.engine.switches.active("claude")
    finally:
        await a.stop()
        await b.stop()
        await forwarder.stop()


async def test_a_probe_lease_taken_during_a_stall_is_given_back(
    pair: tuple[Instance, Instance], redis_server: RedisServer
) -> None:
    a, b = pair
    for _ in range(3):
        await a.send("primary", FAIL)
    await until(lambda: b.state() is State.OPEN, "b to see it open")
    client = redis_server.client()
    client.hset(CB, "open_until", 0)  # its time ran out
    await until(lambda: a.state() is b.state() is State.HALF_OPEN, "both half-open")
    permit = a.engine.router.acquire("claude", "primary")
    assert permit is not None
    assert permit.probe
    async with stalled(redis_server, 0.8):
        # The acquire times out here but runs in Redis when the stall ends.
        assert await a.engine.admit("claude", "primary", permit) is permit
    await until(lambda: a.shared.reachable, "a back in sync", timeout=10)
    await until(lambda: not client.hget(CB, "probe_owner"), "the lease given back")
    # b may probe now, not after a lease of minutes.
    await b.shared.refresh()
    probe = b.engine.router.acquire("claude", "primary")
    assert probe is not None
    assert await b.engine.admit("claude", "primary", probe) is probe
    # Its lease is its request's own deadline plus a margin.
    config = b.engine.router.app("claude").breaker
    probe_until, now = float(client.hget(CB, "probe_until") or 0), client.time()
    lease = probe_until / 1000 - (now[0] + now[1] / 1e6)
    assert 0 < lease <= config.first_byte_seconds + PROBE_MARGIN_SECONDS
    client.close()


async def test_an_empty_restart_keeps_the_fleets_view_and_fails_back_once(
    pair: tuple[Instance, Instance], redis_server: RedisServer
) -> None:
    a, b = pair
    for _ in range(3):
        await a.send("primary", FAIL)
    await until(lambda: b.state() is State.OPEN, "b to see it open")
    served(a, "backup")
    await until(lambda: len(a.announced) == len(b.announced) == 1, "the switch at both")
    redis_server.kill()
    await until(lambda: not a.shared.reachable and not b.shared.reachable, "noticed", timeout=10)
    redis_server.start()  # empty
    await until(lambda: a.shared.reachable and b.shared.reachable, "both back", timeout=10)
    client = redis_server.client()
    # Re-seeded from the instances' view, without a new event.
    assert client.hget(ACTIVE, "provider") == "backup"
    assert client.hget(CB, "state") == "open"
    assert a.state() is b.state() is State.OPEN
    served(b, "backup")
    await b.shared.drain()
    assert len(a.announced) == len(b.announced) == 1
    # The primary heals: one failback event, at both, and both statuses say so.
    client.hset(CB, "open_until", 0)
    await until(lambda: a.state() is State.HALF_OPEN, "half-open at a")
    assert await a.send("primary", SUCCESS)
    await until(lambda: b.state() is State.CLOSED, "closed at b")
    served(a, "primary")
    await until(lambda: len(a.announced) == len(b.announced) == 2, "the failback at both")
    assert a.announced[-1].to == b.announced[-1].to == "primary"
    for instance in (a, b):
        assert instance.engine.status()["apps"]["claude"]["active"] == "primary"
    client.close()


async def test_a_fresh_instance_reads_the_fleet_before_it_routes(redis_server: RedisServer) -> None:
    a = Instance(redis_server.url, "a")
    await until(lambda: a.shared.reachable, "a in sync")
    for _ in range(3):
        await a.send("primary", FAIL)
    fresh = Instance(redis_server.url, "fresh")
    try:
        assert fresh.state() is State.CLOSED  # nothing read yet
        await fresh.shared.first_read()  # what the addon awaits before routing
        assert fresh.state() is State.OPEN
        selection = fresh.engine.router.select_providers("claude")
        assert [p.id for p in selection.providers] == ["backup"]
    finally:
        await a.stop()
        await fresh.stop()


async def test_first_read_gives_up_when_redis_is_down(redis_server: RedisServer) -> None:
    redis_server.kill()
    fresh = Instance(redis_server.url, "fresh")
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await fresh.shared.first_read()
        assert loop.time() - started < 5  # bounded: the instance routes alone
        assert not fresh.shared.reachable
    finally:
        await fresh.stop()


async def test_a_restarted_instance_gives_up_its_earlier_lives_leases(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    far = (int(client.time()[0]) + 600) * 1000
    # A crash left a probe lease held by a's earlier life, and one held by b, and
    # admissions of an unproven provider of both.
    for pid, owner in (("primary", "a:0badf00d:7"), ("backup", "b:0badf00d:3")):
        client.hset(
            key("t", "cb", "claude", pid),
            mapping={"state": "half_open", "probe_owner": owner, "probe_until": far, "gen": 1},
        )
    inflight = key("t", "inflight", "claude", "backup")
    client.zadd(inflight, {"a:0badf00d:8": far, "b:0badf00d:4": far})  # admissions too
    a = Instance(redis_server.url, "a")  # the same instance id: the same host:pid
    try:
        await until(lambda: a.shared.reachable, "a in sync")
        assert not client.hget(CB, "probe_owner")
        assert client.zrange(inflight, 0, -1) == ["b:0badf00d:4"]
        assert client.hget(key("t", "cb", "claude", "backup"), "probe_owner") == "b:0badf00d:3"
        assert a.engine.router.breaker("claude", "primary").available()  # a may probe
    finally:
        await a.stop()
        client.close()
