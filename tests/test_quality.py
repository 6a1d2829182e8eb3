"""The house rules, checked where the tests run: layering, lint, format, types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ccswitch_addon"
MITMPROXY_SIDE = {"addon", "compat", "flows", "guard", "inline"}
BIN = Path(sys.executable).parent

BLOCK = """
import importlib, sys
BLOCKED = sys.argv[1]
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == BLOCKED or name.startswith(BLOCKED + "."):
            raise ImportError("this part must not import " + name)
sys.meta_path.insert(0, Block())
for module in sys.argv[2:]:
    importlib.import_module("ccswitch_addon." + module)
"""


def test_the_core_imports_without_mitmproxy() -> None:
    core = sorted(
        ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
        for p in PACKAGE.rglob("*.py")
        if p.stem not in MITMPROXY_SIDE and p.stem != "__init__"
    )
    assert {
        "core.breaker",
        "core.config",
        "core.router",
        "core.switch",
        "engine",
        "state.store",
        "cli.main",
    } <= set(core)
    result = subprocess.run(
        [sys.executable, "-c", BLOCK, "mitmproxy", *core],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("library", ["httptools", "multidict", "aiohttp"])
def test_the_routing_core_and_wire_formats_import_without_the_http_client(library: str) -> None:
    pure = sorted(
        ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
        for part in ("core", "wire")
        for p in (PACKAGE / part).rglob("*.py")
        if p.stem != "__init__"
    )
    assert {"core.breaker", "core.router", "wire.usage"} <= set(pure)
    result = subprocess.run(
        [sys.executable, "-c", BLOCK, library, *pure],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_aiohttp_is_for_the_tests_only() -> None:
    """The provider side has its own client and relay server; aiohttp serves the tests' fakes."""
    every = sorted(
        ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
        for p in PACKAGE.rglob("*.py")
        if p.stem != "__init__" and p.stem not in MITMPROXY_SIDE
    )
    result = subprocess.run(
        [sys.executable, "-c", BLOCK, "aiohttp", *every],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "ccswitch_addon", "tests", "bench"],
        ["ruff", "format", "--check", "ccswitch_addon"],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_static_checks(command: list[str]) -> None:
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_sqlite_connection_is_left_to_the_garbage_collector() -> None:
    """A connection used as a context manager commits but never closes: Python 3.13 then
    reports it in whichever later test collects it. ``contextlib.closing`` closes it."""
    needle = "with sqlite3" + ".connect("  # split, so this file does not match itself
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("ccswitch_addon", "tests", "bench")
        for path in (ROOT / folder).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if needle in line
    ]
    assert offenders == []
