"""The team gateway's Lua scripts against a real redis-server: transitions on Redis's clock,
the probe lease (two scripts racing for it), shared admission and window, the switch CAS."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis_server import RedisServer

from ccswitch_addon.state.redis_calls import SCRIPTS
from ccswitch_addon.state.redis_calls import script_text as _script
from ccswitch_addon.state.shared import KEEP_MS, key

P = "t"
APP, PID = "claude", "primary"
CB = key(P, "cb", APP, PID)
INFLIGHT = key(P, "inflight", APP, PID)
EVENTS = key(P, "events")
CHANNEL = key(P, "channel")


class Scripts:
    """One instance's view: the scripts called as state/shared.py calls them."""

    def __init__(self, client: redis.Redis, me: str) -> None:
        self.client = client
        self.me = me
        self.s = {n: client.register_script(_script(n)) for n in SCRIPTS}

    def _run(self, name: str, keys: list[str], args: list[Any]) -> dict[str, Any]:
        reply: dict[str, Any] = json.loads(self.s[name](keys=keys, args=args))
        return reply

    def acquire(
        self, token: str, hold: bool = True, threshold: int = 3, valid_until: int = 0
    ) -> dict[str, Any]:
        args = [self.me, CHANNEL, APP, PID, token, 60_000, 1 if hold else 0, threshold]
        return self._run("acquire", [CB, INFLIGHT, EVENTS], [*args, KEEP_MS, 60_000, valid_until])

    def confirm(self, token: str) -> dict[str, Any]:
        return self._run("confirm", [CB, INFLIGHT], [token, KEEP_MS])

    def record(
        self,
        effect: str,
        token: str = "",
        *,
        threshold: int = 3,
        successes: int = 1,
        open_ms: int = 60_000,
        rate: float = 1.0,
        min_requests: int = 100,
        cooldown_ms: int = 0,
        opens_now: bool = False,
    ) -> dict[str, Any]:
        args = [
            self.me, CHANNEL, APP, PID, token, effect, 1 if opens_now else 0, 0,
            threshold, successes, open_ms, 1_800_000, rate, min_requests, 120_000, 0,
            cooldown_ms, "Retry-After" if cooldown_ms else "", KEEP_MS, 0.5,
            key(P, "w", APP, PID),
        ]  # fmt: skip
        return self._run("record", [CB, INFLIGHT, EVENTS], args)

    def tally(self, successes: int) -> dict[str, Any]:
        return self._run("tally", [CB], [key(P, "w", APP, PID), 120_000, successes])

    def reset(self, mode: str = "reset") -> dict[str, Any]:
        return self._run(
            "reset", [CB, INFLIGHT, EVENTS], [self.me, CHANNEL, APP, PID, mode, KEEP_MS]
        )

    def served(
        self, to: str, gen: int, baseline: str = "primary", mode: str = "cas", decided: int = 0
    ) -> dict[str, Any]:
        args = [self.me, CHANNEL, APP, to, gen, baseline, "after primary: 529", 0, mode, decided]
        return self._run("served", [key(P, "active", APP), EVENTS], args)

    def release(self, token: str) -> dict[str, Any]:
        return self._run("release", [CB, INFLIGHT], [token, KEEP_MS])

    def writeback(self, open_ms: int, decided: int, trips: int = 1) -> dict[str, Any]:
        args = [self.me, CHANNEL, APP, PID, open_ms, decided, trips, KEEP_MS]
        return self._run("writeback", [CB, EVENTS], args)


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis_server.client()
    yield c
    c.close()


def events(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(fields["e"]) for _, fields in client.xrange(EVENTS)]  # type: ignore[union-attr]


def open_breaker(a: Scripts, threshold: int = 3) -> dict[str, Any]:
    reply: dict[str, Any] = {}
    for _ in range(threshold):
        reply = a.record("failure", threshold=threshold)
    return reply


def test_failures_from_two_instances_open_it_once_on_redis_time(client: redis.Redis) -> None:
    a, b = Scripts(client, "a"), Scripts(client, "b")
    assert a.record("failure")["b"]["state"] == "closed"
    assert b.record("failure")["b"]["state"] == "closed"
    reply = a.record("failure")
    breaker = reply["b"]
    assert breaker["state"] == "open"
    assert breaker["by"] == "a"
    assert breaker["open_until"] - reply["now"] == 60_000  # Redis's TIME, not a client clock
    assert breaker["gen"] >= reply["now"]  # generations follow the clock across restarts
    (event,) = events(client)
    assert (event["type"], event["from"], event["to"], event["by"]) == (
        "breaker",
        "closed",
        "open",
        "a",
    )
    # A failure while open does not count again: no second event.
    b.record("failure")
    assert len(events(client)) == 1
    ttl = client.pttl(CB)
    assert 60_000 + KEEP_MS - 5_000 < ttl <= 60_000 + KEEP_MS  # removed providers expire


def test_the_event_is_published_with_the_change(client: redis.Redis) -> None:
    pubsub = client.pubsub()
    pubsub.subscribe(CHANNEL)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
    open_breaker(Scripts(client, "a"))
    message = pubsub.get_message(timeout=5)
    assert message is not None
    published = json.loads(message["data"])
    assert published["to"] == "open"
    assert published["id"] == client.xrange(EVENTS)[0][0]  # type: ignore[index]
    pubsub.close()


