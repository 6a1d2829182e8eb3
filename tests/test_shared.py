"""Two engines sharing one real redis-server through state/shared.py (no proxy): shared
counting, one probe, one switch event, Redis killed and back, a late joiner."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
from redis_server import RedisServer

from ccswitch_addon.core.breaker import State
from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.outcome import SUCCESS, classify_status
from ccswitch_addon.core.switch import SwitchEvent
from ccswitch_addon.engine import Engine, Finished
from ccswitch_addon.state.shared import SharedState, key

T = TypeVar("T")

CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    breaker: {failure_threshold: 3, success_threshold: 1, open_seconds: 60}
    providers:
      primary: {base_url: "http://127.0.0.1:1", auth: passthrough}
      backup: {base_url: "http://127.0.0.1:2", auth: passthrough}
"""
FAIL = classify_status(529)


async def until(predicate: Callable[[], T], what: str, timeout: float = 5) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
    return value


class Instance:
    def __init__(self, url: str, name: str, down: str = "keep_open") -> None:
        self.engine = Engine(parse_config(CONFIG, "p.yaml", env={}))
        self.shared = SharedState(self.engine, url, prefix="t", down=down, instance=name)
        self.announced: list[SwitchEvent] = []
        self.engine.switches.add_listener(self.announced.append)
        self.task = asyncio.get_running_loop().create_task(self.shared.run())

    def state(self, pid: str = "primary") -> State:
        return self.engine.router.breaker("claude", pid).state

    async def send(self, pid: str, outcome: Any = SUCCESS) -> bool:
        """One attempt at pid, as the provider side makes it; whether it was let through."""
        router = self.engine.router
        permit = router.acquire("claude", pid, hold=False)
        permit = await self.engine.admit("claude", pid, permit)
        if permit is None:
            return False
        if outcome is SUCCESS:
            router.confirm("claude", pid, permit)
        router.record_result("claude", pid, outcome, permit)
        await self.shared.drain()
        return True

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def served(instance: Instance, pid: str) -> None:
    """A request of claude served by pid, after the primary was skipped."""
    instance.engine.request_done(
        Finished("claude", pid, [], skipped=["primary: open"], total_ms=1.0)
    )


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[Instance, Instance]]:
    a = Instance(redis_server.url, "a")
    b = Instance(redis_server.unix_url, "b")  # one over the unix socket
    await until(lambda: a.shared.reachable and b.shared.reachable, "both in sync")
    yield a, b
    await a.stop()
    await b.stop()


async def test_failures_of_both_instances_count_together(pair: tuple[Instance, Instance]) -> None:
    a, b = pair
    await a.send("primary", FAIL)
    await b.send("primary", FAIL)
    assert a.state() is b.state() is State.CLOSED
    await a.send("primary", FAIL)  # the third failure in total, the second of a's own
    assert a.state() is State.OPEN
    await until(lambda: b.state() is State.OPEN, "b to see the open breaker")
    assert not await b.send("primary")
    entry = next(e for e in b.engine.status()["apps"]["claude"]["queue"] if e["id"] == "primary")
    assert entry["changed_by"] == "a"
    assert b.engine.status()["redis"]["reachable"] is True
    assert b.engine.status()["instance"] == "b"


