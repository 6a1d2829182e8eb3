"""State, usage and control through a real mitmdump: the state file, CLI, hot reload, notify."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .fakes import FakeProvider, error, ok_json, ok_sse
from .proxy import Proxy, request, wait_until
from .test_routing import (
    BACKUP_KEY,
    BODY,
    CLIENT_HEADERS,
    claude_config,
    control,
    send,
    start,
    status,
)

pytestmark = pytest.mark.e2e

CCSWITCH = str(Path(sys.executable).parent / "ccswitch")


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def logged(proxy: Proxy, n: int) -> list[tuple[Any, ...]]:
    """The request log once n rows have been committed by the writer thread."""
    sql = (
        "SELECT app, provider, model_requested, model_sent, status, attempts, input_tokens,"
        " output_tokens, streaming FROM requests ORDER BY id"
    )
    return wait_until(
        lambda: (r := rows(proxy.state_path, sql)) and len(r) >= n and r,
        10,
        f"{n} request log rows",
    )


def test_restart_keeps_open_breaker_and_manual_switch(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    config = claude_config(primary.url, backup.url, failure_threshold=1, open_seconds=600)
    proxy = start(make_proxy, config)
    send(proxy)
    assert control(proxy, "switch", "claude", "backup").status == 200
    wait_until(
        lambda: rows(proxy.state_path, "SELECT current FROM apps") == [("backup",)],
        10,
        "the manual switch in the state file",
    )
    proxy.stop()

    proxy.start()
    claude = status(proxy)["apps"]["claude"]
    assert claude["current"] == "backup"
    assert claude["active"] == "backup"
    states = {entry["id"]: entry["state"] for entry in claude["queue"]}
    assert states == {"primary": "open", "backup": "closed"}
    hits = len(primary.requests)
    assert control(proxy, "switch", "claude", "primary").status == 200
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"  # primary stays skipped
    assert len(primary.requests) == hits


def test_expired_open_breaker_comes_back_closed(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529))
    proxy = start(
        make_proxy, claude_config(primary.url, backup.url, failure_threshold=1, open_seconds=1)
    )
    send(proxy)
    wait_until(
        lambda: rows(proxy.state_path, "SELECT state FROM breakers") == [("open",)],
        10,
        "the open breaker in the state file",
    )
    proxy.stop()
    deadline = rows(proxy.state_path, "SELECT open_until FROM breakers")[0][0]
    wait_until(lambda: time.time() > deadline, 5, "the deadline to pass")
    proxy.start()
    assert status(proxy)["apps"]["claude"]["queue"][0]["state"] == "closed"
    assert send(proxy).headers["x-ccswitch-provider"] == "primary"


@pytest.mark.parametrize(
    ("app", "url", "body", "behaviour", "expected"),
    [
        (
            "claude",
            "https://api.anthropic.com/v1/messages",
            {"model": "claude-sonnet-4-5"},
            ok_json("anthropic", input_tokens=31, output_tokens=9),
            (31, 9, 0),
        ),
        (
            "claude",
            "https://api.anthropic.com/v1/messages",
            {"model": "claude-sonnet-4-5", "stream": True},
            ok_sse("anthropic", input_tokens=32, output_tokens=8),
            (32, 8, 1),
        ),
        (
            "codex",
            "https://api.openai.com/v1/chat/completions",
            {"model": "gpt-5"},
            ok_json("openai_chat", input_tokens=41, output_tokens=6),
            (41, 6, 0),
        ),
        (
            "codex",
            "https://api.openai.com/v1/chat/completions",
            {"model": "gpt-5", "stream": True},
            ok_sse("openai_chat", input_tokens=42, output_tokens=5),
            (42, 5, 1),
        ),
        (
            "codex",
            "https://api.openai.com/v1/responses",
            {"model": "gpt-5"},
            ok_json("openai_responses", input_tokens=51, output_tokens=4),
            (51, 4, 0),
        ),
        (
            "codex",
            "https://api.openai.com/v1/responses",
            {"model": "gpt-5", "stream": True},
            ok_sse("openai_responses", input_tokens=52, output_tokens=3),
            (52, 3, 1),
        ),
        (
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:"
            "generateContent",
            {"contents": []},
            ok_json("gemini", input_tokens=61, output_tokens=2),
            (61, 2, 0),
        ),
        (
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:"
            "streamGenerateContent?alt=sse",
            {"contents": []},
            ok_sse("gemini", input_tokens=62, output_tokens=1),
            (62, 1, 1),
        ),
    ],
    ids=[
        "anthropic-json",
        "anthropic-sse",
        "chat-json",
        "chat-sse",
        "responses-json",
        "responses-sse",
        "gemini-json",
        "gemini-sse",
    ],
)
def test_request_log_and_usage(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    app: str,
    url: str,
    body: dict[str, Any],
    behaviour: Any,
    expected: tuple[int, int, int],
) -> None:
    provider = fakes("solo")
    provider.default = behaviour
    config = f"""\
apps:
  {app}:
    queue: [solo]
    providers:
      solo: {{base_url: "{provider.url}", auth: passthrough}}
