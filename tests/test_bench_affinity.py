"""bench/affinity.py: the simulated day runs, and its figures say what the README claims."""

from __future__ import annotations

import re

from test_bench import bench


def test_the_simulated_day_and_the_cpu_figures() -> None:
    stdout = bench("affinity.py", "--seed", "1", "--cpu")
    rows = {
        line.split()[0]: line.split()[1:]
        for line in stdout.splitlines()
        if line.split() and line.split()[0] in ("ideal", "off", "idle", "at_once")
    }
    assert set(rows) == {"ideal", "off", "idle", "at_once"}
    ideal, idle, off = float(rows["ideal"][1]), float(rows["idle"][1]), float(rows["off"][1])
    assert idle <= ideal * 1.10  # the goal: within 10 % of the ideal
    assert idle <= off
    assert rows["idle"][4] == "0"  # no warm move: nothing changed provider but a failure
    assert int(rows["off"][4]) > 0
    figures = re.findall(r"\+ affinity: (\d+\.\d) µs per request", stdout)
    assert len(figures) == 2
    assert all(float(f) > 0 for f in figures)


def test_hooks_bench_with_routes() -> None:
    stdout = bench("hooks.py", "--requests", "200", "--routes")
    micros = float(stdout.split(" µs per request")[0].split()[-1])
    assert 0 < micros < 100_000
