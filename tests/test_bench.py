"""The benchmark harness runs end to end (--quick) and writes every section's figures.

Speed is not asserted here: on a shared machine that would be a flaky test. What is checked is
that `python bench/run.py --quick` exits 0 and its JSON has every section with numbers in it.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("overhead", "streaming", "failover", "hang", "outage", "scale", "streams")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _dig(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        assert isinstance(data, dict), f"not an object above {'.'.join(keys)}"
        assert key in data, f"missing {'.'.join(keys)}"
        data = data[key]
    return data


def bench(script: str, *args: str) -> str:
    """Run bench/SCRIPT; its standard output, once it exited 0."""
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    return run.stdout


@pytest.mark.e2e
def test_quick_benchmark_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    stdout = bench("run.py", "--quick", "--out", str(out))
    assert "Goals" in stdout  # the readable table was printed
    data = json.loads(out.read_text())

    for section in SECTIONS:
        assert section in data, f"no section {section}"
    assert data["meta"]["quick"] is True

    numbers = [
        # 1. overhead, both sizes, bare and addon with and without a mapping, and the ratios
        *(
            _dig(data, "overhead", size, proxy, "latency_c1", figure)
            for size in ("1KB", "500KB")
            for proxy in ("bare", "addon", "addon_map")
            for figure in ("p50_ms", "p99_ms")
        ),
        *(
            _dig(data, "overhead", size, proxy, "rps_median")
            for size in ("1KB", "500KB")
            for proxy in ("bare", "addon", "addon_map")
        ),
        *(
            _dig(data, "overhead", size, f"{proxy}_vs_bare", figure)
            for size in ("1KB", "500KB")
            for proxy in ("addon", "addon_map")
            for figure in ("throughput_ratio", "added_p50_ms")
        ),
        # 2. streaming: direct, bare told to stream, addon
        *(
            _dig(data, "streaming", path, figure)
            for path in ("direct", "bare_stream", "addon")
            for figure in (
                "ttfe_ms",
                "ttft_short_p50_ms",
                "gap_p50_ms",
                "gap_p99_ms",
                "relay_p50_ms",
                "relay_p99_ms",
            )
        ),
        # 3. failover
        *(
            _dig(data, "failover", name, "p50_ms")
            for name in ("error_bare", "backup_addon", "failover_addon")
        ),
        _dig(data, "failover", "budget_ms"),
        # 3b. streamed failover: the primary's own times, the backup alone, the failovers
        *(
            _dig(data, "failover", "streamed", name, "ttfe_p50_ms")
            for name in (
                "error_direct",
                "stream_error_direct",
                "backup_addon",
                "failover_529",
                "failover_stream_error",
            )
        ),
        # 3c. a primary that never answers
        *(_dig(data, "hang", figure) for figure in ("p50_ms", "max_ms", "budget_ms")),
        # 4. outage
        *(
            _dig(data, "outage", case, figure)
            for case in ("primary_529", "primary_refused")
            for figure in ("primary_hits", "success_rate")
        ),
        # 5. scale
        *(_dig(data, "scale", "rss_mb", mark) for mark in ("25%", "50%", "75%", "100%")),
        *(
            _dig(data, "scale", "bare_stream", "rss_mb", mark)
            for mark in ("25%", "50%", "75%", "100%")
        ),
        _dig(data, "scale", "growth_25_to_100_pct"),
        # 6. streams held open at once, through the addon and bare mitmdump
        *(
            _dig(data, "streams", proxy, figure)
            for proxy in ("addon", "bare_stream")
            for figure in ("complete", "rss_mb_idle", "rss_mb_all_open", "kb_per_open_stream")
        ),
    ]
    assert all(_number(n) for n in numbers), numbers

    # Each request of the quick run was answered: otherwise the figures measure nothing.
    assert _dig(data, "outage", "primary_529", "requests") == _dig(data, "outage", "requests")
    assert _dig(data, "scale", "load", "statuses") == {
        "200": _dig(data, "meta", "plan", "scale_requests")
    }
    assert _dig(data, "failover", "served_as")
    # every streamed failover and every hanging-primary request was served by the backup,
    # after one failed attempt at the primary
    streamed = _dig(data, "failover", "streamed", "served_as")
    assert streamed == {
        name: {"backup/2": _dig(data, "failover", "streamed", name, "n")}
        for name in ("failover_529", "failover_stream_error")
    }
    assert _dig(data, "hang", "served_as") == {
        "backup/2": _dig(data, "meta", "plan", "hang_requests")
    }
    # no stream lost, and all of them were open at once at the provider
    for proxy in ("addon", "bare_stream"):
        streams = _dig(data, "streams", proxy)
        assert (
            streams["complete"] == streams["streams"] == _dig(data, "meta", "plan", "streams_open")
        )
        assert streams["fake_peak_concurrent"] == streams["streams"]
    goals = data["goals"]
    assert goals
    assert all(isinstance(g["met"], bool) and _number(g["target"]) for g in goals)
    assert {g["section"] for g in goals} == set(SECTIONS)


@pytest.mark.parametrize("flags", [[], ["--log", "--map"]])
def test_hooks_bench_drives_the_addon_in_process(flags: list[str]) -> None:
    stdout = bench("hooks.py", "--requests", "200", *flags)
    micros = float(stdout.split(" µs per request")[0].split()[-1])
    assert 0 < micros < 100_000


def test_hooks_bench_measures_cost_accounting_and_metrics() -> None:
    stdout = bench("hooks.py", "--cost", "--requests", "1000")
    micros = float(stdout.split(" µs per request")[0].split()[-1])
    assert 0 < micros < 10_000
    assert "router selection with the gate" in stdout


@pytest.mark.e2e
def test_gateway_bench_reports_latency_commands_and_spread() -> None:
    data = json.loads(bench("gateway.py", "--requests", "200", "--trips", "2", "--stalls", "1"))
    for name in ("off", "on", "added"):
        assert _number(_dig(data, "latency", name, "p50_ms"))
        assert _number(_dig(data, "latency", name, "p99_ms"))
    # A healthy provider's successes are added up once a second, not sent one by one.
    assert _dig(data, "latency", "redis", "evalsha_per_request") < 0.2
    assert _number(_dig(data, "latency", "redis", "commands_per_request"))
    assert _number(_dig(data, "engine_cpu_per_request", "added_us"))
    assert _dig(data, "publish_to_seen", "trips") == 2
    assert 0 <= _dig(data, "publish_to_seen", "max_ms") < 10_000
    # After a 1 s stall every instance is back in sync, and a primary failing from the
    # stall's start got about failure_threshold requests per instance (each alone).
    assert _dig(data, "redis_stall", "back_in_sync_ms", "noticed")[1] >= 1  # the outage run
    assert 0 <= _dig(data, "redis_stall", "back_in_sync_ms", "max") < 10_000
    assert _dig(data, "redis_stall", "primary_requests_in_outage", "max") <= 3 * 3 + 3


def test_translate_bench_prices_the_translator() -> None:
    stdout = bench("translate.py", "--quick", "--no-proxy")
    figures = re.findall(r"(\d+\.\d) µs", stdout)
    assert len(figures) == 2 * 7 + 1, stdout  # stream and answer per pair, and one request
    assert "gemini ← anthropic" in stdout
    assert all(float(f) > 0 for f in figures)


@pytest.mark.e2e
def test_hostile_bench_bounds_memory_and_times_the_socks5_hop() -> None:
    data = json.loads(bench("hostile.py", "--quick"))
    for attack in ("never_reads", "bomb"):
        figures = data[attack]
        assert figures["served"] == figures["requests"]  # every request failed over
        assert figures["still_open_to_the_provider"] == 0  # nothing kept at the attacker
        assert _number(figures["rss_peak_over_before_mb"])
    # 2 bombs of 200 MB decoded each: far below what holding them would take
    assert data["bomb"]["rss_peak_over_before_mb"] < 100
    latency = data["socks5_latency"]
    assert latency["tunnels_opened"] == 1  # the pool keeps the tunnel
    assert _number(latency["added_p50_ms"])


@pytest.mark.e2e
def test_interleaved_rounds_print_both_figures_for_each_variant() -> None:
    stdout = bench(
        "interleaved.py", "--rounds", "1", "--requests", "20", "--streams", "3", "--against", "HEAD"
    )
    for figure in ("p50", "ttft"):
        section = stdout.split(f"{figure}: ", 1)[1].split("\n\n", 1)[0]
        lines = section.splitlines()[1:4]
        assert [line.split()[0] for line in lines] == ["bare", "addon", "HEAD"], stdout
        assert re.fullmatch(r"\s+HEAD\s+[\d.]+ ms\s+[+-][\d.]+ ms", lines[2]), stdout