def test_open_denies_until_its_time_then_one_probe(client: redis.Redis) -> None:
    a, b = Scripts(client, "a"), Scripts(client, "b")
    open_breaker(a)
    assert a.acquire("a:1")["ok"] == 0
    client.hset(CB, "open_until", 0)  # its time has run out
    first = b.acquire("b:1")
    assert (first["ok"], first["probe"], first["b"]["state"]) == (1, 1, "half_open")
    assert first["b"]["probe_owner"] == "b:1"
    assert a.acquire("a:2")["ok"] == 0  # the lease is b's
    assert b.acquire("b:2")["ok"] == 0  # one probe, not one per instance
    client.hset(CB, "probe_until", 0)  # b's lease expired: taken over
    assert a.acquire("a:3")["b"]["probe_owner"] == "a:3"


def test_two_scripts_race_for_the_probe_lease(redis_server: RedisServer) -> None:
    setup = redis_server.client()
    open_breaker(Scripts(setup, "setup"))
    setup.hset(CB, "open_until", 0)
    n = 16
    barrier = threading.Barrier(n)
    granted: list[str] = []
    lock = threading.Lock()

    def contend(i: int) -> None:
        c = redis_server.client()
        scripts = Scripts(c, f"i{i % 2}")  # two instances, several requests each
        barrier.wait(10)
        reply = scripts.acquire(f"i{i % 2}:{i}")
        if reply["ok"]:
            with lock:
                granted.append(f"i{i % 2}:{i}")
        c.close()

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(granted) == 1, granted
    assert setup.hget(CB, "probe_owner") == granted[0]
    transitions = [e["to"] for e in events(setup)]
    assert transitions == ["open", "half_open"]
    setup.close()


def test_probe_success_closes_failure_reopens_longer(client: redis.Redis) -> None:
    a, b = Scripts(client, "a"), Scripts(client, "b")
    open_breaker(a)
    client.hset(CB, "open_until", 0)
    b.acquire("b:1")
    assert a.record("success", "a:9")["b"]["state"] == "half_open"  # not the probe's owner
    reopened = b.record("failure", "b:1")
    assert reopened["b"]["state"] == "open"
    assert reopened["b"]["trips"] == 2
    assert reopened["b"]["open_until"] - reopened["now"] == 120_000  # doubled (jitter 0.5)
    client.hset(CB, "open_until", 0)
    a.acquire("a:2")
    closed = a.record("success", "a:2")["b"]
    assert (closed["state"], closed["proven"], closed["by"]) == ("closed", 1, "a")
    assert [e["to"] for e in events(client)][-1] == "closed"


def test_unproven_admission_counts_requests_of_every_instance(client: redis.Redis) -> None:
    a, b = Scripts(client, "a"), Scripts(client, "b")
    assert a.acquire("a:1")["ok"] == 1
    assert b.acquire("b:1")["ok"] == 1
    assert a.acquire("a:2")["ok"] == 1
    assert b.acquire("b:2")["ok"] == 0  # three unanswered: held
    assert b.acquire("b:2", hold=False)["ok"] == 1  # waited long enough: goes anyway
    a.record("failure", "a:1")  # an answer: one fewer out, but the limit is now 2
    assert client.zcard(INFLIGHT) == 3
    assert b.acquire("b:3")["ok"] == 0
    b.confirm("b:1")  # a success's headers: proven, everyone may go
    assert b.acquire("b:4")["ok"] == 1
    assert client.hget(CB, "proven") == "1"


def test_the_error_rate_window_is_shared(client: redis.Redis) -> None:
    a, b = Scripts(client, "a"), Scripts(client, "b")
    kw: dict[str, Any] = {"threshold": 100, "rate": 0.5, "min_requests": 4}
    a.record("success", **kw)
    b.record("failure", **kw)
    a.record("success", **kw)
    assert Scripts(client, "c").record("failure", **kw)["b"]["state"] == "open"  # 2 of 4


def test_cooldown_and_opens_now_and_reset(client: redis.Redis) -> None:
    a = Scripts(client, "a")
    cooled = a.record("failure", cooldown_ms=30_000)
    assert cooled["b"]["cool_until"] - cooled["now"] == 30_000
    assert cooled["b"]["cool_reason"] == "Retry-After"
    assert a.acquire("a:1")["ok"] == 0
    assert a.record("failure", opens_now=True)["b"]["state"] == "open"
    reset = a.reset()["b"]
    assert (reset["state"], reset["cool_until"], reset["trips"]) == ("closed", 0, 0)
    assert a.acquire("a:2")["ok"] == 1


def test_probe_ok_moves_open_to_half_open(client: redis.Redis) -> None:
    a = Scripts(client, "a")
    open_breaker(a)
    assert a.reset("probe_ok")["b"]["state"] == "half_open"
    assert a.acquire("a:1")["probe"] == 1


