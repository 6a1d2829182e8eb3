"""The README's first-run commands, exercised so they cannot rot."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ccswitch_addon.cli.client import call

from .fakes import FakeProvider
from .proxy import Proxy, wait_until

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


def clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("https_proxy", "http_proxy", "all_proxy", "no_proxy")
    }
    env["HOME"] = str(home)
    return env


def leftover(marker: str) -> list[str]:
    """Command lines of processes still running that mention marker."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(cmdline)
    return found


def test_demo_shows_failover_and_recovery_and_leaves_nothing_running(tmp_path: Path) -> None:
    started = time.monotonic()
    temp = tmp_path / "tmp"  # where the demo makes its working directory
    temp.mkdir()
    result = subprocess.run(
        [str(BIN / "ccswitch"), "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean_env(tmp_path), "TMPDIR": str(temp)},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 60
    out = result.stdout
    for line in (
        "switch: primary → backup (after primary: 529)",
        "breaker primary: closed → open",
        "breaker primary: open → half_open",
        "breaker primary: half_open → closed",
        "switch: backup → primary (recovered)",
        "the providers saw only their own key, never the tool's",
        "demo: failover and recovery shown",
    ):
        assert line in out, out
    served = re.findall(r"^#\d+\s+200 from (\w+)", out, re.M)
    assert served[:2] == ["primary"] * 2
    # each line says something new; the threshold line says why the primary was tried again
    lines = [line.split(") ", 1)[-1] for line in out.splitlines() if line.strip()]
    assert len(lines) == len(set(lines)), out
    assert out.count("Failover kept this session going") == 1
    explained = " ".join(out.split())
    assert "the primary was tried first again although the switch to the backup was" in explained
    assert "failure_threshold failures in a row (2 in this demo" in explained
    assert "backup" in served
    assert served[-1] == "primary"
    # without --keep it leaves no process and no files behind
    assert "state file:" not in out
    assert leftover(str(temp)) == []
    assert list(temp.iterdir()) == []


def test_ccswitch_run_starts_and_answers_the_status_host(
    fakes: Callable[[str], FakeProvider], tmp_path: Path
) -> None:
    primary = fakes("primary")
    config = tmp_path / "providers.yaml"
    config.write_text(f"""\
apps:
  claude:
    queue: [primary]
    providers:
      primary: {{base_url: "{primary.url}", auth: passthrough}}
""")
    log = (tmp_path / "run.log").open("w")
    process = subprocess.Popen(
        [
            str(BIN / "ccswitch"),
            "run",
            "--listen-port",
            "0",
            "--set",
            f"confdir={tmp_path}/conf",
            "--set",
            f"ccswitch_state={tmp_path}/state.db",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env=clean_env(tmp_path),
    )
    try:
        text = wait_until(
            lambda: re.search(
                r"listening at 127\.0\.0\.1:(\d+)", (tmp_path / "run.log").read_text()
            ),
            20,
            "ccswitch run to listen",
        )
        port = int(text.group(1))
        output = (tmp_path / "run.log").read_text()
        assert "# Claude Code:" in output
        assert "NODE_EXTRA_CA_CERTS=" in output
        code, document = call(f"http://127.0.0.1:{port}", "GET", "/status")
        assert code == 200
        assert document["apps"]["claude"]["queue"][0]["id"] == "primary"
        assert document["config"].endswith("providers.yaml")
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def test_first_run_without_any_config_says_where_it_looked(
    make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    proxy = make_proxy(None, start=False)
    proxy.start(expect_exit=True)
    assert proxy.wait_exit() != 0
    output = proxy.output()
    assert "no such file" in output
    assert "looked for ./providers.yaml and ~/.ccswitch/providers.yaml" in output
    assert "ccswitch init" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("option", "said"),
    [
        ("ccswitch_redis_down=maybe", "ccswitch_redis_down: one of keep_open, local, got 'maybe'"),
        ("ccswitch_redis=foo://me:pw@x", "ccswitch_redis: expected a redis://"),
    ],
)
def test_a_bad_redis_option_at_start_is_one_line(tmp_path: Path, option: str, said: str) -> None:
    # raising at start made mitmproxy's option rollback configure again, and recurse
    (tmp_path / "providers.yaml").write_text(
        "apps:\n  claude:\n    queue: [a]\n    providers:\n"
        '      a: {base_url: "http://127.0.0.1:9", auth: passthrough}\n'
    )
    command = ["run", "--listen-port", "0", "--set", f"confdir={tmp_path}/c"]
    done = subprocess.run(
        [str(BIN / "ccswitch"), *command, "--set", "ccswitch_state=", "--set", option],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(tmp_path),
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert said in output
    assert "recursion" not in output
    assert "Traceback" not in output
    assert "me:pw" not in output
    assert len(output.splitlines()) < 15


def test_run_with_a_named_config_that_is_missing_names_only_that_file(tmp_path: Path) -> None:
    # it announced ./providers.yaml, then said it had looked there and in ~/.ccswitch
    (tmp_path / "providers.yaml").write_text("apps: {}\n")
    missing = tmp_path / "nonexistent.yaml"
    command = ["run", "--listen-port", "0", "--set", f"confdir={tmp_path}/c"]
    done = subprocess.run(
        [str(BIN / "ccswitch"), *command, "--set", f"ccswitch_config={missing}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(tmp_path),
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"config: {missing}" in output
    assert f"{missing}: no such file" in output
    assert "looked for" not in output
    assert f"config: {tmp_path / 'providers.yaml'}" not in output


def test_ctrl_c_on_ccswitch_run_exits_130_and_stops_mitmdump(tmp_path: Path) -> None:
    # mitmdump ends 0 on SIGINT; exec'd in ccswitch's place, an interrupted run looked clean
    (tmp_path / "providers.yaml").write_text(
        "apps:\n  claude:\n    queue: [a]\n    providers:\n"
        '      a: {base_url: "http://127.0.0.1:9", auth: passthrough}\n'
    )
    log = (tmp_path / "run.log").open("w")
    command = ["run", "--listen-port", "0", "--set", f"confdir={tmp_path}/conf"]
    process = subprocess.Popen(
        [str(BIN / "ccswitch"), *command, "--set", "ccswitch_state="],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env=clean_env(tmp_path),
    )
    try:
        wait_until(lambda: "listening at" in (tmp_path / "run.log").read_text(), 30, "ccswitch run")
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
        assert wait_until(lambda: leftover(f"confdir={tmp_path}/conf") == [], 15, "mitmdump")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()
