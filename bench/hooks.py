"""The addon's own work per request, in process: its hooks driven over pre-made flows.

    python bench/hooks.py [--log] [--map]                 # microseconds per request
    python bench/hooks.py --instructions [--log] [--map]  # instructions per request (valgrind)

No sockets and no mitmproxy dispatch: request, responseheaders and response of the addon are
called directly (through mitmproxy's test context) on flows built beforehand, a 1 KB
Anthropic request answered by a small JSON success. It prices what the addon does, not what
mitmproxy does around it (bench/instructions.py has both). ``--instructions`` runs this
script twice under ``valgrind --tool=cachegrind``, hooks on and hooks off, and divides the
difference by the requests: a figure that repeats to the instruction, for judging a change
to the hot path in a minute. ``--log`` writes the request log (its writer thread included),
``--map`` adds a model mapping. (No cProfile here: this folder's profile.py would shadow the
standard library's module it imports; bench/profile.py samples a real proxy instead.)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mitmproxy import http  # noqa: TID251 - drives the addon's hooks
from mitmproxy.addons import proxyserver  # noqa: TID251
from mitmproxy.test import taddons, tflow  # noqa: TID251

from ccswitch_addon.addon import CcSwitch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakes import OK_BODY as RESPONSE

WARMUP = 500
CONFIG = """\
apps:
  claude:
    queue: [primary]
    providers:
      primary:
        base_url: http://127.0.0.1:9001
        auth: passthrough{models}
"""
REQUEST = json.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "x" * 900}],
    }
).encode()


def make_flow() -> http.HTTPFlow:
    request = http.Request.make(
        "POST",
        "https://api.anthropic.com/v1/messages",
        REQUEST,
        {"content-type": "application/json", "x-api-key": "bench", "anthropic-version": "1"},
    )
    client = tflow.tclient_conn()
    client.peername = ("127.0.0.1", 50000)
    flow = tflow.tflow(req=request, client_conn=client)
    flow.response = None
    flow.live = True
    return flow


async def drive(args: argparse.Namespace, hooks_on: bool) -> float:
    """Microseconds per request of the hooks (best of five slices)."""
    tmp = Path(tempfile.mkdtemp(prefix="ccswitch-hooks-"))
    models = "\n        models: {claude-sonnet-4-5: mapped-model}" if args.map else ""
    (tmp / "providers.yaml").write_text(CONFIG.format(models=models))
    addon = CcSwitch()
    with taddons.context(proxyserver.Proxyserver(), addon) as tctx:
        tctx.configure(
            addon,
            ccswitch_config=str(tmp / "providers.yaml"),
            ccswitch_state=str(tmp / "state.db") if args.log else "",
        )
        addon.running()
        flows = [make_flow() for _ in range(args.requests + WARMUP)]
        responses = [
            http.Response.make(200, RESPONSE, {"content-type": "application/json"}) for _ in flows
        ]
        gc.collect()
        gc.freeze()  # the pre-made flows are not the addon's garbage to collect

        async def one(flow: http.HTTPFlow) -> None:
            if hooks_on:
                await addon.request(flow)
            flow.response = responses.pop()
            flow.response.timestamp_start = time.time()
            if hooks_on:
                addon.responseheaders(flow)
                await addon.response(flow)

        for flow in flows[:WARMUP]:
            await one(flow)
        rest = flows[WARMUP:]
        size = len(rest) // 5
        best = float("inf")
        for i in range(5):
            started = time.perf_counter()
            for flow in rest[i * size : (i + 1) * size]:
                await one(flow)
            best = min(best, time.perf_counter() - started)
        if hooks_on:
            assert flows[-1].metadata["ccswitch"]["provider"] == "primary"
        addon.done()
    return best / size * 1e6


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
    parser.add_argument("--instructions", action="store_true", help="count under valgrind")
    args = parser.parse_args()
    if args.instructions:
        print(f"{instructions(args)} instructions per request (hooks only)")
        return 0
    hooks_on = os.environ.get("BENCH_HOOKS", "on") == "on"
    micros = asyncio.run(drive(args, hooks_on))
    print(f"{micros:.1f} µs per request (hooks {'on' if hooks_on else 'off'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
