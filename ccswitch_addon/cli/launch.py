"""Starting the proxy and pointing the tools at it: `ccswitch run|web|env|init`."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ccswitch_addon.core.config import Config
from ccswitch_addon.core.envfile import env_path
from ccswitch_addon.core.paths import home_config_path

__all__ = [
    "QUIET_ARGS",
    "TOOLS",
    "LaunchOptions",
    "ccswitch_path",
    "env_command",
    "env_lines",
    "free_port",
    "init_config",
    "mitm_command",
    "paste_lines",
    "port_taken",
    "run_line",
    "split_launch_args",
    "verbose",
]

ADDON = Path(__file__).resolve().parent.parent / "addon.py"
EXAMPLE = Path(__file__).resolve().parent.parent / "example_providers.yaml"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class Tool:
    label: str
    upstream: str  # the official API, the reverse-proxy target
    ca_vars: tuple[str, ...]  # where the tool reads an extra CA from
    base_var: str  # the tool's base-URL variable, for reverse mode
    base_suffix: str  # what the tool expects after host:port in that variable


TOOLS: dict[str, Tool] = {
    "claude": Tool(
        "Claude Code",
        "https://api.anthropic.com",
        ("NODE_EXTRA_CA_CERTS",),
        "ANTHROPIC_BASE_URL",
        "",
    ),
    "codex": Tool(
        "Codex CLI",
        "https://api.openai.com",
        ("SSL_CERT_FILE", "CODEX_CA_CERTIFICATE"),
        "OPENAI_BASE_URL",
        "/v1",
    ),
    "gemini": Tool(
        "Gemini CLI",
        "https://generativelanguage.googleapis.com",
        ("NODE_EXTRA_CA_CERTS",),
        "GOOGLE_GEMINI_BASE_URL",
        "",
    ),
}


def ca_path(confdir: str = "~/.mitmproxy") -> Path:
    return Path(confdir).expanduser() / "mitmproxy-ca-cert.pem"


def env_lines(
    tool: str,
    *,
    reverse: bool,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    confdir: str = "~/.mitmproxy",
) -> list[str]:
    """Shell lines for ``eval "$(ccswitch env TOOL)"``."""
    spec = TOOLS[tool]
    run = run_line(port)
    if reverse:
        url = f"http://{host}:{port}{spec.base_suffix}"
        return [
            f"# {spec.label} through ccswitch in reverse-proxy mode; start the proxy with:",
            f"#   {run} --mode reverse:{spec.upstream}",
            f"export {spec.base_var}={shlex.quote(url)}",
            *_reverse_notes(tool, url),
        ]
    ca = shlex.quote(str(ca_path(confdir)))
    lines = [
        f"# {spec.label} through ccswitch as an HTTPS proxy; start it with: {run}",
        f"export HTTPS_PROXY={shlex.quote(f'http://{host}:{port}')}",
    ]
    lines += [f"export {var}={ca}" for var in spec.ca_vars]
    return lines


def run_line(port: int) -> str:
    """The command that starts the proxy on ``port``."""
    return "ccswitch run" if port == DEFAULT_PORT else f"ccswitch run --port {port}"


def _reverse_notes(tool: str, url: str) -> list[str]:
    """What the base-URL variable alone does not do, as the tools behave (Codex CLI 0.171,
    Gemini CLI 0.61)."""
    if tool == "codex":  # it reads the base URL from its config only, not OPENAI_BASE_URL
        setting = f'openai_base_url="{url}"'
        return [
            "# Codex CLI reads the base URL from its config, not the variable: run it as",
            f"#   codex -c {shlex.quote(setting)} …",
            f"# or put this line in ~/.codex/config.toml: {setting.replace('=', ' = ', 1)}",
        ]
    if tool == "gemini":  # a base URL alone selects an auth type it then refuses
        return [
            "# Gemini CLI needs GEMINI_API_KEY set and, in ~/.gemini/settings.json,",
            '#   {"security": {"auth": {"selectedType": "gemini-api-key"}}}',
            "# (without it: 'Invalid auth method selected.')",
        ]
    return []


def confdir_of(args: Sequence[str]) -> str:
    """mitmproxy's confdir (where its CA is) as the mitmdump arguments set it."""
    for index, arg in enumerate(args):
        if arg == "--set" and index + 1 < len(args) and args[index + 1].startswith("confdir="):
            return args[index + 1].split("=", 1)[1]
    return "~/.mitmproxy"


