"""What the CLI prints from the state file alone: status, log, usage; and its errors."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from ccswitch_addon.cli.main import main
from ccswitch_addon.cli.reports import format_table, parse_since, status_table
from ccswitch_addon.core.breaker import State
from ccswitch_addon.state.store import BreakerRow, RequestRow, Store

CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    providers:
      primary: {base_url: "http://127.0.0.1:1", auth: passthrough}
      backup: {base_url: "http://127.0.0.1:2", auth: passthrough}
"""


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    now = time.time()
    store = Store(path)
    store.save_app("claude", "primary", "backup")
    store.save_breaker(BreakerRow("claude", "primary", State.OPEN, now + 50, 0.0))
    store.add_event(now - 10, "claude", "primary", "backup", "after primary: 529")
    for index in range(3):
        store.add_request(
            RequestRow(
                now - 60 * index,
                "claude",
                "backup",
                "claude-x",
                "vendor/x",
                200,
                None,
                2,
                20.0,
                5.0,
                100,
                10 + index,
                True,
            )
        )
    store.add_request(
        RequestRow(
            now - 7200,
            "claude",
            "primary",
            "claude-x",
            "claude-x",
            529,
            None,
            1,
            3.0,
            2.0,
            None,
            None,
            False,
        )
    )
    store.flush()
    store.close()
    return path


def test_parse_since() -> None:
    assert parse_since("90s") == 90
    assert parse_since("30m") == 1800
    assert parse_since("1h") == 3600
    assert parse_since("7d") == 7 * 86400
    with pytest.raises(ValueError, match="like 1h"):
        parse_since("yesterday")


def test_format_table_aligns_columns() -> None:
    text = format_table(["a", "long header"], [["xxxxx", None], ["y", 2]])
    assert text.splitlines() == ["a      long header", "xxxxx  -", "y      2"]


def test_status_from_the_state_file_when_no_proxy_answers(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "providers.yaml"
    config.write_text(CONFIG)
    code = main(
        ["status", "--proxy", closed_port(), "--state", str(state), "--config", str(config)]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "no proxy answers at" in captured.err
    assert "reading the state file instead" in captured.err
    assert "the proxy is not running" in captured.out
    assert "claude: current primary, active backup" in captured.out
    primary = next(line for line in captured.out.splitlines() if line.strip().startswith("primary"))
    assert "open" in primary
    assert "primary → backup (after primary: 529)" in captured.out


def test_status_without_proxy_or_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["status", "--proxy", closed_port(), "--state", str(tmp_path / "none.db")])
    assert code == 1
    assert "no state file" in capsys.readouterr().err


def test_log_recent_requests(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "--state", str(state), "--since", "1h"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["time", "app", "provider"]
    assert len(out) == 4  # the 2-hour-old row is outside --since
    assert all("claude-x → vendor/x" in line for line in out[1:])


def test_log_failovers_and_app_filter(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "--state", str(state), "--failovers"]) == 0
    out = capsys.readouterr().out
    assert "after primary: 529" in out
    assert main(["log", "--state", str(state), "--app", "codex"]) == 0
    assert "(nothing in that time)" in capsys.readouterr().out


def test_log_bad_since(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "--state", str(state), "--since", "soon"]) == 2
    assert "--since takes" in capsys.readouterr().err


def test_usage_by_provider(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--state", str(state), "--by", "provider"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "app",
        "provider",
        "requests",
        "failures",
        "input",
        "tokens",
        "output",
        "tokens",
        "cost",
        "$",
        "cache",
        "hit",
    ]
    backup = lines[1].split()
    primary = lines[2].split()
    assert backup == ["claude", "backup", "3", "0", "300", "33", "-", "-"]  # without prices
    assert primary == ["claude", "primary", "1", "1", "0", "0", "-", "-"]


