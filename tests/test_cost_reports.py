"""Cost in the CLI: `ccswitch log` and `ccswitch usage` columns, `ccswitch check` unpriced."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from ccswitch_addon.cli.main import main
from ccswitch_addon.state.store import RequestRow, Store


def row(provider: str, cost: float | None, read: int, total: int, status: int = 200) -> RequestRow:
    return RequestRow(
        time.time() - 60, "claude", provider, "m", "m", status, None, 1, 10.0, 5.0,
        total - read, 10, False,
        cost_usd=cost, cache_read_tokens=read, cache_write_tokens=0, input_total_tokens=total,
    )  # fmt: skip


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    store = Store(path)
    store.add_request(row("backup", 0.5, 800, 1000))
    store.add_request(row("backup", 0.25, 0, 1000))
    store.add_request(row("relay", None, 0, 100))
    store.flush()
    store.close()
    return path


def test_usage_shows_cost_and_cache_hit_ratio(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["usage", "--state", str(state), "--by", "provider"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[-2:] == ["0.7500", "40.0%"]  # 800 of 2,000 input tokens read
    assert lines[2].split()[-2:] == ["-", "0.0%"]  # a model with no price: never guessed


def test_usage_marks_a_sum_that_leaves_unpriced_requests_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    store.add_request(row("mixed", 1.0, 0, 10))
    store.add_request(row("mixed", None, 0, 10))
    store.flush()
    store.close()
    assert main(["usage", "--state", str(path), "--by", "provider"]) == 0
    assert "1.0000+" in capsys.readouterr().out


def test_log_has_a_cost_column(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "--state", str(state), "--since", "1h"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "cost $" in out[0]
    assert "0.5000" in out[1]


def test_an_old_state_file_without_cost_columns_still_reads(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = sqlite3.connect(state)
    db.execute("ALTER TABLE requests DROP COLUMN cost_usd")
    db.commit()
    db.close()
    assert main(["usage", "--state", str(state), "--by", "provider"]) == 0
    assert main(["log", "--state", str(state)]) == 0


def test_check_names_unpriced_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "providers.yaml"
    config.write_text(
        """\
apps:
  claude:
    queue: [anthropic, local, priced]
    providers:
      anthropic:
        base_url: https://api.anthropic.com
        auth: passthrough
      local:
        base_url: http://127.0.0.1:11434
        auth: passthrough
        models: {"*": my-llama-70b, claude-opus-4-1: claude-opus-4-1}
      priced:
        base_url: http://127.0.0.1:11435
        auth: passthrough
        models: {"*": my-llama-70b}
        price: {input: 1, output: 2}
"""
    )
    assert main(["check", str(config)]) == 0
    out = capsys.readouterr().out
    unpriced = [line for line in out.splitlines() if line.startswith("unpriced:")]
    assert len(unpriced) == 1
    assert unpriced[0].startswith("unpriced: claude/local: my-llama-70b (")


def test_status_table_shows_spend_budget_and_windows() -> None:
    from ccswitch_addon.cli.reports import status_table

    entry = {
        "id": "max",
        "state": "budget",
        "spent_usd": {"day": 5.2, "month": 40.0},
        "budget": {"daily_usd": 5.0, "monthly_usd": None},
        "budget_reason": "daily budget $5.00 spent",
        "windows": {"status": "allowed_warning", "5h": {"utilization": 0.96}, "7d": {}},
    }
    text = status_table({"apps": {"claude": {"current": "max", "queue": [entry]}}})
    line = next(x for x in text.splitlines() if x.strip().startswith("max "))
    assert "5.20/5.00" in line
    assert "40.00" in line
    assert "96.0% / - (allowed_warning)" in line
    assert "max: daily budget $5.00 spent" in text


def test_check_says_how_each_provider_is_priced_and_limited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "providers.yaml"
    config.write_text(
        """\
apps:
  claude:
    queue: [anthropic, relay]
    providers:
      anthropic:
        base_url: https://api.anthropic.com
        auth: passthrough
        switch_at_utilization: 0.9
      relay:
        base_url: https://relay.example
        auth: passthrough
        price_multiplier: 0.5
        budget: {daily_usd: 5, monthly_usd: 100}
"""
    )
    assert main(["check", str(config)]) == 0
    out = capsys.readouterr().out
    assert "priced as anthropic  new conversations elsewhere at 90% of a window" in out
    assert "priced at the model maker's list ×0.5  budget $5.00/day, $100.00/month" in out