def paste_lines(
    config: Config | None,
    host: str,
    port: int,
    reverse_target: str | None,
    confdir: str = "~/.mitmproxy",
) -> str:
    """What `ccswitch run` prints: for each configured app, the lines to paste."""
    apps = [name for name in (config.apps if config else TOOLS) if name in TOOLS]
    out = []
    for name in apps:
        spec = TOOLS[name]
        if reverse_target and reverse_target.rstrip("/") != spec.upstream:
            continue
        lines = env_lines(name, reverse=bool(reverse_target), host=host, port=port, confdir=confdir)
        out.append(f"# {spec.label}: in another shell (works without the venv active)")
        out.append(f'  eval "$({env_command(name, bool(reverse_target), port, confdir)})"')
        sets = [line.removeprefix("export ") for line in lines if not line.startswith("#")]
        out.append(f"  # sets {' '.join(sets)}")
    status = "ccswitch status"
    if (host, port) != (DEFAULT_HOST, DEFAULT_PORT):
        status += f" --proxy http://{host}:{port}"
    out.append(f"# status: {status}   dashboard: http://{host}:{port}/__ccswitch/")
    return "\n".join(out)


def ccswitch_path() -> str:
    """This ccswitch by its absolute path, so a shell without the venv on PATH finds it."""
    beside = Path(sys.executable).parent / "ccswitch"  # not resolved: the venv's own bin
    if beside.exists():
        return str(beside.absolute())
    found = shutil.which("ccswitch")
    return str(Path(found or sys.argv[0]).absolute())


def env_command(tool: str, reverse: bool, port: int, confdir: str) -> str:
    """``/abs/ccswitch env TOOL`` with the options that differ from the defaults."""
    words = [ccswitch_path(), "env", tool]
    if reverse:
        words.append("--reverse")
    if port != DEFAULT_PORT:
        words += ["--port", str(port)]
    if confdir != "~/.mitmproxy":
        words += ["--confdir", confdir]
    return shlex.join(words)


@dataclass(frozen=True)
class LaunchOptions:
    """`ccswitch run|web`'s own options; everything else goes to mitmdump/mitmweb."""

    config: str | None
    port: int | None
    help: bool
    mitm_args: list[str]


def split_launch_args(args: Sequence[str]) -> LaunchOptions:
    """Take ccswitch's options (--config, --port, -h/--help) out of a run/web command line.

    Not argparse: it would take mitmdump's own options for abbreviations or values of ours.
    After ``--`` everything is mitmdump's.
    """
    config: str | None = None
    port: int | None = None
    wants_help = False
    rest: list[str] = []
    items = list(args)
    index = 0
    while index < len(items):
        arg = items[index]
        if arg == "--":
            rest += items[index + 1 :]
            break
        name, eq, inline = arg.partition("=")
        if name in ("--config", "--port"):
            if eq:
                value = inline
            elif index + 1 < len(items):
                index += 1
                value = items[index]
            else:
                raise ValueError(f"{name} needs a value")
            if name == "--config":
                config = value
            else:
                try:
                    port = int(value)
                except ValueError:
                    raise ValueError(f"--port takes a number, got {value!r}") from None
                if not 0 < port < 65536:
                    raise ValueError(f"--port takes 1 to 65535, got {port}")
        elif arg in ("-h", "--help"):
            wants_help = True
        else:
            rest.append(arg)
        index += 1
    if port is not None:
        rest = ["--listen-port", str(port), *rest]
    return LaunchOptions(config, port, wants_help, rest)


def free_port(host: str, taken: int, tries: int = 20) -> int | None:
    """The first port after ``taken`` that nothing listens on, checked now."""
    for port in range(taken + 1, min(taken + 1 + tries, 65536)):
        if not port_taken(host, port):
            return port
    return None


# `ccswitch run`'s console: the addon's line per routed request, not mitmdump's flow and
# connection lines (passthrough traffic, the dashboard's polling). -v keeps them all.
QUIET_ARGS = ("--set", "flow_detail=0", "--set", "ccswitch_quiet=true")


