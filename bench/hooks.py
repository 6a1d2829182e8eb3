"""The addon's own work per request, in process: its hooks and its relay, over pre-made flows.

    python bench/hooks.py [--log] [--map] [--routes]      # CPU µs per request, hooks on − off
    python bench/hooks.py --instructions [--log] [--map]  # instructions per request (valgrind)
    python bench/hooks.py --cost                          # cost accounting and metrics alone

A routed request that asks for a whole answer costs the addon two things: the request hook
(which serves it: the pooled provider client sends it to the provider and reads the answer,
the outcome is recorded, the answer becomes the flow's response) and the response hook (the
flow commented). This script does exactly that on a 1 KB Anthropic request, in one process
and one event loop, with the fake provider (bench/fakes.py) in a process of its own so that
its work is not counted. With the hooks off, what mitmproxy does is played by a raw
keep-alive HTTP/1.1 client (bench/loadclient.py) that sends the tool's request straight to
the provider, as bare mitmdump would. (A stream goes through the relay instead;
instructions.py --sse counts that path.) The
difference in this process's CPU time per request is the addon's work, without mitmproxy's
dispatch and its client side (bench/instructions.py has both).

``--instructions`` runs this script twice under ``valgrind --tool=cachegrind`` (the fake runs
natively: valgrind does not follow children), hooks on and hooks off, and divides the
difference by the requests: a figure far steadier than time on a shared machine, for
judging a change to the hot path in a minute. ``--log`` writes the request log (its writer
thread included), ``--map`` adds a model mapping. (No cProfile here: this folder's profile.py
would shadow the standard library's module it imports; bench/profile.py samples a real proxy.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mitmproxy import http  # noqa: TID251 - drives the addon's hooks
from mitmproxy.addons import proxyserver  # noqa: TID251
from mitmproxy.test import taddons, tflow  # noqa: TID251
from mitmproxy.utils import asyncio_utils  # noqa: TID251

from ccswitch_addon.addon import CcSwitch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench
from fakes import OK_BODY as RESPONSE
from loadclient import Conn

WARMUP = 500
SLICES = 5
PARTS = ("request", "exchange", "response")
CONFIG = """\
apps:
  claude:
    queue: [primary]{routes}
    providers:
      primary:
        base_url: http://127.0.0.1:{port}
        auth: passthrough{models}