@pytest.mark.parametrize("by", ["provider", "day"])
def test_usage_keeps_apps_with_the_same_provider_id_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], by: str
) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    for app, count in (("claude", 1), ("codex", 2), ("gemini", 3)):
        for _ in range(count):
            row = RequestRow(
                time.time(), app, "backup", "m", "m", 200, None, 1, 1.0, 1.0, 7, 1, False
            )
            store.add_request(row)
    store.flush()
    store.close()
    assert main(["usage", "--state", str(path), "--by", by]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-12:-10] == ["app", "provider"]
    rows = [line.split()[-8:-5] for line in lines[1:]]
    assert rows == [["claude", "backup", "1"], ["codex", "backup", "2"], ["gemini", "backup", "3"]]


def test_usage_by_day(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["day", "app", "provider"]
    assert "backup" in out


def test_missing_state_file_for_log_and_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["log", "--state", str(tmp_path / "x.db")]) == 1
    assert main(["usage", "--state", str(tmp_path / "x.db")]) == 1
    assert capsys.readouterr().err.count("no state file") == 2


def test_switch_without_a_proxy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["switch", "claude", "backup", "--proxy", closed_port()]) == 1
    assert "no proxy answers at" in capsys.readouterr().err


def test_status_table_shows_reopen_time() -> None:
    status = {
        "apps": {
            "claude": {
                "current": "a",
                "active": None,
                "queue": [
                    {"id": "a", "state": "open", "reopens_at": 1030.0, "consecutive_failures": 0}
                ],
            }
        },
        "events": [],
    }
    assert "in 30s" in status_table(status, now=1000.0)


def test_status_table_shows_warnings() -> None:
    status = {
        "apps": {
            "claude": {"current": "a", "active": None, "queue": [{"id": "a", "state": "closed"}]}
        },
        "warnings": ["a client (claude at 127.0.0.1, …) does not trust the proxy's CA: run …"],
    }
    assert "WARNING: a client (claude at 127.0.0.1, …) does not trust the proxy's CA" in (
        status_table(status, now=1000.0)
    )


def test_status_table_of_a_team_gateway_instance() -> None:
    status = {
        "instance": "gw1:4242",
        "redis": {"url": "redis://:***@r:6379", "prefix": "ccsw", "reachable": False},
        "apps": {
            "claude": {
                "current": "primary",
                "active": "backup",
                "queue": [{"id": "primary", "state": "open", "changed_by": "gw2:77"}],
            }
        },
    }
    table = status_table(status, now=1000.0)
    assert table.splitlines()[0] == (
        "instance gw1:4242, Redis redis://:***@r:6379 (UNREACHABLE, on local breakers), prefix ccsw"
    )
    assert "changed by" in table
    assert "gw2:77" in table


def test_log_and_usage_say_the_log_is_this_instances(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("log", "usage"):
        assert main([command, "--state", str(state)]) == 0
        assert "each instance of a team gateway keeps its own" in capsys.readouterr().err


def test_log_shows_each_requests_chain_and_why_there_was_no_failover(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    now = time.time()
    chain = (
        '[{"provider": "official", "ms": 5, "status": 529},'
        ' {"provider": "openrouter", "ms": 9, "status": 200}]'
    )
    store.add_request(
        RequestRow(
            now - 2,
            "claude",
            "openrouter",
            "m",
            "m",
            200,
            None,
            2,
            14.0,
            9.0,
            1,
            2,
            False,
            chain=chain,
        )
    )
    store.add_request(
        RequestRow(
            now - 1, "claude", "official", "m", "m", 529, None, 1, 5.0, 5.0, None, None, False,
            chain='[{"provider": "official", "ms": 5, "status": 529}]',
            note="no failover: deepseek disabled (DEEPSEEK_API_KEY not set)",
        )
    )  # fmt: skip
    store.flush()
    store.close()
    assert main(["log", "--state", str(path)]) == 0
    out = capsys.readouterr().out
    assert "official 529 → openrouter 200" in out
    assert "official 529; no failover: deepseek disabled (DEEPSEEK_API_KEY not set)" in out
    assert out.splitlines()[0].split()[:6] == [
        "time",
        "app",
        "provider",
        "model",
        "result",
        "chain",
    ]


def test_log_rows_of_an_older_state_file_show_a_count(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["log", "--state", str(state)]) == 0
    assert "2 attempt(s)" in capsys.readouterr().out
