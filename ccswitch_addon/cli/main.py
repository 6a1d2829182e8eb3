"""The ``ccswitch`` command line."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ccswitch_addon.cli.client import DEFAULT_PROXY, ProxyUnavailable, call
from ccswitch_addon.cli.launch import (
    TOOLS,
    confdir_of,
    env_lines,
    exec_mitm,
    init_config,
    mitm_command,
    paste_lines,
)
from ccswitch_addon.cli.reports import (
    format_table,
    log_rows,
    parse_since,
    status_from_store,
    status_table,
    usage_rows,
)
from ccswitch_addon.core.config import AppConfig, Config, ConfigError, load_config
from ccswitch_addon.core.paths import default_config_path, default_state_path
from ccswitch_addon.core.rewrite import mask
from ccswitch_addon.state.store import StoreError, open_readonly

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _describe_app(app: AppConfig, out: TextIO) -> None:
    b = app.breaker
    mode = "failover on" if app.failover else "failover off"
    attempts = app.max_attempts or len(app.queue)
    print(f"{app.name}  (api {app.api.value}, {mode}, up to {attempts} attempts)", file=out)
    print(f"  hosts: {', '.join(app.hosts)}   paths: {', '.join(app.paths)}", file=out)
    print(
        f"  breaker: failures {b.failure_threshold}, successes {b.success_threshold}, "
        f"open {b.open_seconds:g}s, rate {b.error_rate_threshold:g} over {b.window_seconds:g}s "
        f"(min {b.min_requests})",
        file=out,
    )
    for rule in app.rules:
        print(f"  rule {rule.where}: {rule.describe()}", file=out)
    outside = [pid for pid in app.providers if pid not in app.queue]
    for position, pid in enumerate([*app.queue, *outside], start=1):
        p = app.providers[pid]
        place = f"{position}." if pid in app.queue else "-"
        line = f"  {place:3} {pid:16} {p.base_url}  auth {p.auth.value}"
        if p.api_key:
            line += f"  key {mask(p.api_key)}"
        if p.models:
            line += "  models " + ", ".join(f"{k} → {v}" for k, v in p.models.items())
        if p.rules:
            line += f"  rules {len(p.rules)}"
        if p.probe:
            line += f"  probe {p.probe.method} {p.probe.path}"
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


def _config_or_none(path: str | None) -> Config | None:
    try:
        return load_config(Path(path) if path else default_config_path())
    except ConfigError:
        return None


def cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        code, status = call(args.proxy, "GET", "/status")
    except ProxyUnavailable as e:
        print(f"ccswitch: {e}; reading the state file instead", file=err)
        try:
            with open_readonly(Path(args.state).expanduser()) as db:
                status = status_from_store(db, _config_or_none(args.config))
        except StoreError as e2:
            print(f"ccswitch: {e2}", file=err)
            return EXIT_FAILED
        print(f"(from {args.state}; the proxy is not running)", file=out)
    else:
        if code != 200:
            print(f"ccswitch: the proxy answered {code}: {status}", file=err)
            return EXIT_FAILED
    if args.json:
        print(json.dumps(status, indent=2), file=out)
    else:
        print(status_table(status), file=out)
    return EXIT_OK


def cmd_control(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    action = args.command
    try:
        code, answer = call(
            args.proxy, "POST", f"/{action}", {"app": args.app, "provider": args.provider}
        )
    except ProxyUnavailable as e:
        print(f"ccswitch: {e}; start it with `ccswitch run`", file=err)
        return EXIT_FAILED
    if code != 200:
        print(f"ccswitch: {answer.get('error', answer)}", file=err)
        return EXIT_USAGE if code in (400, 404) else EXIT_FAILED
    verb = "now routes to" if action == "switch" else "reset:"
    print(f"{args.app} {verb} {args.provider}", file=out)
    return EXIT_OK


def _report(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    query: Callable[[sqlite3.Connection], tuple[list[str], list[list[Any]]]],
    empty: str,
) -> int:
    """A table read from the state file, or one clear line on why it cannot be read."""
    try:
        with open_readonly(Path(args.state).expanduser()) as db:
            headers, rows = query(db)
    except StoreError as e:
        print(f"ccswitch: {e}", file=err)
        return EXIT_FAILED
    print(format_table(headers, rows) if rows else empty, file=out)
    print(PER_INSTANCE.format(args.state), file=err)
    return EXIT_OK


# The request log and usage stay per instance with a team gateway (ccswitch_redis).
PER_INSTANCE = "(this instance's log, {}; each instance of a team gateway keeps its own)"


def cmd_log(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        since = parse_since(args.since)
    except ValueError as e:
        print(f"ccswitch: {e}", file=err)
        return EXIT_USAGE
    return _report(
        args,
        out,
        err,
        lambda db: log_rows(db, args.app, since, args.failovers),
        "(nothing in that time)",
    )


def cmd_usage(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return _report(args, out, err, lambda db: usage_rows(db, args.by), "(no requests logged yet)")


def cmd_env(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    for line in env_lines(args.tool, reverse=args.reverse, port=args.port, confdir=args.confdir):
        print(line, file=out)
    return EXIT_OK


def cmd_init(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    written, path = init_config(Path(args.file).expanduser() if args.file else None)
    if not written:
        print(f"ccswitch: {path} exists already; it was left as it is", file=err)
        return EXIT_FAILED
    print(f"wrote {path}; edit it, then `ccswitch check` and `ccswitch run`", file=out)
    return EXIT_OK


def cmd_launch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    program = "mitmweb" if args.command == "web" else "mitmdump"
    command, host, port, reverse = mitm_command(program, args.mitm_args)
    config = _config_or_none(None)
    print(paste_lines(config, host, port, reverse, confdir_of(args.mitm_args)), file=out)
    return exec_mitm(command, out)


def cmd_test(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ccswitch_addon.cli.preflight import check_provider

    try:
        config = load_config(Path(args.config) if args.config else default_config_path())
    except ConfigError as e:
        print(e, file=err)
        return EXIT_USAGE
    if args.app and args.app not in config.apps:
        print(f"ccswitch: unknown app {args.app!r}; configured: {', '.join(config.apps)}", file=err)
        return EXIT_USAGE
    rows, passed = [], True
    for app in config.apps.values():
        if args.app and app.name != args.app:
            continue
        chosen = [args.provider] if args.provider else list(app.queue)
        for pid in chosen:
            provider = app.providers.get(pid)
            if provider is None:
                print(
                    f"ccswitch: unknown provider {pid!r} for {app.name}; configured: "
                    f"{', '.join(app.providers)}",
                    file=err,
                )
                return EXIT_USAGE
            if provider.disabled:
                rows.append([app.name, pid, "disabled", "", "", "", "", "", provider.disabled])
                continue
            check = check_provider(app, provider, timeout=args.timeout)
            passed = passed and check.passed
            rows.append(check.row())
    print(
        format_table(
            [
                "app",
                "provider",
                "reachable",
                "tls",
                "auth",
                "model",
                "ttfb ms",
                "streaming",
                "detail",
            ],
            rows,
        ),
        file=out,
    )
    return EXIT_OK if passed else EXIT_FAILED


def cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ccswitch_addon.cli.demo import run_demo

    return run_demo(out, keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccswitch", description="Failover router for AI coding tools, on mitmproxy."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser("check", help="validate providers.yaml and show what was understood")
    check.add_argument("file", nargs="?", help="default: ./providers.yaml, else ~/.ccswitch/…")
    check.add_argument("--strict", action="store_true", help="a disabled provider is an error")
    check.set_defaults(handler=cmd_check)

    def proxy_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--proxy", default=DEFAULT_PROXY, help=f"default {DEFAULT_PROXY}")

    def state_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state", default=str(default_state_path()), help="the state file")

    status = sub.add_parser("status", help="routing status, from the proxy or the state file")
    proxy_options(status)
    state_option(status)
    status.add_argument("--config", help="providers.yaml, for the queue order (state file only)")
    status.add_argument("--json", action="store_true", help="print the status JSON")
    status.set_defaults(handler=cmd_status)
    for name, text in (
        ("switch", "make PROVIDER the current provider of APP"),
        ("reset", "close PROVIDER's breaker and clear its cooldown"),
    ):
        control = sub.add_parser(name, help=text)
        control.add_argument("app")
        control.add_argument("provider")
        proxy_options(control)
        control.set_defaults(handler=cmd_control)
    log = sub.add_parser(
        "log", help="recent requests, or switch events with --failovers (this instance's)"
    )
    state_option(log)
    log.add_argument("--app")
    log.add_argument("--since", default="1h", help="like 30m, 1h, 7d (default 1h)")
    log.add_argument("--failovers", action="store_true", help="switch events instead")
    log.set_defaults(handler=cmd_log)
    usage = sub.add_parser(
        "usage", help="requests, failures and tokens per provider and day (this instance's)"
    )
    state_option(usage)
    usage.add_argument("--by", choices=("day", "provider"), default="day")
    usage.set_defaults(handler=cmd_usage)
    env = sub.add_parser("env", help="shell lines that point a tool at the proxy")
    env.add_argument("tool", choices=sorted(TOOLS))
    env.add_argument("--reverse", action="store_true", help="base-URL variable instead")
    env.add_argument("--port", type=int, default=8080)
    env.add_argument("--confdir", default="~/.mitmproxy", help="mitmproxy's confdir (the CA)")
    env.set_defaults(handler=cmd_env)
    init = sub.add_parser("init", help="write the example to ~/.ccswitch/providers.yaml")
    init.add_argument("file", nargs="?", help=argparse.SUPPRESS)
    init.set_defaults(handler=cmd_init)
    for name, program in (("run", "mitmdump"), ("web", "mitmweb")):
        launch = sub.add_parser(name, help=f"start {program} with the addon on 127.0.0.1:8080")
        launch.add_argument("mitm_args", nargs=argparse.REMAINDER, help=f"passed on to {program}")
        launch.set_defaults(handler=cmd_launch)
    test = sub.add_parser("test", help="send one minimal real request to each provider")
    test.add_argument("app", nargs="?")
    test.add_argument("--provider", help="only this provider (with APP)")
    test.add_argument("--config", help="providers.yaml (default: the usual place)")
    test.add_argument("--timeout", type=float, default=30.0)
    test.set_defaults(handler=cmd_test)
    demo = sub.add_parser("demo", help="see failover happen: mock providers, the real proxy")
    demo.add_argument("--keep", action="store_true", help="leave the proxy (mitmweb) running")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("run", "web"):
        # Everything after run/web belongs to mitmdump/mitmweb, options included.
        args = argparse.Namespace(command=argv[0], mitm_args=argv[1:], handler=cmd_launch)
        return cmd_launch(args, sys.stdout, sys.stderr)
    args = build_parser().parse_args(argv)
    code: int = args.handler(args, sys.stdout, sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