"""
REQUEST = json.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "x" * 900}],
    }
).encode()


# --routes: three routes none of which takes the request, and a conversation to keep
ROUTES = """
    routes:
      - {name: small, when: {model: "*haiku*"}, queue: [primary]}
      - {name: subagents, when: {subagent: true}, queue: [primary]}
      - {name: long, when: {tokens_over: 150000}, queue: [primary]}"""


def make_flow(conversation: str | None = None) -> http.HTTPFlow:
    headers = {"content-type": "application/json", "x-api-key": "bench", "anthropic-version": "1"}
    if conversation is not None:
        headers["x-claude-code-session-id"] = conversation
    request = http.Request.make("POST", "https://api.anthropic.com/v1/messages", REQUEST, headers)
    client = tflow.tclient_conn()
    client.peername = ("127.0.0.1", 50000)
    flow = tflow.tflow(req=request, client_conn=client)
    flow.response = None
    flow.live = True
    return flow


def wire(request: http.Request) -> tuple[bytes, bytes]:
    """The request as mitmproxy would write it upstream: (head, body)."""
    data = request.data
    body = data.content or b""
    fields = [(k, v) for k, v in data.headers.fields if k.lower() != b"content-length"]
    fields.append((b"content-length", b"%d" % len(body)))
    head = b"%s %s HTTP/1.1\r\n" % (data.method, data.path)
    head += b"".join(k + b": " + v + b"\r\n" for k, v in fields) + b"\r\n"
    return head, body


async def drive(
    args: argparse.Namespace, hooks_on: bool, port: int, tmp: Path
) -> tuple[float, dict[str, float]]:
    """CPU microseconds per request of this process (best of SLICES slices), and the mean
    of each part: the request hook (with the hooks on, the whole exchange is in it), the
    exchange straight to the provider (hooks off), the response hook."""
    models = "\n        models: {claude-sonnet-4-5: mapped-model}" if args.map else ""
    routes = ROUTES if args.routes else ""
    (tmp / "providers.yaml").write_text(CONFIG.format(port=port, models=models, routes=routes))
    state = tmp / f"state-{'on' if hooks_on else 'off'}.db"
    addon = CcSwitch()
    with taddons.context(proxyserver.Proxyserver(), addon) as tctx:
        tctx.configure(
            addon,
            ccswitch_config=str(tmp / "providers.yaml"),
            ccswitch_state=str(state) if args.log else "",
            listen_host="127.0.0.1",
        )
        addon.running()
        await addon.started()  # the relay and its client pool, as in mitmdump
        relay = addon.relay
        assert relay is not None
        conn = Conn(relay.port if hooks_on else port)
        flows = [
            make_flow(f"conv-{n % 50}" if args.routes else None)
            for n in range(args.requests + WARMUP)
        ]
        responses = [
            http.Response.make(200, RESPONSE, {"content-type": "application/json"}) for _ in flows
        ]
        gc.collect()
        gc.freeze()  # the pre-made flows are not the addon's garbage to collect

        parts = dict.fromkeys(PARTS, 0.0)
        clock = time.process_time

        async def one(flow: http.HTTPFlow) -> None:
            t0 = clock()
            if hooks_on:  # as mitmproxy runs a hook: the chain, then the flow's resume wait
                await addon.request(flow)
                await flow.wait_for_resume()  # a whole answer: served there, in the hook
            t1 = clock()
            relayed = flow.response is None
            if relayed:  # hooks off: straight to the provider, as bare mitmdump
                answer = await conn.request(*wire(flow.request))
                if answer.status != 200:
                    raise RuntimeError(f"answer {answer.status}: {answer.body[:300]!r}")
            t2 = clock()
            if relayed:
                flow.response = responses.pop()
                flow.response.timestamp_start = time.time()
                if hooks_on:
                    addon.responseheaders(flow)
            if hooks_on:
                assert flow.response is not None
                if flow.response.status_code != 200:
                    raise RuntimeError(f"answer {flow.response.status_code}")
                addon.response(flow)
            t3 = clock()
            parts["request"] += t1 - t0
            parts["exchange"] += t2 - t1
            parts["response"] += t3 - t2

        for flow in flows[:WARMUP]:
            await one(flow)
        parts.update(dict.fromkeys(PARTS, 0.0))
        rest = flows[WARMUP:]
        size = len(rest) // SLICES
        best = float("inf")
        for i in range(SLICES):
            started = time.process_time()  # every thread: the request log's writer too
            for flow in rest[i * size : (i + 1) * size]:
                await one(flow)
            best = min(best, time.process_time() - started)
        measured = size * SLICES
        await conn.close()
        if hooks_on:
            routed = flows[-1].metadata["ccswitch"]
            assert routed["provider"] == "primary", routed
            assert flows[-1].request.host == "api.anthropic.com"  # the tool's request, restored
        addon.done()
        await addon.stopped()
    return best / size * 1e6, {k: v / measured * 1e6 for k, v in parts.items()}


def _as_mitmproxy_runs() -> contextlib.AbstractContextManager[None]:
    """The loop's task factory as mitmdump's master sets it: mitmproxy 12 on Python 3.12+ runs
    tasks eagerly (to their first wait at creation), 11 does not. BENCH_EAGER=0 turns it off."""
    eager = getattr(asyncio_utils, "set_eager_task_factory", None)
    if eager is None or os.environ.get("BENCH_EAGER") == "0":
        return contextlib.nullcontext()
    return eager()  # type: ignore[no-any-return]


def measure(args: argparse.Namespace, modes: list[bool]) -> list[tuple[float, dict[str, float]]]:
    tmp = Path(tempfile.mkdtemp(prefix="ccswitch-hooks-"))
    procs = bench.Processes()
    try:
        fakes = bench.FakeProviders(procs, tmp, ["ok"], max_s=900)
        (port,) = fakes.ports

        # one event loop for both: mitmproxy's test master keeps the first one it saw
        async def each() -> list[tuple[float, dict[str, float]]]:
            with _as_mitmproxy_runs():
                return [await drive(args, on, port, tmp) for on in modes]

        return asyncio.run(each())
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


COST_CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    providers:
      primary:
        base_url: https://api.anthropic.com
        auth: passthrough
        budget: {daily_usd: 1000000, monthly_usd: 1000000}
        switch_at_utilization: 0.95
      backup:
        base_url: http://127.0.0.1:9
        auth: passthrough
        price_multiplier: 0.5
"""


