"""The ``ccswitch`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .config import AppConfig, Config, ConfigError, load_config
from .paths import default_config_path
from .rewrite import mask

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _describe_app(app: AppConfig, out: TextIO) -> None:
    b = app.breaker
    mode = "failover on" if app.failover else "failover off"
    print(f"{app.name}  (api {app.api.value}, {mode}, up to {app.max_attempts} attempts)", file=out)
    print(f"  hosts: {', '.join(app.hosts)}   paths: {', '.join(app.paths)}", file=out)
    print(
        f"  breaker: failures {b.failure_threshold}, successes {b.success_threshold}, "
        f"open {b.open_seconds:g}s, rate {b.error_rate_threshold:g} over {b.window_seconds:g}s "
        f"(min {b.min_requests})",
        file=out,
    )
    outside = [pid for pid in app.providers if pid not in app.queue]
    for position, pid in enumerate([*app.queue, *outside], start=1):
        p = app.providers[pid]
        place = f"{position}." if pid in app.queue else "-"
        line = f"  {place:3} {pid:16} {p.base_url}  auth {p.auth.value}"
        if p.api_key:
            line += f"  key {mask(p.api_key)}"
        if p.models:
            line += "  models " + ", ".join(f"{k} → {v}" for k, v in p.models.items())
        if p.disabled:
            line += f"  DISABLED: {p.disabled}"
        if pid not in app.queue:
            line += "  (outside the queue: for a manual switch)"
        print(line, file=out)


def cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = Path(args.file) if args.file else default_config_path()
    try:
        config: Config = load_config(path)
    except ConfigError as e:
        print(e, file=err)
        return EXIT_USAGE
    for warning in config.warnings:
        print(f"{'error' if args.strict and warning.disabling else 'warning'}: {warning}", file=err)
    print(f"{config.source}: {len(config.apps)} app(s)", file=out)
    for app in config.apps.values():
        _describe_app(app, out)
    if args.strict and any(w.disabling for w in config.warnings):
        return EXIT_USAGE
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccswitch", description="Failover router for AI coding tools, on mitmproxy."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser("check", help="validate providers.yaml and show what was understood")
    check.add_argument("file", nargs="?", help="default: ./providers.yaml, else ~/.ccswitch/…")
    check.add_argument("--strict", action="store_true", help="a disabled provider is an error")
    check.set_defaults(handler=cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args, sys.stdout, sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
