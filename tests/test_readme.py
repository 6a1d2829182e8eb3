"""The README's reference must say what the code does: keys, ranges, defaults, options, commands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ccswitch_addon.addon import CcSwitch
from ccswitch_addon.core.config import (
    APP_KEYS,
    BREAKER_FIELDS,
    DEFAULT_AUTH,
    KNOWN_APPS,
    PROBE_KEYS,
    PROVIDER_KEYS,
)
from ccswitch_addon.core.rules import RULE_KEYS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def reference_rows() -> dict[str, list[str]]:
    rows = {}
    for line in README.splitlines():
        match = re.match(r"^\| `(apps\.[^`]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def number(value: float) -> str:
    return f"{value:g}"


@pytest.mark.parametrize("spec", BREAKER_FIELDS, ids=lambda f: f.name)
def test_every_breaker_key_with_its_range(spec: Any) -> None:
    row = reference_rows().get(f"apps.APP.breaker.{spec.name}")
    assert row is not None, f"README lacks apps.APP.breaker.{spec.name}"
    assert row[1] == f"{number(spec.lo)}–{number(spec.hi)}"


@pytest.mark.parametrize("key", [k for k in APP_KEYS if k not in ("breaker", "providers")])
def test_every_app_key(key: str) -> None:
    assert f"apps.APP.{key}" in reference_rows()


@pytest.mark.parametrize("key", PROVIDER_KEYS)
def test_every_provider_key(key: str) -> None:
    assert f"apps.APP.providers.ID.{key}" in reference_rows()


@pytest.mark.parametrize("key", [*PROBE_KEYS, *RULE_KEYS])
def test_probe_and_rule_keys_are_explained(key: str) -> None:
    assert f"`{key}" in README


def test_max_attempts_range() -> None:
    assert reference_rows()["apps.APP.max_attempts"][1] == "1–20"


@pytest.mark.parametrize("name", sorted(KNOWN_APPS))
def test_known_app_defaults_table(name: str) -> None:
    known = KNOWN_APPS[name]
    b = known.breaker
    expected = (
        f"| {name} | {', '.join(known.hosts)} | {', '.join(known.paths)} | "
        f"{DEFAULT_AUTH[known.api].value} | "
        f"{b.failure_threshold} / {b.success_threshold} / {number(b.open_seconds)} / "
        f"{number(b.error_rate_threshold)} / {b.min_requests} / {number(b.window_seconds)} |"
    )
    assert expected in README


def test_every_addon_option_is_documented() -> None:
    class Loader:
        def __init__(self) -> None:
            self.names: list[str] = []

        def add_option(self, name: str, *args: Any) -> None:
            self.names.append(name)

    loader = Loader()
    CcSwitch().load(loader)
    assert loader.names
    for name in loader.names:
        assert f"| `{name}` |" in README, name


def test_ci_runs_the_readme_test_command() -> None:
    command = re.search(r"^python3 -m venv .*pytest$", README, re.M)
    assert command is not None
    test_part = command.group(0).split("&& ", 2)[-1]
    assert test_part == "pip install -e '.[test]' -c requirements/test.txt && python -m pytest"
    assert test_part in (ROOT / ".ci" / "run").read_text()


def test_the_lock_pins_every_supported_python_and_regenerates_by_its_own_script() -> None:
    lock = (ROOT / "requirements" / "test.txt").read_text()
    assert "requirements/compile.sh" in lock.splitlines()[1]  # the command that regenerates it
    for version, mitmproxy in (("3.11", "11."), ("3.12", "12."), ("3.13", "12.")):
        pins = [line for line in lock.splitlines() if f'python_version == "{version}"' in line]
        assert any(line.startswith(f"mitmproxy=={mitmproxy}") for line in pins), version
        assert all("==" in line for line in pins)