def cost_accounting(requests: int) -> tuple[float, float]:
    """CPU µs per served request of pricing it, counting it toward its budget, and the
    metrics (best of SLICES slices); and of the router's gate for the same request."""
    from ccswitch_addon.core.config import parse_config
    from ccswitch_addon.core.record import Attempt, Finished
    from ccswitch_addon.engine import Engine
    from ccswitch_addon.wire.usage import Usage

    engine = Engine(parse_config(COST_CONFIG, "bench.yaml"))
    done = [
        Finished(
            "claude",
            "primary" if i % 2 else "backup",
            [Attempt("primary" if i % 2 else "backup", 12.0, False, 200)],
            model_sent="claude-sonnet-4-5",
            ttfb_ms=250.0,
            usage=Usage(1200, 300, 20000, 500),
        )
        for i in range(requests)
    ]

    def account(d: Finished) -> None:  # what request_done adds for issue 23
        engine.accounts.finished(d, time.time())

    def gate(d: Finished) -> None:
        engine.router.select_providers("claude", None, session="session-1")

    figures = []
    for work in (account, gate):
        for d in done[:WARMUP]:
            work(d)
        best = float("inf")
        size = requests // SLICES
        for i in range(SLICES):
            started = time.process_time()
            for d in done[i * size : (i + 1) * size]:
                work(d)
            best = min(best, time.process_time() - started)
        figures.append(best / size * 1e6)
    return figures[0], figures[1]


def instructions(args: argparse.Namespace) -> int:
    counts = []
    for hooks in ("on", "off"):
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "cachegrind.log"
            command = [
                "valgrind", "--tool=cachegrind", "--cache-sim=no",
                "--cachegrind-out-file=/dev/null", f"--log-file={log}",
                sys.executable, __file__, "--requests", str(args.requests),
                *(["--log"] if args.log else []), *(["--map"] if args.map else []),
                *(["--routes"] if args.routes else []),
            ]  # fmt: skip
            env = {**os.environ, "PYTHONHASHSEED": "0", "BENCH_HOOKS": hooks}
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            match = re.search(r"I\s+refs:\s+([\d,]+)", log.read_text())
            assert match is not None, log.read_text()
            counts.append(int(match.group(1).replace(",", "")))
    return (counts[0] - counts[1]) // (args.requests + WARMUP)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--log", action="store_true", help="with the request log")
    parser.add_argument("--map", action="store_true", help="with a model mapping")
    parser.add_argument("--routes", action="store_true", help="with routes and conversations")
    parser.add_argument("--instructions", action="store_true", help="count under valgrind")
    parser.add_argument("--cost", action="store_true", help="cost accounting and metrics alone")
    args = parser.parse_args()
    if args.cost:
        account, gate = cost_accounting(max(args.requests, WARMUP))
        print(
            f"{account:.1f} µs per request: pricing, budget and metrics "
            f"(goal: under 10); router selection with the gate {gate:.1f} µs"
        )
        return 0
    if args.instructions:
        print(f"{instructions(args)} instructions per request (the addon's work only)")
        return 0
    only = os.environ.get("BENCH_HOOKS")
    if only:  # one mode (under valgrind)
        ((micros, _),) = measure(args, [only == "on"])
        print(f"{micros:.1f} µs per request (hooks {only})")
        return 0
    (off, off_parts), (on, on_parts) = measure(args, [False, True])
    print(
        f"{on - off:.1f} µs per request: the addon's own work in CPU time "
        f"(hooks on {on:.1f} − off {off:.1f}: the same requests straight to the provider)"
    )
    served = on_parts["request"] - off_parts["exchange"]
    print(
        f"  request hook {on_parts['request']:.1f} µs (serving the request: the pooled "
        f"client's exchange with the provider, the outcome recorded; {served:.1f} µs more than "
        f"the same exchange by a bare client), response hook {on_parts['response']:.1f} µs "
        f"(means over all measured requests)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
