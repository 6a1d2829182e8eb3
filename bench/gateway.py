"""Team gateway: what sharing breakers through Redis costs and how fast it spreads.

    python bench/gateway.py [--requests 2000] [--trips 20]

On loopback, with a real redis-server of its own and the e2e harness's fake provider and
mitmdump (reverse mode, plain HTTP, one kept-alive client connection):

- latency per request through mitmdump + addon without Redis and with ``ccswitch_redis``
  (rounds interleaved; p50 and p99 of each, and their difference);
- Redis commands per request: the scripts' calls (EVALSHA) and every command Redis ran,
  the instance's idle background (one re-read a second) measured apart and subtracted
  (a healthy provider's successes are added up and sent once a second, so both are near 0);
- CPU per request of the engine's request path in process, with and without the gateway
  (steadier than the proxies' latency on a shared machine; ``--same`` runs the proxies
  A/A to show how far two identical ones differ);
- publish to seen: a breaker opened through instance A, until instance B logs the change
  (B's log line time minus the event's Redis time; same host clock);
- under a Redis stall (SIGSTOP for 1 s, three instances each under sequential load): the
  time from the end of the stall until every instance is back in sync (its "reachable
  again" log line; 0 for one that never noticed), and the requests the fleet sent to a
  primary that starts failing with the stall (failure_threshold 3), over ``--stalls`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from e2e.fakes import FakeProvider, error, ok_json  # noqa: E402
from e2e.proxy import Proxy, Session, request, wait_until  # noqa: E402
from redis_server import RedisServer  # noqa: E402

from ccswitch_addon.core.config import parse_config  # noqa: E402
from ccswitch_addon.core.outcome import SUCCESS  # noqa: E402
from ccswitch_addon.engine import Engine, Finished  # noqa: E402
from ccswitch_addon.state.shared import SharedState  # noqa: E402

CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    breaker: {{failure_threshold: 1, open_seconds: 600}}
    providers:
      primary: {{base_url: "{primary}", auth: passthrough}}
      backup: {{base_url: "{backup}", auth: passthrough}}
"""
BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "x"}],
}
HEADERS = {"x-api-key": "bench", "anthropic-version": "2023-06-01"}
BREAKER_LINE = re.compile(
    r"^\[(\d\d:\d\d:\d\d\.\d\d\d)\].*ccswitch breaker claude:primary \w+ → open", re.M
)
CLOSED_LINE = re.compile(r"ccswitch breaker claude:primary \w+ → closed")
BACK_LINE = re.compile(r"^\[(\d\d:\d\d:\d\d\.\d\d\d)\].*reachable again; in sync", re.M)
STALL_SECONDS = 1.0
MESSAGES = "https://api.anthropic.com/v1/messages"
ROUND = 100


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def proxy(tmp: Path, config: str, name: str, redis_url: str | None, reverse: bool = True) -> Proxy:
    extra = ["--set", f"ccswitch_redis={redis_url}"] if redis_url else []
    p = Proxy(
        tmp,
        config,
        mode="reverse:https://api.anthropic.com" if reverse else None,
        state=tmp / f"{name}.db",
        extra=[*extra, "--set", "termlog_verbosity=info"],
    ).start()
    if redis_url:
        wait_until(lambda: "team gateway on Redis" in p.output(), 10, f"{name} in sync")
    return p


