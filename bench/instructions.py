"""What the addon costs in CPU instructions per request: a figure the machine's noise cannot move.

    python bench/instructions.py [--requests 300] [--size 1024]

Wall-clock ratios on a shared 2-core machine wander by ±10 % between identical runs; the
instructions a process executes for the same requests do not. Each proxy (bare mitmdump,
bench/null_addon.py, the addon without and with its request log) runs under
``valgrind --tool=callgrind`` (Debian's valgrind); after a warm-up the counters are zeroed
(``callgrind_control -z``), ``--requests`` sequential 1 KB requests go through, and the
counters are dumped (``callgrind_control -d``): instructions per request, with nothing of
start-up or idle time in them. Two proxies run at a time, about 4 minutes in all.

Instructions are not time (a cache miss costs more than an add), but for interpreted code
they follow CPU time closely, and ``bare ÷ proxy`` is the throughput ratio a CPU-bound proxy
would reach.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402
from loadclient import padded_body  # noqa: E402

NULL = HERE / "null_addon.py"
CASES = ("bare", "null_hooks", "addon_no_log", "addon")
START_SECONDS = 1200.0  # under valgrind mitmdump starts some fifty times slower; more when loaded


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    routed: bool  # the addon answers with x-ccswitch-provider


def measure(case: Case, tmp: Path, target: int, requests: int, body: bytes, sse: str | None) -> int:
    """Instructions per request of one proxy, counted over ``requests`` requests only."""
    port = bench.free_port()
    workdir = tmp / case.name
    workdir.mkdir()
    out = workdir / "callgrind.out"
    command = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
        f"--log-file={workdir / 'valgrind.log'}",
        sys.executable, bench.mitmdump_path(),
        "--mode", f"reverse:http://127.0.0.1:{target}",
        "--listen-host", "127.0.0.1", "--listen-port", str(port),
        "--set", f"confdir={workdir / 'conf'}", "-q",
        *(arg.replace("{dir}", str(workdir)) for arg in case.args),
    ]  # fmt: skip
    env = {**bench.child_env(tmp), "PYTHONPATH": str(tmp / "pkg")}  # the snapshot first
    with open(workdir / "mitmdump.log", "wb") as output:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env
        )
    try:
        send = _sender(port, body, sse)
        deadline = time.monotonic() + START_SECONDS
        while not _ready(send, case.routed):  # listening, and the addon loaded when expected
            if process.poll() is not None or time.monotonic() > deadline:
                said = [
                    (workdir / name).read_text(errors="replace")[-1500:]
                    for name in ("mitmdump.log", "valgrind.log")
                ]
                raise RuntimeError(
                    f"{case.name}: not ready (exit {process.poll()}); mitmdump said:\n{said[0]}\n"
                    f"valgrind said:\n{said[1]}"
                )
            time.sleep(0.5)
        for _ in range(30):  # warm-up: imports, caches, first connections
            send()
        subprocess.run(
            ["callgrind_control", "-z", str(process.pid)], check=True, capture_output=True
        )
        for _ in range(requests):
            _, routed = send()
            if case.routed and not routed:
                raise RuntimeError(f"{case.name}: a request was not routed by the addon")
        subprocess.run(
            ["callgrind_control", "-d", str(process.pid)], check=True, capture_output=True
        )
        dumps = sorted(workdir.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
        return _total(dumps[-1]) // requests
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


def _sender(port: int, body: bytes, sse: str | None):  # type: ignore[no-untyped-def]
    connection: list[http.client.HTTPConnection] = []
    headers = {"content-type": "application/json", "x-api-key": "bench", "anthropic-version": "1"}
    if sse is not None:
        headers["x-bench-sse"] = sse  # the fake streams EVENTS,INTERVAL_MS (bench/fakes.py)

    def send() -> tuple[int, bool]:
        if not connection:
            connection.append(http.client.HTTPConnection("127.0.0.1", port, timeout=120))
        try:
            connection[0].request("POST", "/v1/messages", body=body, headers=headers)
            reply = connection[0].getresponse()
            reply.read()
        except OSError:
            connection.clear()
            raise
        return reply.status, reply.getheader("x-ccswitch-provider") is not None

    return send


def _ready(send, routed: bool) -> bool:  # type: ignore[no-untyped-def]
    try:
        status, was_routed = send()
    except OSError:
        return False
    return status == 200 and (was_routed or not routed)


def _total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"{dump}: no totals line")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument(
        "--sse",
        type=int,
        metavar="EVENTS",
        help="each request a stream of EVENTS events 1 ms apart; bare mitmdump streams too",
    )
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"which proxies, comma-separated (default all: {','.join(CASES)})",
    )
    args = parser.parse_args()
    wanted = [c for c in args.cases.split(",") if c]
    if unknown := set(wanted) - set(CASES):
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; known: {', '.join(CASES)}")
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise SystemExit("valgrind not found: apt-get install valgrind")
    tmp = Path(tempfile.mkdtemp(prefix="ccswitch-instructions-"))
    procs = bench.Processes()
    try:
        addon, _ = bench.snapshot_addon(tmp)
        fakes = bench.FakeProviders(procs, tmp, ["ok"], max_s=1800)
        (target,) = fakes.ports
        config = tmp / "providers.yaml"
        config.write_text(bench.providers_yaml(["primary"], {"primary": bench.passthrough(target)}))
        with_addon = ("-s", str(addon), "--set", f"ccswitch_config={config}")
        # a stream against bare mitmdump told to stream, as bench/run.py's streaming section
        streamed = ("--set", "stream_large_bodies=1") if args.sse else ()
        sse = f"{args.sse},1" if args.sse else None
        cases = [
            case
            for case in [
                Case("bare", streamed, routed=False),
                Case("null_hooks", (*streamed, "-s", str(NULL)), routed=False),
                Case("addon_no_log", (*with_addon, "--set", "ccswitch_state="), routed=True),
                Case("addon", (*with_addon, "--set", "ccswitch_state={dir}/state.db"), routed=True),
            ]
            if case.name in wanted
        ]
        body = padded_body(args.size, stream=sse is not None)
        bench.log(f"{len(cases)} proxies under callgrind, two at a time …")
        with ThreadPoolExecutor(2) as pool:
            counts = dict(
                zip(
                    [c.name for c in cases],
                    pool.map(lambda c: measure(c, tmp, target, args.requests, body, sse), cases),
                    strict=True,
                )
            )
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    bare = counts.get("bare")
    rows = [
        [name, f"{n / 1e6:.3f}"]
        + ([f"{(n - bare) / 1e6:+.3f}", f"{bare / n:.3f}"] if bare else ["", ""])
        for name, n in counts.items()
    ]
    what = f"streams of {args.sse} events" if args.sse else f"{args.size} B requests"
    print(f"{args.requests} sequential {what} per proxy, after a warm-up")
    print(bench.table(rows, ["proxy", "M instr/req", "vs bare", "bare ÷ proxy"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
