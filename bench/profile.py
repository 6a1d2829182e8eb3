"""Where the addon's time goes: py-spy on a mitmdump under the benchmark's load.

    pip install py-spy        # not a project dependency; only for this script
    python bench/profile.py [--case 1KB|500KB-map|sse] [--seconds 20] [--bare]
    python bench/profile.py --compare bench/results/profile-bare-1KB.txt \
                                      bench/results/profile-addon-1KB.txt

Starts the fake providers and one mitmdump (with the addon from a snapshot of the package, or
bare with ``--bare``), drives it at a fixed concurrency while ``py-spy record`` samples it,
then prints: the share of samples inside ccswitch_addon (hooks and relay; inclusive),
the addon functions by inclusive share, per hook and relay entry point by callee, and the
hottest leaf functions (self time) under the addon's frames and overall, in CPU milliseconds
per request (samples ÷ rate ÷ requests answered while sampling).
Only samples holding the GIL count (``py-spy --gil``): a thread that waits, like the request
log's writer between batches, would otherwise show as busy. The raw collapsed stacks are kept
in ``--out`` (with a .json of the request count) for flame
graphs; ``--compare A B`` prints what B spends per request beyond A, function by function.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402
from loadclient import build_request, padded_body, run_load  # noqa: E402

CASES = {  # body size, model mapping, SSE
    "1KB": (1024, False, False),
    "1KB-map": (1024, True, False),
    "500KB": (500 * 1024, False, False),
    "500KB-map": (500 * 1024, True, False),
    "sse": (1024, False, True),
    # the primary answers 529, the backup (mapped, keyed) serves: every request fails over;
    # a rule makes the 529 breaker-neutral so the breaker never opens while sampling
    "failover": (1024, True, False),
}


def frame_name(frame: str) -> str:
    """``rewrite_body_model (ccswitch_addon/core/rewrite.py:70)`` → ``rewrite.py:…``."""
    func, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    return f"{Path(file).name}:{func}" if file else func


def in_addon(frame: str) -> bool:
    """The addon's own code: its hooks, the relay's server and the provider client."""
    return "ccswitch_addon/" in frame


def _meta(collapsed: Path) -> dict[str, float]:
    return dict(json.loads(collapsed.with_suffix(".json").read_text()))


def leaves(collapsed: Path) -> Counter[str]:
    """Self samples per function."""
    counts: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [f for f in stack.split(";") if f and not f.startswith("thread (")]
        if frames:
            counts[frame_name(frames[-1])] += int(count_text)
    return counts


def compare(base: Path, other: Path, top: int = 25) -> str:
    """CPU ms per request that ``other`` spends beyond ``base``, by leaf function."""
    per_request = {}
    for path in (base, other):
        meta = _meta(path)
        per_request[path] = 1000 / meta["rate"] / max(meta["requests"], 1)
    a, b = leaves(base), leaves(other)
    delta = {
        name: b[name] * per_request[other] - a[name] * per_request[base] for name in set(a) | set(b)
    }
    total_a = sum(a.values()) * per_request[base]
    total_b = sum(b.values()) * per_request[other]
    lines = [
        f"CPU ms per request: {base.name} {total_a:.3f}, {other.name} {total_b:.3f}, "
        f"difference {total_b - total_a:+.3f}",
        f"\nlargest differences by leaf function (ms per request, {other.name} − {base.name}):",
    ]
    for name, value in sorted(delta.items(), key=lambda kv: -abs(kv[1]))[:top]:
        lines.append(f"  {value:+.3f}  {name}")
    return "\n".join(lines)


HOOKS = ("request", "responseheaders", "response", "error")
# The provider side's entry points, which run as tasks of their own and not under a hook: the
# relay's own server (its protocol, parsing the pointed request) and its handler.
RELAY = ("answer.py:RelayProtocol.data_received", "relay.py:Relay._handle")


def hook_breakdown(collapsed: Path) -> dict[str, Counter[str]]:
    """For each addon hook and relay entry point, its samples by the function it called (two
    levels deep)."""
    out: dict[str, Counter[str]] = {}
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        names = [frame_name(f) for f in stack.split(";") if f and not f.startswith("thread (")]
        for i, name in enumerate(names):
            hook = name.rpartition("CcSwitch.")[2]
            if (name.startswith("addon.py:CcSwitch.") and hook in HOOKS) or name in RELAY:
                below = names[i + 1 : i + 3] or ["(self)"]
                key = hook if name.startswith("addon.py:") else name
                out.setdefault(key, Counter())[" > ".join(below)] += int(count_text)
                break
    return out


def summarize(collapsed: Path, top: int = 20) -> str:
    meta = _meta(collapsed)
    ms_per_sample_request = 1000 / meta["rate"] / max(meta["requests"], 1)
    total = 0
    addon_inclusive = 0
    by_addon_func: Counter[str] = Counter()
    leaf_under_addon: Counter[str] = Counter()
    leaf_all: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        if frames and frames[0].startswith("thread ("):
            by_thread[frames[0]] += count
            frames = frames[1:]
        if not frames:
            continue
        leaf_all[frame_name(frames[-1])] += count
        addon_frames = [f for f in frames if in_addon(f)]
        if addon_frames:
            addon_inclusive += count
            for name in {frame_name(f) for f in addon_frames}:
                by_addon_func[name] += count
            leaf_under_addon[frame_name(frames[-1])] += count

    def pct(n: int) -> str:
        share = f"{100 * n / total:5.1f} %" if total else "  -  "
        return f"{share} {n * ms_per_sample_request:6.3f} ms/req"

    lines = [
        f"samples: {total} over {meta['requests']:.0f} requests "
        f"({total * ms_per_sample_request:.3f} CPU ms per request); "
        f"inside ccswitch_addon (inclusive): {pct(addon_inclusive)}"
    ]
    if by_thread:
        lines.append("by thread: " + ", ".join(f"{t} {pct(n)}" for t, n in by_thread.most_common()))
    lines.append("\naddon functions, inclusive share of all samples:")
    lines += [f"  {pct(n)}  {name}" for name, n in by_addon_func.most_common(top)]
    for hook, children in hook_breakdown(collapsed).items():
        label = f"CcSwitch.{hook}" if hook in HOOKS else hook
        lines.append(f"\n{label}: {pct(sum(children.values()))}, by callee:")
        lines += [f"  {pct(n)}  {name}" for name, n in children.most_common(12)]
    lines.append("\nleaf functions (self time) under an addon frame:")
    lines += [f"  {pct(n)}  {name}" for name, n in leaf_under_addon.most_common(top)]
    lines.append("\nleaf functions (self time), everything:")
    lines += [f"  {pct(n)}  {name}" for name, n in leaf_all.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--case", choices=list(CASES), default="1KB")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--bare", action="store_true", help="profile mitmdump without the addon")
    parser.add_argument(
        "--null", action="store_true", help="profile mitmdump with bench/null_addon.py"
    )
    parser.add_argument("--no-log", action="store_true", help="the addon without a state file")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BASE", "OTHER"))
    args = parser.parse_args()
    if args.compare:
        print(compare(*args.compare))
        return 0
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("py-spy not found: pip install py-spy")
    size, mapped, sse = CASES[args.case]
    tmp = Path(tempfile.mkdtemp(prefix="ccswitch-profile-"))
    bench.pin_load()
    procs = bench.Processes()
    kind = "bare" if args.bare else "null" if args.null else "addon"
    label = f"{kind}{'-nolog' if args.no_log and kind == 'addon' else ''}-{args.case}"
    args.out.mkdir(parents=True, exist_ok=True)
    collapsed = args.out / f"profile-{label}.txt"
    try:
        addon, _ = bench.snapshot_addon(tmp)
        fakes = bench.FakeProviders(procs, tmp, ["ok", "ok", "529"], max_s=args.seconds + 120)
        primary, backup, err = fakes.ports
        target = backup if mapped else primary
        providers = {"primary": bench.passthrough(primary), "backup": bench.keyed_mapped(backup)}
        queue = ["backup", "primary"] if mapped else ["primary", "backup"]
        rules: list[str] = []
        if args.case == "failover":
            target, queue = err, ["primary", "backup"]
            providers["primary"] = bench.passthrough(err)
            rules = ["rules: [{status: 529, action: neutral}]"]
        config = None if kind != "addon" else bench.providers_yaml(queue, providers, None, rules)
        extra = ["--set", "stream_large_bodies=1"] if kind == "bare" and sse else []
        if kind == "null":
            extra = ["-s", str(HERE / "null_addon.py")]
        proxy = bench.Mitm(procs, tmp, label, target, config, extra, addon, state=not args.no_log)
        proxy.wait_listening()
        headers = {"x-bench-sse": "20,1"} if sse else {}
        request = build_request(proxy.port, padded_body(size, stream=sse), headers)
        stop = threading.Event()
        answered = [0]

        def count(_: int, response: object) -> None:
            answered[0] += response is not None

        def load() -> None:
            async def drive() -> None:
                await run_load(proxy.port, request, 200, args.concurrency, 60, sse=sse)  # warm
                while not stop.is_set():
                    await run_load(
                        proxy.port, request, 500, args.concurrency, 60, sse=sse, on_done=count
                    )

            asyncio.run(drive())

        driver = threading.Thread(target=load, daemon=True)
        driver.start()
        time.sleep(2)
        bench.log(f"py-spy on {label} (pid {proxy.process.pid}) for {args.seconds:g} s …")
        started, before = time.monotonic(), answered[0]
        command = [
            py_spy, "record", "--pid", str(proxy.process.pid),
            "--duration", str(int(args.seconds)), "--rate", str(args.rate),
            "--format", "raw", "--threads", "--gil",
            "--output", str(collapsed),
        ]  # fmt: skip
        subprocess.run(
            command,
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=args.seconds + 60,
        )
        elapsed, requests = time.monotonic() - started, answered[0] - before
        stop.set()
        driver.join(70)
        meta = {"requests": requests, "seconds": elapsed, "rate": args.rate, "label": label}
        collapsed.with_suffix(".json").write_text(json.dumps(meta) + "\n")
        print(f"{label}: {requests} requests in {elapsed:.1f} s while sampling")
        print(summarize(collapsed))
        print(f"\ncollapsed stacks: {collapsed}")
    finally:
        procs.stop_all()
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
