"""The ``ccswitch`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ccswitch_addon.cli.client import (
    DEFAULT_PROXY,
    NotCcswitch,
    ProxyUnavailable,
    call,
    excerpt,
)
from ccswitch_addon.cli.configfile import (
    CONFIG_HELP,
    announce,
    load_named,
    resolve,
    shadowing_notice,
)
from ccswitch_addon.cli.launch import (
    DEFAULT_HOST,
    QUIET_ARGS,
    TOOLS,
    confdir_of,
    env_lines,
    exec_mitm,
    free_port,
    init_config,
    mitm_command,
    paste_lines,
    port_taken,
    run_line,
    split_launch_args,
    verbose,
)
from ccswitch_addon.cli.presetcmd import register as register_presets
from ccswitch_addon.cli.reports import (
    USAGE_COVERS,
    format_table,
    known_apps,
    log_rows,
    parse_since,
    status_from_store,
    status_table,
    usage_rows,
)
from ccswitch_addon.cli.staleproxy import stale_keys
from ccswitch_addon.core.config import AppConfig, Config, ConfigError, load_config
from ccswitch_addon.core.cost import describe_cost, unpriced
from ccswitch_addon.core.envfile import KeyEnv, env_path, read_env
from ccswitch_addon.core.paths import CONFIG_ENV, LOCAL_CONFIG, default_state_path
from ccswitch_addon.core.prices import price_table
from ccswitch_addon.core.proxy import Proxies, parse_proxy
from ccswitch_addon.core.rewrite import mask
from ccswitch_addon.state.store import StoreError, open_readonly

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _describe_app(app: AppConfig, out: TextIO, keys: KeyEnv | None = None) -> None:
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
        if p.api_keys:
            line += f"  pool of {len(p.api_keys)} keys"
        elif p.api_key:
            line += f"  key {mask(p.api_key)}"
            origin = keys.origin(p.key_var) if keys and p.key_var else None
            if origin:
                line += f" (from {origin})"
        line += f"  format {p.format.value}"
        if p.models:
            line += "  models " + ", ".join(f"{k} → {v}" for k, v in p.models.items())
        if p.headers:
            line += "  headers " + ", ".join(
                f"{k}: {mask(v) if k.lower() in p.secret_headers else v}"
                for k, v in p.headers.items()
            )
        if p.rules:
            line += f"  rules {len(p.rules)}"
        if p.probe:
            line += f"  probe {p.probe.method} {p.probe.path}"
        line += describe_cost(p)
        # A provider's own proxy:, or the ccswitch_upstream_proxy option's (direct by default).
        line += f"  proxy {p.proxy.shown() if p.proxy else '(ccswitch_upstream_proxy)'}"
        if p.disabled:
            line += f"  DISABLED: {p.disabled}"
        if pid not in app.queue:
            line += "  (outside the queue: for a manual switch)"
        print(line, file=out)
        for number, key in enumerate(p.api_keys, start=1):
            # check runs without the proxy: a key's cooldowns are in `ccswitch status`
            print(
                f"        key {number}: {mask(key) if key else '-'}  {'ready' if key else 'unset'}",
                file=out,
            )
    _describe_routing(app, out)


def _describe_routing(app: AppConfig, out: TextIO) -> None:
    routing = app.routing
    for route in routing.routes:
        when = route.when
        conditions = (
            ([f"model {', '.join(when.models)}"] if when.models else [])
            + ([f"subagent {when.subagent}"] if when.subagent is not None else [])
            + ([f"tokens over {when.tokens_over}"] if when.tokens_over is not None else [])
            + ([f"thinking {when.thinking}"] if when.thinking is not None else [])
            + [f"header {h} ~ {p.pattern}" for h, p in when.headers]
        )
        print(f"  route {route.name}: {'; '.join(conditions)} → {', '.join(route.queue)}", file=out)
    if routing.affinity_seconds:
        print(
            f"  affinity: {routing.affinity_seconds:g}s, failback {routing.failback.value}",
            file=out,
        )
    else:
        print("  affinity: off", file=out)


def cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.file and args.config and Path(args.file) != Path(args.config):
        print("ccswitch: give the file once: either FILE or --config", file=err)
        return EXIT_USAGE
    path, why = (Path(args.file), "given") if args.file else resolve(args.config)
    announce(path, why, err)
    try:
        config: Config = load_config(path)
    except ConfigError as e:
        print(e, file=err)
        return EXIT_USAGE
    failed = False
    for warning in config.warnings:
        error = warning.unusable or (args.strict and warning.disabling)
        failed = failed or error
        print(f"{'error' if error else 'warning'}: {warning}", file=err)
    print(f"{config.source}: {len(config.apps)} app(s)", file=out)
    keys = read_env(path)
    for app in config.apps.values():
        _describe_app(app, out, keys)
    for app_name, pid, models in unpriced(config):
        print(
            f"unpriced: {app_name}/{pid}: {', '.join(models)} (not in the price list "
            f"{price_table().source}; cost_usd stays null; set price: to count it)",
            file=out,
        )
    stale_keys(config, err)  # a running proxy of this file that lacks a key this shell has
    return EXIT_USAGE if failed else EXIT_OK


def cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        code, status = call(args.proxy, "GET", "/status")
        ours = isinstance(status, dict) and (
            isinstance(status.get("apps"), dict) if code == 200 else "error" in status
        )
        if not ours:  # ccswitch answers its status, or {"error": …}
            raise NotCcswitch(
                f"no ccswitch at {args.proxy} (it answered {code}: {excerpt(status)})"
            )
    except NotCcswitch as e:
        print(f"ccswitch: {e}", file=err)
        return EXIT_USAGE
    except ProxyUnavailable as e:
        print(f"ccswitch: {e}; reading the state file instead", file=err)
        config = load_named(args.config, err, quiet_missing=True)
        try:
            with open_readonly(Path(args.state).expanduser()) as db:
                status = status_from_store(db, config)
        except StoreError as e2:
            print(f"ccswitch: {e2}", file=err)
            return EXIT_FAILED
        print(f"(from {args.state}; the proxy is not running)", file=out)
    else:
        if code != 200:
            print(f"ccswitch: the proxy answered {code}: {status}", file=err)
            return EXIT_FAILED
        if status.get("config"):
            announce(Path(status["config"]), f"used by the proxy at {args.proxy}", err)
            shadowing_notice(Path(status["config"]), err)
    if args.json:
        print(json.dumps(status, indent=2), file=out)
    else:
        print(status_table(status), file=out)
    return EXIT_OK


def cmd_control(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    action = args.command
    body = {"app": args.app, "provider": args.provider, "by": f"ccswitch {action}"}
    try:
        code, answer = call(args.proxy, "POST", f"/{action}", body)
    except NotCcswitch as e:
        print(f"ccswitch: {e}", file=err)
        return EXIT_USAGE
    except ProxyUnavailable as e:
        print(f"ccswitch: {e}; start it with `ccswitch run`", file=err)
        return EXIT_FAILED
    if code != 200:
        print(f"ccswitch: {answer.get('error', answer)}", file=err)
        return EXIT_USAGE if code in (400, 404, 409) else EXIT_FAILED
    if action == "switch":
        print(f"{args.app} now tries {args.provider} first", file=out)
    else:
        print(f"{args.app}: {args.provider} reset (breaker closed, cooldown cleared)", file=out)
    if answer.get("note"):
        print(f"note: {answer['note']}", file=out)
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
    if args.app:
        config = load_named(args.config, err, quiet_missing=True)
        try:
            with open_readonly(Path(args.state).expanduser()) as db:
                known = known_apps(db, config)
        except StoreError:  # said below, by the report itself
            known = list(config.apps) if config else []
        if known and args.app not in known:
            print(
                f"ccswitch: unknown app {args.app!r}; known: {', '.join(known) or 'none yet'}",
                file=err,
            )
            return EXIT_USAGE
    return _report(
        args,
        out,
        err,
        lambda db: log_rows(db, args.app, since, args.failovers),
        "(nothing in that time)",
    )


def cmd_usage(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    print(USAGE_COVERS, file=err)
    return _report(args, out, err, lambda db: usage_rows(db, args.by), "(no requests logged yet)")


def cmd_env(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    for line in env_lines(args.tool, reverse=args.reverse, port=args.port, confdir=args.confdir):
        print(line, file=out)
    if not port_taken(DEFAULT_HOST, args.port):
        print(
            f"ccswitch env: warning: no proxy listens on {DEFAULT_HOST}:{args.port}; "
            f"{TOOLS[args.tool].label} will fail to connect "
            f"until `{run_line(args.port)}` is started",
            file=err,
        )
    return EXIT_OK


def cmd_init(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    target = args.config or args.file
    written, path = init_config(Path(target).expanduser() if target else None)
    if not written:
        print(f"ccswitch: {path} exists already; it was left as it is", file=err)
        _warn_shadowed(path, err)
        return EXIT_FAILED
    print(f"wrote {path}; edit it, then `ccswitch check` and `ccswitch run`", file=out)
    print(f"keys go in {env_path(path)} (mode 0600): NAME=value, read at once", file=out)
    _warn_shadowed(path, err)
    return EXIT_OK


def _warn_shadowed(written: Path, err: TextIO) -> None:
    """Say so when the commands run here would read another file than the one written."""
    used, _ = resolve(None)
    if used.resolve() == written.resolve():
        return
    if os.environ.get(CONFIG_ENV):
        reason = f"${CONFIG_ENV} names {used}"
    elif used == LOCAL_CONFIG:
        reason = f"{LOCAL_CONFIG} in this directory ({Path.cwd()}) takes precedence"
    else:
        reason = f"the default is {used}"
    print(
        f"ccswitch: note: {reason}, so commands run here use that file, not {written};"
        f" pass --config {written} (or set {CONFIG_ENV}) to use the new one",
        file=err,
    )


def cmd_launch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    program = "mitmweb" if args.command == "web" else "mitmdump"
    try:
        options = split_launch_args(args.mitm_args)
    except ValueError as e:
        print(f"ccswitch {args.command}: {e}", file=err)
        return EXIT_USAGE
    if options.help:
        _launch_parser(args.command).print_help(out)
        return EXIT_OK
    mitm_args = options.mitm_args
    # --set ccswitch_config=PATH names the file as --config does: announce that one
    named = [a.split("=", 1)[1] for a in mitm_args if a.startswith("ccswitch_config=")]
    explicit = named[-1] if named and named[-1] else options.config
    if not named:
        # The proxy reads the file named here, whatever its working directory.
        path, _ = resolve(options.config)
        mitm_args = ["--set", f"ccswitch_config={path.resolve()}", *mitm_args]
    if not verbose(mitm_args):
        mitm_args = [*QUIET_ARGS, *mitm_args]  # one line per routed request; -v for all
    command, host, port, reverse = mitm_command(program, mitm_args)
    if port_taken(host, port):
        free = free_port(host, port)
        elsewhere = (
            f"start this one elsewhere: ccswitch {args.command} --port {free} (free now)"
            if free
            else "no free port found near it"
        )
        print(
            f"ccswitch: {host}:{port} is in use already. Is ccswitch already running? "
            f"(`ccswitch status --proxy http://{host}:{port}`)\n"
            f"Stop it, or {elsewhere}",
            file=err,
        )
        return EXIT_FAILED
    config = load_named(explicit, err)
    used, why = resolve(explicit)
    if why != "--config":  # a file named on purpose needs no notice
        shadowing_notice(used, err)
    print(paste_lines(config, host, port, reverse, confdir_of(mitm_args)), file=out)
    return exec_mitm(command, out)


def cmd_test(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ccswitch_addon.cli.preflight import check_provider

    path, why = resolve(args.config)
    announce(path, why, err)
    try:
        config = load_config(path)
    except ConfigError as e:
        print(e, file=err)
        return EXIT_USAGE
    if args.app and args.app not in config.apps:
        print(f"ccswitch: unknown app {args.app!r}; configured: {', '.join(config.apps)}", file=err)
        return EXIT_USAGE
    try:
        option = parse_proxy(args.upstream_proxy, os.environ)
    except ValueError as e:
        print(f"ccswitch: --upstream-proxy: {e}", file=err)
        return EXIT_USAGE
    proxies = Proxies(option, Proxies.snapshot(os.environ))
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
            check = check_provider(app, provider, timeout=args.timeout, proxies=proxies)
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


def _quiet_exit_on_broken_pipe() -> int:
    """The reader went away (`ccswitch log | head`): stop without a traceback.

    Python flushes stdout once more at exit; point it at /dev/null so that flush cannot fail.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13  # as a process killed by SIGPIPE, what shells report for `cmd | head`


