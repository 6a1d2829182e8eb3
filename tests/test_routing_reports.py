"""What `ccswitch check`, `ccswitch status` and `ccswitch log` say about routes, conversations
and key pools (keys masked everywhere)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from ccswitch_addon.cli.main import main
from ccswitch_addon.cli.reports import log_rows, status_table
from ccswitch_addon.state.store import RequestRow, Store

KEY_1 = "sk-pool-one-0123456789"
KEY_2 = "sk-pool-two-9876543210"
CONFIG = """\
apps:
  claude:
    queue: [official, relay]
    failback: at_once
    routes:
      - name: small
        when: {model: ["*haiku*", "*mini*"], thinking: false}
        queue: [relay]
    providers:
      official: {base_url: "https://o.example", auth: passthrough}
      relay:
        base_url: https://relay.example
        api_keys: ["${CCSW_POOL_1}", "${CCSW_POOL_2}"]
"""


def test_check_lists_each_masked_key_and_the_routes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CCSW_POOL_1", KEY_1)
    monkeypatch.setenv("CCSW_POOL_2", KEY_2)
    path = tmp_path / "providers.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "pool of 2 keys" in out
    assert "key 1: sk-p…6789  ready" in out
    assert "key 2: sk-p…3210  ready" in out
    assert "route small: model *haiku*, *mini*; thinking False → relay" in out
    assert "affinity: 300s, failback at_once" in out
    assert KEY_1 not in out
    assert KEY_2 not in out


def test_status_table_shows_routes_conversations_and_keys() -> None:
    app = {
        "current": "official",
        "active": "official",
        "queue": [{"id": "official", "state": "closed"}, {"id": "relay", "state": "closed"}],
        "routes": [
            {
                "name": "small",
                "when": {"model": ["*haiku*"]},
                "queue": ["relay"],
                "current": "relay",
                "active": None,
            }
        ],
        "affinity_seconds": 300.0,
        "failback": "idle",
        "conversations": {"official": 3, "relay": 1},
        "keys": {
            "relay": [
                {"key": "sk-p…6789", "state": "ready", "conversations": 2},
                {
                    "key": "sk-p…3210",
                    "state": "cooldown",
                    "conversations": 0,
                    "cooldown_until": 1030.0,
                    "cooldown_reason": "429",
                },
            ]
        },
    }
    table = status_table({"apps": {"claude": app}, "events": []}, now=1000.0)
    assert "route small (model: *haiku*): relay; current relay, active -" in table
    assert "affinity 300s, failback idle; live conversations: official 3, relay 1" in table
    assert "keys of relay: sk-p…6789 ready (2 conv.), sk-p…3210 cooldown in 30s (0 conv.)" in (
        table
    )


def test_log_shows_the_route_and_why(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    row = RequestRow(1000.0, "claude", "relay", "m", "m", 200, None, 1, 5.0, 2.0, 1, 1, False)
    store.add_request(
        row._replace(route="small", why="affinity: conversation 4f2a… stays on relay")
    )
    store.add_request(row._replace(time=1001.0))
    store.flush()
    store.close()
    with closing(sqlite3.connect(path)) as db:
        header, rows = log_rows(db, None, 3600, False, now=1100.0)
    assert header[-1] == "why"
    assert rows[0][-1] == "route small; affinity: conversation 4f2a… stays on relay"
    assert rows[1][-1] == ""