def test_switch_is_compare_and_set_on_its_generation(client: redis.Redis) -> None:
    a, b = Scripts(client, "a"), Scripts(client, "b")
    won = a.served("backup", 0)
    lost = b.served("backup", 0)
    assert won["switched"] is True
    assert lost["switched"] is False
    assert lost["active"]["provider"] == "backup"
    stale = b.served("other", 0)  # an old generation cannot move it
    assert stale["switched"] is False
    back = b.served("primary", won["active"]["gen"])
    assert back["switched"] is True
    switches = [(e["from"], e["to"], e["by"]) for e in events(client)]
    assert switches == [("primary", "backup", "a"), ("backup", "primary", "b")]


def test_tallied_successes_count_in_the_shared_window(client: redis.Redis) -> None:
    a, b = Scripts(client, "a"), Scripts(client, "b")
    kw: dict[str, Any] = {"threshold": 100, "rate": 0.5, "min_requests": 4}
    a.tally(3)  # three successes of a healthy provider, added up by a
    assert b.record("failure", **kw)["b"]["state"] == "closed"  # 1 of 4
    assert b.record("failure", **kw)["b"]["state"] == "closed"  # 2 of 5
    assert b.record("failure", **kw)["b"]["state"] == "open"  # 3 of 6


def test_release_gives_back_a_lease_or_an_admission_and_is_idempotent(
    client: redis.Redis,
) -> None:
    a, b = Scripts(client, "a"), Scripts(client, "b")
    open_breaker(a)
    client.hset(CB, "open_until", 0)
    assert a.acquire("a:1")["probe"] == 1
    assert b.acquire("b:1")["ok"] == 0  # the lease is a's
    assert a.release("a:1")["released"] is True
    assert a.release("a:1")["released"] is False  # twice: nothing more
    assert b.release("b:1")["released"] is False  # not its lease: nothing taken
    assert b.acquire("b:1")["probe"] == 1
    client.delete(CB)
    assert a.acquire("a:2", threshold=2)["ok"] == 1  # an unproven provider's admission
    assert client.zcard(INFLIGHT) == 1
    assert a.release("a:2")["released"] is True
    assert client.zcard(INFLIGHT) == 0


def test_an_acquire_run_after_its_caller_gave_up_takes_nothing(client: redis.Redis) -> None:
    a = Scripts(client, "a")
    open_breaker(a)
    client.hset(CB, "open_until", 0)
    now = int(client.time()[0]) * 1000
    late = a.acquire("a:1", valid_until=now - 1000)  # as after a stall longer than its wait
    assert (late["ok"], late["late"]) == (0, 1)
    assert not client.hget(CB, "probe_owner")
    assert a.acquire("a:2", valid_until=now + 60_000)["probe"] == 1


def test_a_probe_lease_runs_to_the_end_of_its_request_once_it_answers(
    client: redis.Redis,
) -> None:
    a = Scripts(client, "a")
    open_breaker(a)
    client.hset(CB, "open_until", 0)
    taken = a.acquire("a:1")
    assert taken["b"]["probe_until"] - taken["now"] <= 60_000
    confirmed = a._run("confirm", [CB, INFLIGHT], ["a:1", KEEP_MS, 600_000])
    assert confirmed["b"]["probe_until"] - confirmed["now"] == 600_000
    other = a._run("confirm", [CB, INFLIGHT], ["a:2", KEEP_MS, 900_000])  # not the owner
    assert other["b"]["probe_until"] == confirmed["b"]["probe_until"]


def test_writeback_opens_only_what_the_fleet_has_not_moved_on_from(client: redis.Redis) -> None:
    a, b = Scripts(client, "a"), Scripts(client, "b")
    now = int(client.time()[0]) * 1000
    # An emptied Redis takes an instance's open breaker (decided 0: only into a missing key).
    seeded = a.writeback(30_000, 0, trips=2)
    assert seeded["written"] is True
    assert (seeded["b"]["state"], seeded["b"]["trips"]) == ("open", 2)
    assert b.writeback(30_000, 0)["written"] is False  # there now: the first one wins
    b.reset()  # the fleet closed it after that
    assert a.writeback(30_000, now - 10_000)["written"] is False  # decided before the reset
    assert a.writeback(30_000, now + 60_000)["written"] is True  # decided after it
    assert [e["to"] for e in events(client)] == ["open", "closed", "open"]


def test_seed_and_reconcile_of_the_active_provider(client: redis.Redis) -> None:
    a, b = Scripts(client, "a"), Scripts(client, "b")
    seeded = a.served("backup", 0, mode="seed")
    assert (seeded["switched"], seeded["active"]["provider"]) == (False, "backup")
    assert b.served("other", 0, mode="seed")["active"]["provider"] == "backup"  # first wins
    assert events(client) == []  # nobody switched
    now = int(client.time()[0]) * 1000
    # A switch made alone before the fleet's last one yields; one made after it wins.
    assert b.served("primary", 0, mode="reconcile", decided=now + 60_000)["switched"] is True
    assert a.served("backup", 0, mode="reconcile", decided=1)["switched"] is False
    assert [(e["from"], e["to"]) for e in events(client)] == [("backup", "primary")]