def verbose(args: Sequence[str]) -> bool:
    """Whether the mitmdump arguments ask for its own lines: -v, or a flow_detail chosen."""
    return any(
        a in ("-v", "--verbose") or a.startswith(("flow_detail=", "ccswitch_quiet=")) for a in args
    )


def port_taken(host: str, port: int) -> bool:
    """Whether something listens on host:port already (mitmproxy would fail with Errno 98)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As asyncio's server does: a port held only by TIME_WAIT connections is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host or "0.0.0.0", port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


def _has(args: Sequence[str], *names: str) -> bool:
    return any(a == n or a.startswith(n + "=") for a in args for n in names)


def _value(args: Sequence[str], *names: str) -> str | None:
    for index, arg in enumerate(args):
        for name in names:
            if arg == name and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def mitm_command(program: str, args: Sequence[str]) -> tuple[list[str], str, int, str | None]:
    """The mitmdump/mitmweb command line with the addon, and the host, port and reverse target."""
    binary = Path(sys.executable).parent / program
    executable = str(binary) if binary.exists() else (shutil.which(program) or program)
    command = [executable, "-s", str(ADDON)]
    if not _has(args, "--listen-host"):
        command += ["--listen-host", DEFAULT_HOST]
    if not _has(args, "-p", "--listen-port"):
        command += ["--listen-port", str(DEFAULT_PORT)]
    command += list(args)
    host = _value(args, "--listen-host") or DEFAULT_HOST
    port = int(_value(args, "-p", "--listen-port") or DEFAULT_PORT)
    mode = _value(args, "-m", "--mode")
    if mode and "@" in mode:
        # `--mode regular@8082` (as mitmproxy suggests when 8080 is taken) listens there
        spec, _, at = mode.rpartition("@")
        where = at.rsplit(":", 1)
        if where[-1].isdigit():
            port = int(where[-1])
            if len(where) == 2 and where[0]:
                host = where[0]
        mode = spec
    reverse = mode.split(":", 1)[1] if mode and mode.startswith("reverse:") else None
    return command, host, port, reverse


def exec_mitm(command: list[str], out: TextIO) -> int:
    """Run mitmdump/mitmweb to its end; its exit code, or 130 when it was stopped by Ctrl-C.

    Run as a child rather than exec'd: mitmdump ends 0 on SIGINT, and a shell or script
    should see an interrupted run as one. Signals sent to ccswitch go on to the child.
    """
    out.flush()
    try:
        child = subprocess.Popen(command)
    except OSError as e:
        print(f"ccswitch: cannot start {command[0]}: {e}", file=sys.stderr)
        return 1
    stopped_by: list[int] = []

    def forward(signum: int, frame: object) -> None:
        stopped_by.append(signum)
        # Ctrl-C reaches the child from the terminal too; a second SIGINT only asks again
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # SIGHUP: not on Windows
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), forward)
    code = child.wait()
    if signal.SIGINT in stopped_by or code == -signal.SIGINT:
        return 128 + signal.SIGINT
    return 128 - code if code < 0 else code


def init_config(target: Path | None = None) -> tuple[bool, Path]:
    """Write the example providers.yaml and a .env for its keys beside it; (False, path) when
    a providers.yaml is there already."""
    path = target or home_config_path()
    if path.exists():
        return False, path
    path.parent.mkdir(parents=True, exist_ok=True)
    example = EXAMPLE.read_text(encoding="utf-8")
    path.write_text(example, encoding="utf-8")
    init_env(env_path(path), example)
    return True, path


def init_env(path: Path, config_text: str) -> bool:
    """A .env readable only by its owner, with a commented line per ${VAR} of the config;
    an existing one is left alone."""
    names = dict.fromkeys(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", config_text))
    lines = [
        "# Keys for providers.yaml beside this file: NAME=value, one a line (python-dotenv).",
        "# The proxy reads this file again when it changes: a key added here takes effect at",
        "# once. A variable exported in the proxy's environment wins over this file.",
        *(f"# {name}=" for name in names if name != "VAR"),
    ]
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return True