def _launch_parser(name: str) -> argparse.ArgumentParser:
    """`run`/`web` help: ccswitch's own options; the rest is passed on unchanged."""
    program = "mitmweb" if name == "web" else "mitmdump"
    parser = argparse.ArgumentParser(
        prog=f"ccswitch {name}",
        usage=f"ccswitch {name} [--config PATH] [--port PORT] [{program} options …]",
        description=LAUNCH_HELP[name],
        epilog=(
            f"Every other argument goes to {program} unchanged (for example "
            "--mode reverse:https://api.anthropic.com, --set confdir=DIR); "
            f"`{program} --help` lists them."
        ),
    )
    _add_launch_options(parser)
    return parser


def _add_launch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    parser.add_argument(
        "--port",
        type=int,
        help=f"listen port (default 8080, on {DEFAULT_HOST}); the printed lines follow it",
    )


LAUNCH_HELP = {
    "run": "Start mitmdump with the ccswitch addon and print what to paste for each tool.",
    "web": "Start mitmweb (mitmproxy's web UI) with the ccswitch addon; as `run` otherwise.",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccswitch", description="Failover router for AI coding tools, on mitmproxy."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")

    def config_option(p: argparse.ArgumentParser, text: str = CONFIG_HELP) -> None:
        p.add_argument("--config", metavar="PATH", help=text)

    def proxy_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--proxy", default=DEFAULT_PROXY, help=f"the running proxy (default {DEFAULT_PROXY})"
        )

    def state_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--state",
            default=str(default_state_path()),
            help="the state file the proxy writes (default ~/.ccswitch/state.db)",
        )

    check = command("check", "validate providers.yaml and show what was understood")
    check.add_argument("file", nargs="?", help="the file to check (same as --config)")
    config_option(check)
    check.add_argument(
        "--strict", action="store_true", help="a provider disabled by an unset variable is an error"
    )
    check.set_defaults(handler=cmd_check)

    status = command("status", "routing status, from the running proxy or else the state file")
    proxy_option(status)
    state_option(status)
    config_option(status, "providers.yaml for the queue order, when reading the state file")
    status.add_argument("--json", action="store_true", help="print the status JSON")
    status.set_defaults(handler=cmd_status)

    for name, text in (
        ("switch", "make PROVIDER the provider APP tries first (kept across restarts)"),
        ("reset", "close PROVIDER's breaker and clear its cooldown"),
    ):
        control = command(name, text)
        control.add_argument("app", help="claude, codex, gemini, or another configured app")
        control.add_argument("provider", help="a provider id of that app")
        proxy_option(control)
        control.set_defaults(handler=cmd_control)

    log = command("log", "recent requests from this instance's state file, or switch events")
    state_option(log)
    config_option(log, "providers.yaml, for the app names --app accepts")
    log.add_argument("--app", help="only this app")
    log.add_argument("--since", default="1h", help="how far back: 30m, 1h, 7d (default 1h)")
    log.add_argument(
        "--failovers", action="store_true", help="switch events (failovers, manual switches)"
    )
    log.set_defaults(handler=cmd_log)

    usage = command(
        "usage", "requests, failures, tokens, cost, cache hit ratio per day or provider"
    )
    state_option(usage)
    usage.add_argument(
        "--by", choices=("day", "provider"), default="day", help="group by (default day)"
    )
    usage.set_defaults(handler=cmd_usage)

    env = command("env", "shell lines that point a tool at the proxy")
    env.add_argument("tool", choices=sorted(TOOLS), help="the tool to set up")
    env.add_argument(
        "--reverse", action="store_true", help="set the tool's base-URL variable (no CA needed)"
    )
    env.add_argument("--port", type=int, default=8080, help="the proxy's port (default 8080)")
    env.add_argument("--confdir", default="~/.mitmproxy", help="mitmproxy's confdir (the CA)")
    env.set_defaults(handler=cmd_env)

    init = command("init", "write the example providers.yaml to ~/.ccswitch/ (never overwrites)")
    init.add_argument("file", nargs="?", help=argparse.SUPPRESS)
    config_option(init, "write it here instead")
    init.set_defaults(handler=cmd_init)

    for name in ("run", "web"):
        launch = sub.add_parser(
            name,
            help=LAUNCH_HELP[name][0].lower() + LAUNCH_HELP[name][1:].rstrip("."),
            description=LAUNCH_HELP[name],
            add_help=False,
        )
        _add_launch_options(launch)
        launch.add_argument(
            "mitm_args", nargs=argparse.REMAINDER, help="passed on to mitmdump/mitmweb"
        )
        launch.set_defaults(handler=cmd_launch)

    test = command("test", "send one minimal real request to each provider")
    test.add_argument("app", nargs="?", help="only this app")
    test.add_argument("--provider", help="only this provider (with APP)")
    config_option(test)
    test.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per request (default 30)"
    )
    test.add_argument(
        "--upstream-proxy",
        default="",
        help="as the ccswitch_upstream_proxy option: none, env, http:// or socks5:// URL "
        "(a provider's proxy: overrides it)",
    )
    test.set_defaults(handler=cmd_test)

    register_presets(sub, CONFIG_HELP)

    demo = command("demo", "see failover happen: mock providers, the real proxy, no keys")
    demo.add_argument(
        "--keep", action="store_true", help="leave the proxy running, with mitmweb, until Ctrl-C"
    )
    demo.set_defaults(handler=cmd_demo)
    return parser


def _run(argv: list[str]) -> int:
    if argv and argv[0] in ("run", "web"):
        # Everything after run/web but ccswitch's own options belongs to mitmdump/mitmweb.
        args = argparse.Namespace(command=argv[0], mitm_args=argv[1:], handler=cmd_launch)
        return cmd_launch(args, sys.stdout, sys.stderr)
    args = build_parser().parse_args(argv)
    code: int = args.handler(args, sys.stdout, sys.stderr)
    sys.stdout.flush()  # a closed pipe shows here, inside the handler below
    return code


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        return _quiet_exit_on_broken_pipe()
    except KeyboardInterrupt:
        return 128 + 2  # Ctrl-C: stop quietly, as a shell reports SIGINT


if __name__ == "__main__":
    sys.exit(main())