async def test_exactly_one_probe_across_instances(
    pair: tuple[Instance, Instance], redis_server: RedisServer
) -> None:
    a, b = pair
    for _ in range(3):
        await a.send("primary", FAIL)
    await until(lambda: b.state() is State.OPEN, "b to see it open")
    client = redis_server.client()
    client.hset(key("t", "cb", "claude", "primary"), "open_until", 0)  # its time ran out
    client.close()
    await until(lambda: a.state() is b.state() is State.HALF_OPEN, "both half-open")
    router_a, router_b = a.engine.router, b.engine.router
    permits = [router_a.acquire("claude", "primary"), router_b.acquire("claude", "primary")]
    assert all(p is not None and p.probe for p in permits)  # each one's local view
    admitted = await asyncio.gather(
        a.engine.admit("claude", "primary", permits[0]),
        b.engine.admit("claude", "primary", permits[1]),
    )
    assert sum(p is not None for p in admitted) == 1
    loser = b if admitted[0] is not None else a
    # The loser's snapshot knows the probe is out elsewhere: it sends to the backup.
    assert not loser.engine.router.breaker("claude", "primary").available()
    winner = a if loser is b else b
    router = winner.engine.router
    router.confirm("claude", "primary", admitted[0] or admitted[1])
    router.record_result("claude", "primary", SUCCESS, admitted[0] or admitted[1])
    await winner.shared.drain()
    await until(lambda: a.state() is b.state() is State.CLOSED, "failback seen by both")


async def test_one_switch_event_reaches_each_instance_once(pair: tuple[Instance, Instance]) -> None:
    a, b = pair

    served(a, "backup")
    served(b, "backup")  # before or after a's switch arrives: never a second event
    await until(lambda: a.announced and b.announced, "the event at both")
    await a.shared.drain()
    await b.shared.drain()
    served(b, "backup")
    await b.shared.refresh()
    assert len(a.announced) == len(b.announced) == 1
    assert a.announced[0].to == "backup"
    assert a.announced[0].reason in (
        "after primary: skipped, open; by a",
        "after primary: skipped, open; by b",
    )
    assert [(e.from_, e.to, e.reason) for e in b.announced] == [
        (e.from_, e.to, e.reason) for e in a.announced
    ]
    assert a.engine.switches.active("claude") == b.engine.switches.active("claude") == "backup"


