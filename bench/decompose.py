"""Where the overhead comes from, by elimination: bare → empty hooks → streaming → addon.

    python bench/decompose.py [--rounds 5] [--size 1024]

Interleaved rounds over five mitmdumps on the same fake provider: bare; bench/null_addon.py
(the addon's hooks, doing nothing: mitmproxy's dispatch); the same streaming every response
(as the addon does for each success); the addon with the state file off (no request log);
the addon as shipped (request log on). Latency at concurrency 1, throughput at 10, and the
proxy process's CPU time per request (steadier than wall time on a shared machine); medians of
the per-round differences to bare.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402
from loadclient import build_request, padded_body, percentile, run_load  # noqa: E402

NULL = HERE / "null_addon.py"


async def measure(proxies: dict[str, bench.Mitm], args: argparse.Namespace) -> None:
    body = padded_body(args.size)
    requests = {name: build_request(m.port, body) for name, m in proxies.items()}
    for name, m in proxies.items():
        await run_load(m.port, requests[name], 300, 10, 60)
    rows: list[dict[str, tuple[float, float]]] = []
    for r in range(args.rounds):
        row = {}
        for name in bench.rotate(list(proxies), r):
            port = proxies[name].port
            cpu = proxies[name].cpu_seconds()
            lat = await run_load(port, requests[name], args.latency, 1, 120)
            tput = await run_load(port, requests[name], args.throughput, 10, 120)
            cpu = proxies[name].cpu_seconds() - cpu
            bench.check_clean(lat, name)
            row[name] = (
                percentile(lat.latencies, 50) * 1000,
                tput.rps,
                cpu * 1000 / max(1, lat.done + tput.done),
            )
        rows.append(row)
        bench.log(f"round {r + 1}/{args.rounds}")
    print(f"{args.size} B bodies, {args.rounds} rounds; medians of per-round differences to bare")
    table = []
    for name in proxies:
        table.append(
            [
                name,
                bench.med(row[name][0] for row in rows),
                bench.med(row[name][0] - row["bare"][0] for row in rows),
                bench.med(row[name][1] for row in rows),
                bench.med(row[name][1] / row["bare"][1] for row in rows),
                bench.med(row[name][2] for row in rows),
                bench.med(row[name][2] - row["bare"][2] for row in rows),
            ]
        )
    header = ["proxy", "p50 ms", "+p50 ms", "rps", "rps/bare", "CPU ms/req", "+CPU ms/req"]
    print(bench.table(table, header))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--latency", type=int, default=300)
    parser.add_argument("--throughput", type=int, default=1000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ccswitch-decompose-"))
    bench.pin_load()
    procs = bench.Processes()
    try:
        addon, _ = bench.snapshot_addon(tmp)
        fakes = bench.FakeProviders(procs, tmp, ["ok"], max_s=1200)
        (primary,) = fakes.ports
        config = bench.providers_yaml(["primary"], {"primary": bench.passthrough(primary)})
        null = ["-s", str(NULL)]
        proxies = {
            "bare": bench.Mitm(procs, tmp, "bare", primary),
            "null_hooks": bench.Mitm(procs, tmp, "null_hooks", primary, None, null),
            "null_hooks_stream": bench.Mitm(
                procs, tmp, "null_stream", primary, None, null, env={"BENCH_NULL_STREAM": "1"}
            ),
            "addon_no_log": bench.Mitm(
                procs, tmp, "addon_no_log", primary, config, (), addon, state=False
            ),
            "addon": bench.Mitm(procs, tmp, "addon", primary, config, (), addon),
        }
        for proxy in proxies.values():
            proxy.wait_listening()
        asyncio.run(measure(proxies, args))
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
