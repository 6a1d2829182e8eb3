"""The dashboard after the second hour: honest why, chains and switches after a restart,
series colours of their own, and the untrusted-CA warning; in a real headless Chromium."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from .browser import Browser, loaded_again, need_chromium
from .fakes import FakeProvider, error, ok_json
from .proxy import Proxy, wait_until
from .test_routing import claude_config, send, start
from .test_second_hour import _untrusting_handshake

pytestmark = pytest.mark.e2e

ROWS = "[...document.querySelectorAll('%s')]"


def open_dashboard(browser: Browser, proxy: Proxy) -> None:
    browser.goto(f"http://127.0.0.1:{proxy.port}/__ccswitch/")
    browser.wait_for("document.body && document.body.getAttribute('data-loaded') === '1'")


def text(browser: Browser, selector: str) -> str:
    return str(browser.evaluate(f"document.querySelector({selector!r})?.textContent ?? ''"))


def logged(path: Path) -> int:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM requests").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_why_chains_switches_colours_and_the_ca_warning(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    need_chromium()
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529))
    backup.default = ok_json()
    primary.default = ok_json()
    config = claude_config(primary.url, backup.url, failure_threshold=3)
    proxy = start(make_proxy, config)
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"  # primary 529 → backup
    wait_until(lambda: logged(proxy.state_path) == 1, 10, "the request logged")
    with Browser() as browser:
        open_dashboard(browser, proxy)
        why = text(browser, "[data-reason=primary]")
        assert why.startswith("1 failure(s) in a row, the last 529 at "), why
        strokes = set(browser.evaluate(ROWS % "polyline" + ".map(p => p.getAttribute('stroke'))"))
        states = set(browser.evaluate("Object.values(STATE_COLOURS)"))
        assert strokes, "no series drawn"
        assert not strokes & states  # red means "open", never a provider
        legend = browser.evaluate(ROWS % "[data-legend=series] span" + ".map(s => s.textContent)")
        assert legend == ["primary", "backup"]
        dashes = browser.evaluate(
            ROWS % "polyline" + ".map(p => p.getAttribute('stroke-dasharray'))"
        )
        assert len(set(dashes[:2])) == 2  # two providers: two different lines

        _untrusting_handshake(proxy)
        loaded_again(browser)
        banner = text(browser, "#banner")
        assert "warning: a client (claude at 127.0.0.1, for api.anthropic.com)" in banner
        assert "does not trust the proxy's CA" in banner
        browser.screenshot(tmp_path / "warning.png")

    proxy.stop()
    again = start(make_proxy, config)  # the same state file
    with Browser() as browser:
        open_dashboard(browser, again)
        chain = text(browser, "tr.request td.chain")
        assert chain == "primary 529 → backup 200"  # from the state file, not "2 attempts"
        events: list[Any] = browser.evaluate(
            ROWS % "tr.event" + ".map(r => [...r.children].map(td => td.textContent))"
        )
        assert [e[2:5] for e in events] == [["primary", "backup", "after primary: 529"]]
        browser.screenshot(tmp_path / "after-restart.png")
        print(f"screenshots in {tmp_path}")
