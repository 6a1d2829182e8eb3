"""The ccswitch command as a new user meets it: which file, help, names, ports, quiet exits."""

from __future__ import annotations

import argparse
import http.server
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccswitch_addon.cli.launch import EXAMPLE, mitm_command, paste_lines
from ccswitch_addon.cli.main import build_parser, main
from ccswitch_addon.cli.reports import status_table
from ccswitch_addon.state.store import RequestRow, Store

CCSWITCH = Path(sys.executable).parent / "ccswitch"
ONE_APP = """\
apps:
  claude:
    queue: [a]
    providers:
      a: {base_url: "http://127.0.0.1:1", auth: passthrough}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME and an empty working directory, as in a new user's first session."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CCSWITCH_CONFIG", raising=False)
    monkeypatch.chdir(work)
    return home


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCSWITCH")}
    return {**env, "HOME": str(home)}


# --- one config, always named ------------------------------------------------------------


def test_the_repo_example_is_a_real_file_equal_to_the_package_copy() -> None:
    repo = Path(__file__).resolve().parents[1] / "providers.yaml"
    assert not repo.is_symlink()
    assert repo.read_bytes() == EXAMPLE.read_bytes()


def test_every_command_names_the_file_it_reads(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = home / "mine.yaml"
    mine.write_text(ONE_APP)
    assert main(["init"]) == 0
    written = home / ".ccswitch" / "providers.yaml"
    assert capsys.readouterr().err == ""  # nothing here takes precedence over it
    assert main(["check"]) == 0
    assert capsys.readouterr().err.splitlines()[0] == f"config: {written} (the default)"

    Path("providers.yaml").write_text(ONE_APP)
    assert main(["check"]) == 0
    here = Path.cwd() / "providers.yaml"
    assert capsys.readouterr().err.splitlines()[0] == f"config: {here} (in the current directory)"

    monkeypatch.setenv("CCSWITCH_CONFIG", str(mine))
    assert main(["check"]) == 0
    assert capsys.readouterr().err.splitlines()[0] == f"config: {mine} ($CCSWITCH_CONFIG)"
    assert main(["check", "--config", str(written)]) == 0
    assert capsys.readouterr().err.splitlines()[0] == f"config: {written} (--config)"


def test_init_says_when_a_file_here_takes_precedence(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("providers.yaml").write_text(ONE_APP)
    assert main(["init"]) == 0
    out, err = capsys.readouterr()
    written = home / ".ccswitch" / "providers.yaml"
    assert out.startswith(f"wrote {written}")
    assert "providers.yaml in this directory" in err
    assert "takes precedence" in err
    assert f"--config {written}" in err


def test_an_app_with_no_usable_provider_fails_check(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("providers.yaml").write_text(
        ONE_APP.replace("auth: passthrough", 'api_key: "${CCSW_NEVER_SET}"')
    )
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert "error: providers.yaml:3: apps.claude.queue: claude has no usable provider" in err


# --- help -------------------------------------------------------------------------------


def test_every_subcommand_and_argument_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    listed = {choice.dest: choice.help for choice in sub._choices_actions}
    assert set(listed) == set(sub.choices)
    for name, command in sub.choices.items():
        assert listed[name], f"{name} has no one-line description"
        assert command.description, name
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"ccswitch {name} {action.dest} has no help"


@pytest.mark.parametrize(("name", "program"), [("run", "mitmdump"), ("web", "mitmweb")])
def test_run_and_web_help_show_ccswitch_options_first(name: str, program: str) -> None:
    result = subprocess.run(
        [str(CCSWITCH), name, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"usage: ccswitch {name} [--config PATH] [--port PORT] [{program} options …]"
    assert "--config PATH" in result.stdout
    assert "--port PORT" in result.stdout
    assert f"Every other argument goes to {program} unchanged" in " ".join(result.stdout.split())
    assert len(lines) < 30  # not mitmdump's 200 lines
    assert "--anticache" not in result.stdout


# --- names --------------------------------------------------------------------------------


def test_log_with_an_unknown_app_lists_the_known_ones(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("providers.yaml").write_text(ONE_APP)
    state = tmp_path / "state.db"
    Store(state).close()
    assert main(["log", "--app", "nope", "--state", str(state)]) == 2
    assert "ccswitch: unknown app 'nope'; known: claude" in capsys.readouterr().err
    assert main(["log", "--app", "claude", "--state", str(state)]) == 0


def test_status_explains_current_active_counts_and_a_refused_reload() -> None:
    status = {
        "apps": {
            "claude": {
                "current": "a",
                "active": "b",
                "queue": [{"id": "a", "state": "open", "requests": 3}],
            }
        },
        "events": [],
        "config_error": {"message": "p.yaml:3: apps.claude.queue: duplicate key", "since": 0.0},
    }
    text = status_table(status, now=10.0)
    assert "current: the provider an app tries first" in text
    assert "active: the provider that served its last request" in text
    assert "attempts sent to each provider in the last hour" in text
    assert "CONFIG ERROR since" in text
    assert "  p.yaml:3: apps.claude.queue: duplicate key" in text


def test_usage_says_what_it_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.db"
    Store(state).close()
    assert main(["usage", "--state", str(state)]) == 0
    assert "one row per client request" in capsys.readouterr().err


# --- ports ----------------------------------------------------------------------------------


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_taken_port_is_found_before_mitmdump_starts(
    home: Path, listening: int, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("providers.yaml").write_text(ONE_APP)
    assert main(["run", "--port", str(listening)]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # no paste block pointing at the other process
    assert f"127.0.0.1:{listening} is in use already" in err
    assert (
        f"Is ccswitch already running? (`ccswitch status --proxy http://127.0.0.1:{listening}`)"
        in err
    )
    suggested = int(re.search(r"ccswitch run --port (\d+) \(free now\)", err).group(1))  # type: ignore[union-attr]
    assert suggested != listening
    with socket.socket() as check:  # the suggestion was checked: it binds
        check.bind(("127.0.0.1", suggested))


def _two_taken_ports() -> tuple[socket.socket, socket.socket]:
    """Two listening sockets on neighbouring ports (retried until a neighbour is free)."""
    for _ in range(50):
        a = socket.socket()
        a.bind(("127.0.0.1", 0))
        a.listen()
        b = socket.socket()
        try:
            b.bind(("127.0.0.1", a.getsockname()[1] + 1))
        except OSError:  # the neighbour is someone else's: try another pair
            a.close()
            b.close()
            continue
        b.listen()
        return a, b
    raise AssertionError("no two neighbouring free ports in 50 tries")


def test_the_suggested_port_skips_taken_ones() -> None:
    from ccswitch_addon.cli.launch import free_port

    a, b = _two_taken_ports()
    with a, b:
        first = a.getsockname()[1]
        found = free_port("127.0.0.1", first)
        assert found is not None
        assert found > first + 1


def test_the_printed_lines_follow_the_port() -> None:
    _command, host, port, _ = mitm_command("mitmdump", ["--listen-port", "8082"])
    assert port == 8082
    text = paste_lines(None, host, port, None)
    assert "HTTPS_PROXY=http://127.0.0.1:8082" in text
    assert "ccswitch status --proxy http://127.0.0.1:8082" in text
    _, _, port, _ = mitm_command("mitmdump", ["--mode", "regular@8083"])
    assert port == 8083
    _, _, port, reverse = mitm_command("mitmdump", ["--mode", "reverse:https://x.example@8084"])
    assert (port, reverse) == (8084, "https://x.example")


# --- quiet exits ----------------------------------------------------------------------------


def test_a_pipe_closed_early_ends_quietly(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    store = Store(state)
    now = time.time()
    for index in range(4000):  # far more than a pipe buffer holds
        store.add_request(
            RequestRow(
                now - index * 0.1, "claude", "a", "m", "m", 200, None, 1, 1.0, 1.0, 1, 1, False
            )
        )
    store.close()
    with subprocess.Popen(
        [str(CCSWITCH), "log", "--since", "1d", "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        assert process.stdout.readline().startswith(b"time")
        process.stdout.close()  # as `| head -1` does
        err = process.stderr.read().decode()
        assert process.wait(timeout=60) == 141
    assert err == ""


@pytest.mark.e2e
def test_ctrl_c_in_the_demo_ends_quietly_and_stops_the_proxy(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"  # where the demo makes its working directory
    temp.mkdir()
    with subprocess.Popen(
        [str(CCSWITCH), "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**clean_env(tmp_path), "TMPDIR": str(temp)},
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        seen = b""
        while b"proxy on" not in seen:  # the demo's own 30 s start deadline bounds this
            line = process.stdout.readline()
            if not line:
                break
            seen += line
        assert b"proxy on" in seen, seen
        port = int(seen.split(b"proxy on http://127.0.0.1:")[1].split(b";")[0])
        process.send_signal(signal.SIGINT)
        process.stdout.read()
        err = process.stderr.read().decode()
        assert process.wait(timeout=30) == 130, err
    assert "Traceback" not in err
    assert not ccswitch_listens(port)
    assert list(temp.iterdir()) == []  # its files go with it


def ccswitch_listens(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_init_writes_a_private_env_file_and_check_names_where_keys_come_from(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("OPENROUTER_API_KEY", "DEEPSEEK_API_KEY", "GEMINI_BACKUP_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["init"]) == 0
    env = home / ".ccswitch" / ".env"
    assert f"keys go in {env} (mode 0600)" in capsys.readouterr().out
    assert env.stat().st_mode & 0o777 == 0o600
    text = env.read_text()
    for name in ("OPENROUTER_API_KEY", "DEEPSEEK_API_KEY", "GEMINI_BACKUP_API_KEY"):
        assert f"# {name}=\n" in text
    assert main(["check"]) == 0
    out, err = capsys.readouterr()
    assert "add DEEPSEEK_API_KEY to ~/.ccswitch/.env (takes effect at once)" in err

    env.write_text(text + "OPENROUTER_API_KEY=sk-or-from-file-1234\n")
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-ds-from-env-5678")
    assert main(["check"]) == 0
    out, err = capsys.readouterr()
    assert "key sk-o…1234 (from ~/.ccswitch/.env)" in out
    assert "key sk-d…5678 (from environment)" in out
    assert "sk-or-from-file-1234" not in out + err
    assert "other users can read" not in err

    env.chmod(0o644)
    assert main(["check"]) == 0
    assert f"warning: {env}: other users can read its keys: chmod 600 {env}" in (
        capsys.readouterr().err
    )


# --- the second hour: foreign servers, which file, lines for any shell -----------------------


class _Foreign(http.server.BaseHTTPRequestHandler):
    body = b'{"hello": "world"}'
    code = 200

    def do_GET(self) -> None:
        self.send_response(self.code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("code", "body"),
    [
        (200, b'{"hello": "world"}'),
        (200, b"<html>hi</html>"),
        (200, b"[1, 2]"),
        (404, b'{"detail": "Not Found"}'),
        (502, b"<html>Bad Gateway</html>"),
    ],
)
def test_status_against_a_server_that_is_not_ccswitch(
    home: Path, capsys: pytest.CaptureFixture[str], code: int, body: bytes
) -> None:
    handler = type("Handler", (_Foreign,), {"body": body, "code": code})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert main(["status", "--proxy", url]) == 2
    finally:
        server.shutdown()
        server.server_close()
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"ccswitch: no ccswitch at {url} (it answered")
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["switch", "reset"])
@pytest.mark.parametrize(
    ("code", "body"), [(200, b'{"hello": "world"}'), (200, b"[1]"), (404, b'{"detail": "x"}')]
)
def test_switch_against_a_server_that_is_not_ccswitch(
    home: Path, capsys: pytest.CaptureFixture[str], command: str, code: int, body: bytes
) -> None:
    # a server that answers JSON to anything must not look like a switch that worked
    handler = type("Handler", (_Foreign,), {"body": body, "code": code})
    handler.do_POST = handler.do_GET  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert main([command, "claude", "backup", "--proxy", url]) == 2
    finally:
        server.shutdown()
        server.server_close()
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"ccswitch: no ccswitch at {url} (it answered {code}: ")


def test_env_warns_when_no_proxy_listens(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    assert main(["env", "claude", "--port", str(port)]) == 0
    out, err = capsys.readouterr()
    assert f"export HTTPS_PROXY=http://127.0.0.1:{port}" in out
    assert f"warning: no proxy listens on 127.0.0.1:{port}" in err
    assert f"until `ccswitch run --port {port}` is started" in err


def test_run_prints_eval_lines_with_an_absolute_path() -> None:
    text = paste_lines(None, "127.0.0.1", 8080, None)
    line = next(line for line in text.splitlines() if "env claude" in line)
    command = line.strip().removeprefix('eval "$(').removesuffix(')"')
    program = shlex.split(command)[0]
    assert Path(program).is_absolute()
    assert Path(program).exists()
    assert shlex.split(command)[1:] == ["env", "claude"]
    assert "--port 8082" in paste_lines(None, "127.0.0.1", 8082, None)


def test_an_absolute_eval_line_works_in_a_shell_without_the_venv(tmp_path: Path) -> None:
    line = next(
        line.strip()
        for line in paste_lines(None, "127.0.0.1", 8080, None).splitlines()
        if "env claude" in line
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no venv on PATH
    result = subprocess.run(
        ["bash", "-c", f'{line} && echo "proxy=$HTTPS_PROXY ca=$NODE_EXTRA_CA_CERTS"'],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "proxy=http://127.0.0.1:8080 ca=" in result.stdout
    assert result.stdout.strip().endswith("mitmproxy-ca-cert.pem")


def test_run_and_status_say_when_a_local_file_hides_the_home_one(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ccswitch_addon.cli.configfile import shadowing_notice

    assert main(["init"]) == 0
    capsys.readouterr()
    Path("providers.yaml").write_text(ONE_APP)
    shadowing_notice(Path("providers.yaml"), sys.stderr)
    err = capsys.readouterr().err
    assert f"ccswitch: note: using {Path.cwd() / 'providers.yaml'}; " in err
    assert "~/.ccswitch/providers.yaml is ignored because of it" in err
    shadowing_notice(home / ".ccswitch" / "providers.yaml", sys.stderr)
    assert capsys.readouterr().err == ""


def test_run_is_quiet_unless_verbose(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_main = sys.modules["ccswitch_addon.cli.main"]  # the package exports main() itself
    started: list[list[str]] = []
    monkeypatch.setattr(cli_main, "exec_mitm", lambda command, out: started.append(command) or 0)
    Path("providers.yaml").write_text(ONE_APP)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["run", "--port", str(port)]) == 0
    assert main(["run", "--port", str(port), "-v"]) == 0
    assert main(["run", "--port", str(port), "--set", "flow_detail=2"]) == 0
    quiet, verbose, chosen = started
    assert "flow_detail=0" in quiet
    assert "ccswitch_quiet=true" in quiet
    assert "flow_detail=0" not in verbose
    assert "-v" in verbose
    assert "flow_detail=0" not in chosen
    out = capsys.readouterr().out
    assert 'eval "$(/' in out  # the absolute path, for a shell without the venv
