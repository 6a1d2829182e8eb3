"""The addon's mitmproxy options: declared once, each parsed by a plain function.

The options whose values need checking are declared as text and parsed here, the way
mitmproxy's own addons treat ``stream_large_bodies`` or ``proxyauth``: a typed option given a
bad value with ``--set`` before the script is loaded is dropped silently by mitmproxy, which
left the addon inert. A parse error is a ValueError naming the option and the value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ccswitch_addon.core.paths import default_state_path
from ccswitch_addon.core.proxy import DIRECT, ProxyChoice, parse_proxy

__all__ = ["NAMES", "OPTIONS", "Option", "Settings", "parse_bool", "parse_days", "parse_size"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class Option:
    name: str
    default: str
    help: str


OPTIONS: tuple[Option, ...] = (
    Option(
        "ccswitch_config",
        "",
        "providers.yaml; default $CCSWITCH_CONFIG, else ./providers.yaml, "
        "else ~/.ccswitch/providers.yaml",
    ),
    Option(
        "ccswitch_state",
        str(default_state_path()),
        "SQLite state file; empty to keep state in memory only",
    ),
    Option("ccswitch_log_days", "30", "days of request log to keep (1-3650)"),
    Option(
        "ccswitch_notify",
        "",
        "shell command run on each switch event, the event as JSON on stdin",
    ),
    Option(
        "ccswitch_allow_remote",
        "false",
        "true: route (and spend API keys) for clients that are not on loopback",
    ),
    Option(
        "ccswitch_allow_browsers",
        "false",
        "true: route requests that carry browser-only headers (Origin, Sec-Fetch-Site, …)",
    ),
    Option(
        "ccswitch_upstream_proxy",
        "",
        "how providers are reached: empty or none (direct), http://HOST:PORT, "
        "socks5://HOST:PORT (user:password@ allowed, ${VAR} too), or env (HTTPS_PROXY and "
        "the rest, as curl reads them); a provider's proxy: overrides it",
    ),
    Option(
        "ccswitch_body_limit",
        "32m",
        "largest decompressed request body the model rewrite inflates (bytes, or k/m/g)",
    ),
    Option(
        "ccswitch_quiet",
        "false",
        "true: leave out mitmproxy's connection lines (ccswitch's own lines, warnings and "
        "errors stay); `ccswitch run` sets it, with flow_detail=0, unless -v",
    ),
)
NAMES = frozenset(option.name for option in OPTIONS)

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0", ""})
_SIZE = re.compile(r"([0-9]+)\s*(?:([kmg])(?:i?b)?|b)?", re.I)
_UNITS = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}


def parse_bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}: expected true or false, got {text!r}")


def parse_days(name: str, text: str) -> int:
    value = text.strip()
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 3650:
        raise ValueError(f"{name}: expected a whole number of days from 1 to 3650, got {text!r}")
    return int(value)


def parse_upstream_proxy(name: str, text: str) -> ProxyChoice:
    try:
        return parse_proxy(text, os.environ)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def parse_size(name: str, text: str) -> int:
    match = _SIZE.fullmatch(text.strip())
    size = int(match.group(1)) * _UNITS[(match.group(2) or "").lower()] if match else 0
    if size < 1024 or size > 4 * 1024 * MIB:
        raise ValueError(f"{name}: expected a size from 1k to 4g (like 32m), got {text!r}")
    return size


@dataclass(frozen=True)
class Settings:
    """The parsed values of the options that need parsing."""

    log_days: int = 30
    allow_remote: bool = False
    allow_browsers: bool = False
    body_limit: int = 32 * MIB
    quiet: bool = False
    upstream_proxy: ProxyChoice = DIRECT

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> Settings:
        """From the options' text values; ValueError for the first bad one."""
        parsers: dict[str, tuple[str, Callable[[str, str], object]]] = {
            "log_days": ("ccswitch_log_days", parse_days),
            "allow_remote": ("ccswitch_allow_remote", parse_bool),
            "allow_browsers": ("ccswitch_allow_browsers", parse_bool),
            "body_limit": ("ccswitch_body_limit", parse_size),
            "quiet": ("ccswitch_quiet", parse_bool),
            "upstream_proxy": ("ccswitch_upstream_proxy", parse_upstream_proxy),
        }
        parsed = {
            field: parse(name, str(values[name]))
            for field, (name, parse) in parsers.items()
            if name in values
        }
        return cls(**parsed)  # type: ignore[arg-type]