"""
    proxy = start(make_proxy, config)
    reply = request(proxy, "POST", url, json=body, headers=CLIENT_HEADERS)
    assert reply.status == 200
    (row,) = logged(proxy, 1)
    assert row[0:2] == (app, "solo")
    assert row[4:6] == (200, 1)
    assert row[6:] == expected


def test_cli_against_a_running_proxy_and_the_file_alone(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529))
    proxy = start(make_proxy, claude_config(primary.url, backup.url))
    send(proxy)
    send(proxy)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CCSWITCH, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "HOME": str(proxy.tmp_path / "home")},
        )

    live = cli("status", "--proxy", proxy.url)
    assert live.returncode == 0, live.stderr
    assert "claude: current primary, active primary" in live.stdout
    assert "primary → backup (after primary: 529)" in live.stdout
    switched = cli("switch", "claude", "backup", "--proxy", proxy.url)
    assert switched.returncode == 0
    assert status(proxy)["apps"]["claude"]["current"] == "backup"
    unknown = cli("switch", "claude", "nope", "--proxy", proxy.url)
    assert unknown.returncode == 2
    assert "unknown provider 'nope'" in unknown.stderr
    assert cli("reset", "nobody", "x", "--proxy", proxy.url).returncode == 2

    logged(proxy, 2)
    usage = cli("usage", "--by", "provider", "--state", str(proxy.state_path))
    assert usage.returncode == 0
    assert [line.split()[:4] for line in usage.stdout.splitlines()[1:]] == [
        ["claude", "backup", "1", "0"],  # app, provider, requests, failures
        ["claude", "primary", "1", "0"],
    ]
    proxy.stop()

    offline = cli("status", "--proxy", proxy.url, "--state", str(proxy.state_path))
    assert offline.returncode == 0
    assert "reading the state file instead" in offline.stderr
    assert "current backup" in offline.stdout
    failovers = cli("log", "--failovers", "--state", str(proxy.state_path))
    assert "after primary: 529" in failovers.stdout


def test_locked_state_file_is_reported_once_and_routing_goes_on(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    state = tmp_path / "locked.db"
    locker = sqlite3.connect(state, isolation_level=None)
    locker.execute("PRAGMA journal_mode=DELETE")
    locker.execute("CREATE TABLE t (x)")
    locker.execute("BEGIN EXCLUSIVE")
    try:
        proxy = start(make_proxy, claude_config(primary.url, backup.url), state=state)
        assert send(proxy).status == 200
        assert proxy.output().count("cannot use the state file") == 1
        assert "state in memory only" in proxy.output()
        assert status(proxy)["state_file"] is None
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_corrupt_state_file_is_reported_and_routing_goes_on(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    state = tmp_path / "corrupt.db"
    state.write_bytes(b"\x00garbage" * 512)
    primary.queue(error(529))
    proxy = start(make_proxy, claude_config(primary.url, backup.url), state=state)
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"
    assert "file is not a database" in proxy.output()
    assert state.read_bytes() == b"\x00garbage" * 512  # never overwritten


def test_hot_reload_good_and_bad_with_traffic(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529))
    proxy = start(make_proxy, claude_config(primary.url, backup.url, failure_threshold=1))
    send(proxy)  # opens primary's breaker
    assert proxy.config_path is not None

    broken = proxy.config_path.read_text().replace("failure_threshold", "failure_treshold")
    proxy.config_path.write_text(broken)
    proxy.wait_for_output("reload refused", timeout=5)
    assert "failure_treshold: unknown key" in proxy.output()
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"  # the old config serves

    # Swap the queue order: backup first. The open breaker of primary survives the reload.
    good = claude_config(primary.url, backup.url, failure_threshold=1).replace(
        "queue: [primary, backup]", "queue: [backup, primary]"
    )
    proxy.config_path.write_text(good)
    wait_until(
        lambda: status(proxy)["apps"]["claude"]["current"] == "backup", 5, "the reloaded queue"
    )
    entries = {e["id"]: e["state"] for e in status(proxy)["apps"]["claude"]["queue"]}
    assert entries["primary"] == "open"
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"


def test_notify_command_gets_the_event(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529))
    out = tmp_path / "events.jsonl"
    proxy = start(
        make_proxy,
        claude_config(primary.url, backup.url),
        extra=["--set", f"ccswitch_notify=cat >> {out}"],
    )
    send(proxy)
    text = wait_until(lambda: out.exists() and out.read_text(), 10, "the notify command")
    event = json.loads(text.splitlines()[0])
    assert (event["app"], event["from"], event["to"]) == ("claude", "primary", "backup")
    assert BACKUP_KEY not in text


def test_dashboard_served(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    proxy = start(make_proxy, claude_config(primary.url, backup.url))
    page = request(proxy, "GET", "http://ccswitch.local/")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert b"<script" in page.body
    # No external assets; the SVG namespace is a name, never fetched.
    local = page.body.replace(b"http://ccswitch.local", b"")
    assert b"http://" not in local.replace(b'"http://www.w3.org/2000/svg"', b"")
    assert b"https://" not in page.body
    assert BODY  # keeps the shared helpers in use
