"""Team gateway: two real mitmdump instances sharing one real redis-server, one failing fake
primary. Failures count across the fleet, one switch event per change, one half-open probe,
failback seen by both, Redis killed and back, a restarted instance picks up an open breaker."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_server import RedisServer

from .fakes import FakeProvider, error, ok_json, slow_first_byte
from .proxy import Proxy, concurrent, wait_until
from .test_routing import claude_config, provider_status, send, start, status

pytestmark = pytest.mark.e2e

PREFIX = "e2e"
CB = f"{PREFIX}:{{claude:primary}}:cb"
SWITCHED = "ccswitch switch: claude: primary → backup"
FAILED_BACK = "ccswitch switch: claude: backup → primary"


def instance(
    make_proxy: Callable[..., Proxy], config: str, url: str, tmp_path: Path, name: str
) -> Proxy:
    proxy = start(
        make_proxy,
        config,
        state=tmp_path / f"{name}.db",
        extra=["--set", f"ccswitch_redis={url}", "--set", f"ccswitch_redis_prefix={PREFIX}"],
    )
    wait_until(lambda: status(proxy)["redis"]["reachable"], 10, f"{name} in sync with Redis")
    return proxy


def state_of(proxy: Proxy) -> str:
    return str(provider_status(proxy, "primary")["state"])


def shared_field(client: redis.Redis, field: str) -> Any:
    return client.hget(CB, field)


def test_two_instances_share_breaker_switch_probe_and_failback(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    config = claude_config(primary.url, backup.url, failure_threshold=3, open_seconds=600)
    a = instance(make_proxy, config, redis_server.url, tmp_path, "a")
    b = instance(make_proxy, config, redis_server.unix_url, tmp_path, "b")
    client = redis_server.client()

    # The outage: a, b, a — three failures in total open the primary for both.
    for n, proxy in enumerate([a, b, a], start=1):
        reply = send(proxy)
        assert reply.status == 200
        assert reply.headers["x-ccswitch-provider"] == "backup"
        wait_until(
            lambda n=n: (
                shared_field(client, "state") == "open" or shared_field(client, "fails") == str(n)
            ),
            5,
            f"failure {n} in Redis",
        )
    assert len(primary.requests) == 3  # failure_threshold in total, not per instance
    assert shared_field(client, "state") == "open"
    wait_until(lambda: state_of(b) == "open", 5, "b to see the open breaker")
    reply = send(b)
    assert reply.headers["x-ccswitch-provider"] == "backup"
    assert reply.headers["x-ccswitch-attempts"] == "1"  # the primary was not tried
    assert len(primary.requests) == 3
    assert provider_status(b, "primary")["changed_by"] == status(a)["instance"]

    # One switch event, in both logs.
    for proxy in (a, b):
        proxy.wait_for_output(SWITCHED)
        assert status(proxy)["apps"]["claude"]["active"] == "backup"

    # The open time ends (its deadline moved to now in Redis): one probe across both,
    # under load on both; the probe is slow, so every other request meets it in flight.
    primary.default = ok_json()
    primary.queue(slow_first_byte(1.5, ok_json()))
    client.hset(CB, "open_until", 0)
    for proxy in (a, b):
        wait_until(lambda proxy=proxy: state_of(proxy) == "half_open", 5, "half_open at both")
    before = len(primary.requests)
    replies = concurrent(lambda i: send(a if i % 2 else b), 10)
    assert [r.status for r in replies] == [200] * 10
    assert len(primary.requests) - before == 1  # exactly one half-open probe
    assert sorted(r.headers["x-ccswitch-provider"] for r in replies).count("primary") == 1

    # Failback, seen by both: closed everywhere, one switch back in each log.
    for proxy in (a, b):
        wait_until(lambda proxy=proxy: state_of(proxy) == "closed", 5, "closed at both")

    def failed_back() -> bool:
        for proxy in (a, b):
            assert send(proxy).headers["x-ccswitch-provider"] == "primary"
        return all(FAILED_BACK in proxy.output() for proxy in (a, b))

    wait_until(failed_back, 20, "the failback event at both")  # after the 5 s hold-down
    for proxy in (a, b):
        assert proxy.output().count(SWITCHED) == 1
        assert proxy.output().count(FAILED_BACK) == 1
        assert status(proxy)["apps"]["claude"]["active"] == "primary"
    client.close()


def test_redis_killed_mid_run_then_back_and_a_restarted_instance(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    config = claude_config(primary.url, backup.url, failure_threshold=2, open_seconds=600)
    a = instance(make_proxy, config, redis_server.url, tmp_path, "a")
    b = instance(make_proxy, config, redis_server.url, tmp_path, "b")

    redis_server.kill()
    for proxy in (a, b):
        wait_until(lambda proxy=proxy: not status(proxy)["redis"]["reachable"], 10, "noticed")
        reply = send(proxy)  # routing goes on, on local state
        assert (reply.status, reply.headers["x-ccswitch-provider"]) == (200, "primary")
    primary.default = error(529)
    for _ in range(2):
        assert send(a).headers["x-ccswitch-provider"] == "backup"
    assert state_of(a) == "open"  # a's own breaker
    assert state_of(b) == "closed"  # b could not hear of it
    for proxy in (a, b):
        assert proxy.output().count("unreachable") == 1  # one warning each

    redis_server.start()  # back, and empty
    for proxy in (a, b):
        proxy.wait_for_output("reachable again", 10)
    # Converged: both follow Redis again; failures through b now open it for a as well.
    wait_until(lambda: state_of(a) == state_of(b), 5, "the same state at both")
    hits = len(primary.requests)
    for _ in range(2):
        send(b)
    assert len(primary.requests) - hits <= 2
    wait_until(lambda: state_of(a) == state_of(b) == "open", 5, "open at both")

    # A restarted instance (with a fresh state file) picks the open breaker up from Redis.
    b.stop()
    fresh = instance(make_proxy, config, redis_server.url, tmp_path, "fresh")
    assert state_of(fresh) == "open"
    hits = len(primary.requests)
    assert send(fresh).headers["x-ccswitch-provider"] == "backup"
    assert len(primary.requests) == hits


def test_a_fresh_instance_joining_an_outage_sends_nothing_to_the_open_primary(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    config = claude_config(primary.url, backup.url, failure_threshold=3, open_seconds=600)
    a = instance(make_proxy, config, redis_server.url, tmp_path, "a")
    for _ in range(3):
        send(a)
    wait_until(lambda: state_of(a) == "open", 5, "the primary open for the fleet")
    hits = len(primary.requests)
    extra = [
        "--set",
        f"ccswitch_redis={redis_server.url}",
        "--set",
        f"ccswitch_redis_prefix={PREFIX}",
    ]
    fresh = start(make_proxy, config, state=tmp_path / "fresh.db", extra=extra)
    # Requests as soon as its port opens: held until its first read of Redis, not routed
    # to the primary the fleet has open.
    replies = concurrent(lambda i: send(fresh), 6)
    assert [r.headers["x-ccswitch-provider"] for r in replies] == ["backup"] * 6
    assert len(primary.requests) == hits
    assert status(fresh)["redis"]["reachable"] is True


def test_a_stall_that_starts_with_the_outage_costs_the_fleet_little_and_everyone_comes_back(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    config = claude_config(primary.url, backup.url, failure_threshold=3, open_seconds=600)
    proxies = [instance(make_proxy, config, redis_server.url, tmp_path, n) for n in "ab"]
    for proxy in proxies:
        assert send(proxy).headers["x-ccswitch-provider"] == "primary"  # proven
    hits = len(primary.requests)
    stop = threading.Event()
    codes: list[int] = []

    def load(proxy: Proxy) -> None:  # each instance gets requests one after another
        while not stop.is_set():
            codes.append(send(proxy).status)

    assert redis_server.process is not None
    primary.default = error(529)  # the outage and the stall start together
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    threads = [threading.Thread(target=load, args=(p,)) for p in proxies]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)  # the stall itself, under load: the test's doing, not a wait
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    try:
        for proxy in proxies:
            wait_until(lambda p=proxy: status(p)["redis"]["reachable"], 10, "back in sync")
        wait_until(
            lambda: redis.Redis(port=redis_server.port).hget(CB, "state") == b"open",
            5,
            "the primary open in Redis",
        )
        time.sleep(1.0)  # more load after the stall: none of it may reach the primary
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert set(codes) == {200}
    # Alone, each instance opened it after failure_threshold of its own: at most that many
    # each, and nothing more once they were back.
    assert len(primary.requests) - hits <= 2 * 3
    for proxy in proxies:
        if "unreachable" in proxy.output():
            proxy.wait_for_output("reachable again; in sync", 5)
        assert state_of(proxy) == "open"


def test_a_stall_during_the_half_open_probe_does_not_keep_the_fleet_off_the_primary(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    config = claude_config(primary.url, backup.url, failure_threshold=2, open_seconds=600)
    a = instance(make_proxy, config, redis_server.url, tmp_path, "a")
    b = instance(make_proxy, config, redis_server.url, tmp_path, "b")
    for _ in range(2):
        send(a)
    wait_until(lambda: state_of(b) == "open", 5, "open at b")
    primary.default = ok_json()  # healed; its open time ends now
    client = redis_server.client()
    client.hset(CB, "open_until", 0)
    wait_until(lambda: state_of(a) == state_of(b) == "half_open", 5, "half-open at both")
    assert redis_server.process is not None
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        # The probe's acquire times out on a, and Redis runs it when the stall ends.
        assert send(a).status == 200
        time.sleep(0.8)  # the rest of the stall: the test's doing, not a wait
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)

    def back_on_primary() -> bool:
        return all(send(p).headers["x-ccswitch-provider"] == "primary" for p in (b, a))

    # Within seconds, not after a lease of minutes.
    wait_until(back_on_primary, 15, "the fleet back on the healed primary")
    assert shared_field(client, "state") == "closed"
    client.close()


def test_an_empty_restart_fails_back_once_with_the_right_status(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    config = claude_config(primary.url, backup.url, failure_threshold=2, open_seconds=600)
    a = instance(make_proxy, config, redis_server.url, tmp_path, "a")
    b = instance(make_proxy, config, redis_server.url, tmp_path, "b")
    for _ in range(2):
        send(a)
    for proxy in (a, b):
        wait_until(lambda p=proxy: state_of(p) == "open", 5, "open at both")
        send(proxy)
        proxy.wait_for_output(SWITCHED)
    redis_server.kill()
    for proxy in (a, b):
        wait_until(lambda p=proxy: not status(p)["redis"]["reachable"], 10, "noticed")
    redis_server.start()  # empty
    for proxy in (a, b):
        proxy.wait_for_output("reachable again; in sync", 10)
    client = redis_server.client()
    wait_until(lambda: shared_field(client, "state") == "open", 5, "re-seeded open")
    for proxy in (a, b):
        assert send(proxy).headers["x-ccswitch-provider"] == "backup"
    # The primary heals and its open time ends: one failback, at both, in their status too.
    primary.default = ok_json()
    client.hset(CB, "open_until", 0)

    def failed_back() -> bool:
        for proxy in (a, b):
            send(proxy)
        return all(FAILED_BACK in proxy.output() for proxy in (a, b))

    wait_until(failed_back, 20, "the failback event at both")
    for proxy in (a, b):
        assert proxy.output().count(SWITCHED) == 1  # not announced again after the restart
        assert proxy.output().count(FAILED_BACK) == 1
        assert status(proxy)["apps"]["claude"]["active"] == "primary"
    client.close()
