"""Added latency and first token against bare mitmdump, in interleaved rounds.

One run of ``run.py`` measures each variant once, and on a shared 2-core machine the runs move
by more than the margins being judged (+0.15 ms added p50, first token within 1 ms). Here the
same proxies stay up and take turns, round after round (the order rotating), and each round's
figure is taken against bare's in the same round; the median of those differences is what is
printed:

- ``p50``: 1 KB whole answers, one connection at concurrency 1, the round's median latency;
- ``ttft``: short streams (six events 1 ms apart, the third the first with content) on one
  kept-alive connection, the round's median time to that event; bare is told to stream
  (``stream_large_bodies=1``) as in run.py.

``--against REV`` adds the addon as of a git revision beside the working tree's, to show what
a change did under the same conditions:

    python bench/interleaved.py --rounds 12 --against HEAD~1
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import run as bench
from loadclient import Conn, build_request, padded_body, run_load

SSE = {"x-bench-sse": "6,1"}  # six events 1 ms apart; the third is the first with content


def snapshot_of(revision: str, tmp: Path) -> Path:
    """The package as of ``revision``, snapshotted as run.py snapshots the working tree."""
    archive = subprocess.run(
        ["git", "-C", str(bench.REPO), "archive", revision, "ccswitch_addon"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    root = tmp / "tree"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    here, bench.REPO = bench.REPO, root
    try:
        package, _ = bench.snapshot_addon(tmp)
    finally:
        bench.REPO = here
    return package


async def p50_ms(port: int, requests: int) -> float:
    result = await run_load(port, build_request(port, padded_body(1024)), requests, 1, 120)
    return 1000 * statistics.median(result.latencies)


async def ttft_ms(port: int, streams: int) -> float:
    conn = Conn(port)
    request = build_request(port, padded_body(1024, stream=True), SSE)
    times = []
    try:
        for n in range(streams + 3):
            response = await conn.request(*request, sse=True)
            if n >= 3:  # a few to warm the connection and the pools
                times.append(response.events[2] - response.sent)
    finally:
        await conn.close()
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--requests", type=int, default=500, help="1 KB requests a round")
    parser.add_argument("--streams", type=int, default=50, help="short streams a round")
    parser.add_argument("--against", metavar="REV", help="also the addon as of this revision")
    parser.add_argument("--only", choices=("p50", "ttft"), help="one of the two figures")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ccswitch-interleaved-"))
    bench.pin_load()
    procs = bench.Processes()
    try:
        packages = {"addon": bench.snapshot_addon(tmp / "addon")[0]}
        if args.against:
            packages[args.against] = snapshot_of(args.against, tmp / "against")
        (provider,) = bench.FakeProviders(procs, tmp, ["ok"], max_s=3600).ports
        config = bench.providers_yaml(
            ["primary"], {"primary": bench.passthrough(provider)}, None, []
        )
        figures = ("p50", "ttft") if args.only is None else (args.only,)
        proxies: dict[tuple[str, str], bench.Mitm] = {}
        for figure in figures:
            bare_extra = ["--set", "stream_large_bodies=1"] if figure == "ttft" else []
            variants = [("bare", None, bare_extra)]
            variants += [(name, config, []) for name in packages]
            for name, text, extra in variants:
                home = tmp / f"{figure}-{name}".replace("/", "_").replace("~", "_")
                home.mkdir()
                package = packages.get(name, packages["addon"])
                proxy = bench.Mitm(procs, home, "mitmdump", provider, text, extra, package)
                proxies[figure, name] = proxy
        for proxy in proxies.values():
            proxy.wait_listening()

        for figure in figures:
            names = [name for f, name in proxies if f == figure]
            rounds: dict[str, list[float]] = {name: [] for name in names}
            for number in range(args.rounds):
                for name in bench.rotate(names, number):
                    port = proxies[figure, name].port
                    if figure == "p50":
                        rounds[name].append(asyncio.run(p50_ms(port, args.requests)))
                    else:
                        rounds[name].append(asyncio.run(ttft_ms(port, args.streams)))
            print(f"{figure}: median of {args.rounds} rounds, and of each round's difference")
            bare = rounds["bare"]
            for name in names:
                over = [mine - b for mine, b in zip(rounds[name], bare, strict=True)]
                print(
                    f"  {name:<12} {statistics.median(rounds[name]):7.3f} ms"
                    + ("" if name == "bare" else f"   {statistics.median(over):+.3f} ms")
                )
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