def commands(client: Any) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def latency(
    args: argparse.Namespace, tmp: Path, config: str, server: RedisServer
) -> dict[str, Any]:
    off = proxy(tmp, config, "off", None)
    # --same: both without Redis, to see how far two identical proxies differ on this machine
    on = proxy(tmp, config, "on", None if args.same else server.url)
    client = server.client()
    times: dict[str, list[float]] = {"off": [], "on": []}
    sessions = {"off": Session(None, off.url), "on": Session(None, on.url)}
    for session in sessions.values():  # warm up; proves the primary
        for _ in range(50):
            assert session.request("POST", "/v1/messages", json=BODY, headers=HEADERS).status == 200
    # The on-instance's background: its once-a-second re-read, with no requests.
    idle_before, idle_started = commands(client), time.monotonic()
    time.sleep(3.0)  # a measured idle window, not a wait for anything
    idle = delta(commands(client), idle_before)
    idle_seconds = time.monotonic() - idle_started
    before, started = commands(client), time.monotonic()
    for r in range(args.requests // ROUND):
        for name in ("off", "on") if r % 2 else ("on", "off"):
            session = sessions[name]
            for _ in range(ROUND):
                t0 = time.perf_counter()
                reply = session.request("POST", "/v1/messages", json=BODY, headers=HEADERS)
                times[name].append((time.perf_counter() - t0) * 1000)
                assert reply.status == 200
    used = delta(commands(client), before)
    seconds = time.monotonic() - started
    background = sum(idle.values()) / idle_seconds * seconds
    served = len(times["on"])
    for session in sessions.values():
        session.close()
    off.stop()
    on.stop()
    client.close()
    result: dict[str, Any] = {
        name: {"p50_ms": round(pct(v, 0.5), 3), "p99_ms": round(pct(v, 0.99), 3)}
        for name, v in times.items()
    }
    result["added"] = {
        "p50_ms": round(result["on"]["p50_ms"] - result["off"]["p50_ms"], 3),
        "p99_ms": round(result["on"]["p99_ms"] - result["off"]["p99_ms"], 3),
    }
    result["redis"] = {
        "requests": served,
        "evalsha_per_request": round(used.get("evalsha", 0) / served, 3),
        "commands_per_request": round((sum(used.values()) - background) / served, 2),
        "commands_by_name": used,
        "idle_commands_per_second": round(sum(idle.values()) / idle_seconds, 1),
    }
    return result


def publish_to_seen(
    args: argparse.Namespace, tmp: Path, config: str, server: RedisServer
) -> dict[str, Any]:
    a = proxy(tmp, config, "a", server.url, reverse=False)  # explicit: ccswitch.local works
    b = proxy(tmp, config, "b", server.url, reverse=False)
    client = server.client()
    seen: list[float] = []
    for _ in range(args.trips):
        mark = len(b.output())
        request(a, "POST", MESSAGES, json=BODY, headers=HEADERS)  # a 529 opens it
        line = b.wait_for_output(BREAKER_LINE, 10, since=mark)
        stamp = BREAKER_LINE.match(line.strip())
        assert stamp is not None, line
        # The newest breaker opening: the switch it causes may be published just after it.
        recent = [json.loads(f["e"]) for _, f in client.xrevrange("ccsw:events", count=10)]
        event = next(e for e in recent if e.get("type") == "breaker" and e["to"] == "open")
        published = datetime.datetime.fromtimestamp(event["ts"] / 1000)
        logged = datetime.datetime.combine(
            published.date(), datetime.time.fromisoformat(stamp.group(1))
        )
        seen.append((logged - published).total_seconds() * 1000)
        mark = len(b.output())
        reset = {"app": "claude", "provider": "primary"}
        token = request(a, "GET", "http://ccswitch.local/token").json()["token"]
        headers = {"content-type": "application/json", "x-ccswitch-token": token}
        reply = request(a, "POST", "http://ccswitch.local/reset", json=reset, headers=headers)
        assert reply.status == 200, reply
        b.wait_for_output(CLOSED_LINE, 10, since=mark)
    a.stop()
    b.stop()
    client.close()
    return {
        "trips": len(seen),
        "p50_ms": round(statistics.median(seen), 1),
        "max_ms": round(max(seen), 1),
        "note": "log timestamps have 1 ms resolution",
    }


def _reset_primary(proxies: list[Proxy], primary: FakeProvider) -> None:
    """Healthy and closed everywhere, proven through every instance: the next run's start."""
    primary.default = ok_json()
    a = proxies[0]
    token = request(a, "GET", "http://ccswitch.local/token").json()["token"]
    headers = {"content-type": "application/json", "x-ccswitch-token": token}
    reset = {"app": "claude", "provider": "primary"}
    assert (
        request(a, "POST", "http://ccswitch.local/reset", json=reset, headers=headers).status == 200
    )

    def closed_everywhere() -> bool:
        for p in proxies:
            reply = request(p, "POST", MESSAGES, json=BODY, headers=HEADERS)
            if reply.headers.get("x-ccswitch-provider") != "primary":
                return False
        return True

    wait_until(closed_everywhere, 20, "the primary closed and proven at every instance")


def _stalled_run(
    server: RedisServer, proxies: list[Proxy], primary: FakeProvider, outage: bool
) -> tuple[list[float], int]:
    """One 1 s stall under load: (ms from its end until each instance that noticed it is
    back, requests the primary got)."""
    assert server.process is not None
    marks = [len(p.output()) for p in proxies]
    hits = len(primary.requests)
    stop = threading.Event()

    def load(p: Proxy) -> None:
        while not stop.is_set():
            request(p, "POST", MESSAGES, json=BODY, headers=HEADERS)

    threads = [threading.Thread(target=load, args=(p,)) for p in proxies]
    if outage:
        primary.default = error(529)
    os.kill(server.process.pid, signal.SIGSTOP)
    for t in threads:
        t.start()
    try:
        time.sleep(STALL_SECONDS)  # the stall itself, under load
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        resumed = datetime.datetime.now()
    back: list[float] = []
    try:
        time.sleep(STALL_SECONDS)  # as long again after it: what the fleet still sends
        for p, mark in zip(proxies, marks, strict=True):
            if "unreachable" not in p.output()[mark:]:
                continue  # it never noticed (no call of its own fell in the stall)
            line = p.wait_for_output(BACK_LINE, 20, since=mark)
            stamp = BACK_LINE.match(line.strip())
            assert stamp is not None, line
            logged = datetime.datetime.combine(
                resumed.date(), datetime.time.fromisoformat(stamp.group(1))
            )
            back.append((logged - resumed).total_seconds() * 1000)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    return back, len(primary.requests) - hits


def under_stalls(args: argparse.Namespace, tmp: Path, server: RedisServer) -> dict[str, Any]:
    primary, backup = FakeProvider("primary").start(), FakeProvider("backup").start()
    config = CONFIG.format(primary=primary.url, backup=backup.url).replace(
        "failure_threshold: 1", "failure_threshold: 3"
    )
    primary.default = ok_json()
    proxies = [proxy(tmp, config, f"s{i}", server.url, reverse=False) for i in range(3)]
    try:
        _reset_primary(proxies, primary)
        back: list[float] = []
        noticed, sent = [], []
        for _ in range(args.stalls):
            for outage in (False, True):
                times, hits = _stalled_run(server, proxies, primary, outage)
                back.extend(times)
                noticed.append(len(times))
                if outage:
                    sent.append(hits)
                _reset_primary(proxies, primary)
    finally:
        for p in proxies:
            p.stop()
        primary.stop()
        backup.stop()
    return {
        "instances": len(proxies),
        "stall_seconds": STALL_SECONDS,
        # over the instances that noticed the stall, in every run (healthy, then with the
        # outage): a healthy load makes few Redis calls, so some never notice
        "back_in_sync_ms": {
            "median": round(statistics.median(back)) if back else None,
            "max": round(max(back)) if back else None,
            "noticed": noticed,
        },
        "primary_requests_in_outage": {
            "failure_threshold": 3,
            "median": statistics.median(sent),
            "max": max(sent),
            "runs": sent,
        },
    }


async def _engine_loop(engine: Any, n: int) -> float:
    """CPU µs per request of the engine's request path: select, acquire, admit, confirm,
    record, done — what the proxy's hooks call, without the proxy."""
    router = engine.router
    started = time.process_time()
    for _ in range(n):
        pid = router.select_providers("claude").providers[0].id
        permit = await engine.admit("claude", pid, router.acquire("claude", pid))
        router.confirm("claude", pid, permit)
        router.record_result("claude", pid, SUCCESS, permit)
        engine.request_done(Finished("claude", pid, [], total_ms=1.0))
        await asyncio.sleep(0)  # let the gateway's tasks run, as the proxy's loop would
    return (time.process_time() - started) / n * 1e6


async def in_process(server: RedisServer, config: str, n: int = 5000) -> dict[str, Any]:
    """The same request path with and without the gateway, in one process, interleaved."""
    plain = Engine(parse_config(config, "p.yaml", env={}))
    shared = Engine(parse_config(config, "p.yaml", env={}))
    gateway = SharedState(shared, server.url)
    task = asyncio.get_running_loop().create_task(gateway.run())
    deadline = time.monotonic() + 10
    while not gateway.reachable:
        assert time.monotonic() < deadline, "the gateway did not reach Redis"
        await asyncio.sleep(0.01)
    off, on = [], []
    for _ in range(5):
        off.append(await _engine_loop(plain, n))
        on.append(await _engine_loop(shared, n))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return {
        "off_us": round(statistics.median(off), 1),
        "on_us": round(statistics.median(on), 1),
        "added_us": round(statistics.median(b - a for a, b in zip(off, on, strict=True)), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per proxy (default 2000)")
    parser.add_argument("--trips", type=int, default=20, help="breaker openings timed")
    parser.add_argument("--stalls", type=int, default=3, help="stall runs of each kind")
    parser.add_argument(
        "--same", action="store_true", help="latency only, both proxies without Redis (A/A)"
    )
    args = parser.parse_args(argv)
    server = RedisServer().start()
    primary, backup = FakeProvider("primary").start(), FakeProvider("backup").start()
    try:
        with tempfile.TemporaryDirectory(prefix="ccsw-gw-bench-") as name:
            tmp = Path(name)
            config = CONFIG.format(primary=primary.url, backup=backup.url)
            primary.default = ok_json()
            results = {"latency": latency(args, tmp, config, server)}
            if not args.same:
                results["engine_cpu_per_request"] = asyncio.run(in_process(server, config))
            primary.default = error(529)
            if not args.same:
                results["publish_to_seen"] = publish_to_seen(args, tmp, config, server)
                results["redis_stall"] = under_stalls(args, tmp, server)
    finally:
        primary.stop()
        backup.stop()
        server.stop()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