async def test_redis_killed_and_back(
    pair: tuple[Instance, Instance], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    caplog.set_level(logging.WARNING, "ccswitch_addon.state.shared")
    await a.send("primary", FAIL)
    served(a, "backup")
    await until(lambda: len(a.announced) == len(b.announced) == 1, "a switch at both")
    redis_server.kill()
    await until(
        lambda: not a.shared.reachable and not b.shared.reachable, "both to notice", timeout=10
    )
    # Alone now: a's own breaker goes on from the last shared count (1 of 3).
    for _ in range(2):
        assert await a.send("primary", FAIL)
    assert a.state() is State.OPEN
    assert b.state() is State.CLOSED  # b never heard of it: no Redis
    assert await b.send("primary")
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 2  # one each
    redis_server.start()  # back, empty
    await until(lambda: a.shared.reachable and b.shared.reachable, "both back", timeout=10)
    # a's trip, made alone, was written back: b learns it.
    await until(lambda: a.state() is b.state() is State.OPEN, "a's trip at both")
    await a.send("backup")
    for _ in range(3):  # shared again: b's failures of the backup open it for a
        await b.send("backup", FAIL)
    await until(lambda: a.state("backup") is State.OPEN, "b's trip at a")
    # Switches too, though the empty Redis starts their generation over.
    served(b, "primary")
    await b.shared.drain()
    served(a, "backup")
    await until(lambda: len(a.announced) == len(b.announced) == 2, "a new switch at both")


async def test_a_late_instance_picks_up_an_open_breaker(redis_server: RedisServer) -> None:
    a = Instance(redis_server.url, "a")
    await until(lambda: a.shared.reachable, "a in sync")
    for _ in range(3):
        await a.send("primary", FAIL)
    late = Instance(redis_server.url, "late")
    try:
        await until(lambda: late.shared.reachable, "late in sync")
        assert late.state() is State.OPEN
        assert late.engine.router.breaker("claude", "primary").reopens_at() is not None
    finally:
        await a.stop()
        await late.stop()


async def test_redis_down_local_policy_forgets_what_others_opened(
    redis_server: RedisServer,
) -> None:
    a = Instance(redis_server.url, "a")
    b = Instance(redis_server.url, "b", down="local")
    try:
        await until(lambda: a.shared.reachable and b.shared.reachable, "both in sync")
        for _ in range(3):
            await a.send("primary", FAIL)
        await until(lambda: b.state() is State.OPEN, "b to see it")
        redis_server.kill()
        await until(lambda: not b.shared.reachable, "b to notice", timeout=10)
        assert b.state() is State.CLOSED  # trusts its own breakers: it saw no failure
        assert a.state() is State.OPEN  # keep_open: stays open until its time runs out
    finally:
        await a.stop()
        await b.stop()


async def test_a_healthy_providers_successes_are_added_up_once_a_second(
    pair: tuple[Instance, Instance], redis_server: RedisServer
) -> None:
    a, _ = pair
    client = redis_server.client()
    await a.send("backup")  # proves it: recorded at once
    assert client.hget(key("t", "cb", "claude", "backup"), "proven") == "1"
    before = int(client.info("commandstats")["cmdstat_evalsha"]["calls"])
    for _ in range(20):
        await a.send("backup")
    # Not one script call each: at most the once-a-second flush ran in between.
    assert int(client.info("commandstats")["cmdstat_evalsha"]["calls"]) <= before + 1
    window = key("t", "w", "claude", "backup")

    def counted() -> int:
        return sum(int(client.hget(k, "n") or 0) for k in client.scan_iter(window + "*"))

    await until(lambda: counted() == 21, "the successes in the shared window", timeout=5)
    client.close()


async def test_no_switch_is_tried_within_the_hold_down(
    pair: tuple[Instance, Instance], redis_server: RedisServer
) -> None:
    a, b = pair
    served(a, "backup")
    await until(lambda: a.announced and b.announced, "the switch at both")
    client = redis_server.client()
    before = int(client.info("commandstats")["cmdstat_evalsha"]["calls"])
    for _ in range(5):
        served(b, "primary")  # within 5 s of the switch: held back, not even asked
    await b.shared.drain()
    assert int(client.info("commandstats")["cmdstat_evalsha"]["calls"]) == before
    assert b.engine.switches.active("claude") == "backup"
    client.close()


async def test_route_traffic_leaves_the_fleets_active_provider_alone(
    pair: tuple[Instance, Instance], redis_server: RedisServer
) -> None:
    a, b = pair
    a.engine.request_done(
        Finished("claude", "backup", [], skipped=["primary: open"], total_ms=1.0, route="small")
    )
    await a.shared.drain()
    client = redis_server.client()
    assert not client.exists(key("t", "active", "claude"))  # no switch was even asked for
    client.close()
    assert a.engine.router.route_active[("claude", "small")] == "backup"
    served(a, "backup")  # the app's own queue failing over is the fleet's switch, as before
    await until(lambda: a.announced and b.announced, "the switch at both")
    assert [(e.from_, e.to) for e in a.announced] == [("primary", "backup")]


async def test_a_reload_that_moves_the_queues_head_is_no_switch_of_the_fleet(
    pair: tuple[Instance, Instance], monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("ccswitch_addon.state.shared", "ccswitch_addon.state.fleet_view"):
        monkeypatch.setattr(f"{module}.SWITCH_MIN_INTERVAL_MS", 0)  # no hold-down to hide it
    a, b = pair
    served(a, "backup")
    await until(lambda: len(a.announced) == len(b.announced) == 1, "the failover at both")
    a.engine.request_done(Finished("claude", "primary", [], total_ms=1.0))
    await until(lambda: len(a.announced) == len(b.announced) == 2, "the failback at both")
    swapped = parse_config(CONFIG.replace("[primary, backup]", "[backup, primary]"), "p.yaml")
    for instance in (a, b):
        instance.engine.reload(swapped)
    await a.shared.drain()
    await b.shared.drain()
    b.engine.request_done(Finished("claude", "backup", [], total_ms=1.0))
    await b.shared.drain()
    await a.shared.refresh()
    await b.shared.refresh()
    assert len(a.announced) == len(b.announced) == 2
    assert a.engine.switches.active("claude") == b.engine.switches.active("claude") == "backup"
