"""The dashboard, rendered by a real headless Chromium through the proxy."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Callable
from contextlib import closing
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .browser import Browser, loaded_again, need_chromium
from .fakes import FakeProvider, error
from .proxy import Proxy, reverse_request, wait_until
from .test_routing import BODY, claude_config, provider_status, send, start, status

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Dashboard(HTMLParser):
    """Badges per provider and the switch events, as the rendered DOM shows them."""

    def __init__(self) -> None:
        super().__init__()
        self.badges: dict[str, str] = {}
        self.states: dict[str, str] = {}
        self.events: list[list[str]] = []
        self.loaded = False
        self.dom = ""
        self._provider: str | None = None
        self._in_state = False
        self._event: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "body" and attributes.get("data-loaded") == "1":
            self.loaded = True
        if tag == "tr" and "data-provider" in attributes:
            self._provider = attributes["data-provider"]
        if tag == "tr" and attributes.get("class") == "event":
            self._event = []
        if tag == "span" and "data-badge" in attributes and self._provider:
            self.badges[self._provider] = attributes["data-badge"] or ""
        if tag == "td" and "data-state" in attributes and self._provider:
            self.states[self._provider] = attributes["data-state"] or ""
        if tag == "td" and self._event is not None:
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._event is not None:
            self._event.append("".join(self._cell))
            self._cell = None
        if tag == "tr":
            if self._event is not None:
                self.events.append(self._event)
            self._provider, self._event = None, None


def render(proxy: Proxy) -> Dashboard:
    """Load http://ccswitch.local/ in headless Chromium through the proxy; parse the DOM."""
    with tempfile.TemporaryDirectory(
        prefix="ccswitch-chromium-",
        ignore_cleanup_errors=True,  # helpers may linger
    ) as profile:
        result = subprocess.run(
            [
                CHROMIUM or "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                f"--user-data-dir={profile}",
                f"--proxy-server=http://127.0.0.1:{proxy.port}",
                "--virtual-time-budget=3000",
                "--dump-dom",
                "http://ccswitch.local/",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    page = Dashboard()
    page.feed(result.stdout)
    page.dom = result.stdout
    assert page.loaded, (
        f"the page did not render:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    )
    return page


def test_dashboard_in_a_real_browser_matches_the_status(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    primary, backup, spare = fakes("primary"), fakes("backup"), fakes("spare")
    primary.default = error(529)
    config = claude_config(primary.url, backup.url, failure_threshold=2).replace(
        "    providers:\n",
        f'    providers:\n      spare: {{base_url: "{spare.url}", auth: passthrough}}\n',
    )
    proxy = start(make_proxy, config)
    send(proxy)
    send(proxy)  # primary: open (red); backup served (green); spare: never used (green)

    page = render(proxy)
    truth = status(proxy)["apps"]["claude"]

    expected = {entry["id"]: entry["health"] for entry in truth["queue"]}
    assert expected == {"primary": "red", "backup": "green", "spare": "green"}
    assert page.badges == expected
    assert page.states == {entry["id"]: entry["state"] for entry in truth["queue"]}
    assert "open until " in page.dom  # the time it reopens is shown
    events = status(proxy)["events"]
    assert [row[1:4] for row in page.events] == [[e["app"], e["from"], e["to"]] for e in events]
    assert page.events[0][4] == "after primary: 529"


# --- the dashboard that acts and explains, driven in a real Chromium over DevTools ----------

ROWS = "[...document.querySelectorAll('%s')]"


def dashboard_url(proxy: Proxy) -> str:
    return f"http://127.0.0.1:{proxy.port}/__ccswitch/"


def open_dashboard(browser: Browser, url: str) -> None:
    browser.goto(url)
    browser.wait_for("document.body && document.body.getAttribute('data-loaded') === '1'")


def cell(browser: Browser, selector: str) -> str:
    return str(browser.evaluate(f"document.querySelector({selector!r})?.textContent ?? ''"))


def test_screenshots_of_an_empty_a_healthy_and_a_failing_over_state(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    need_chromium()
    primary, backup = fakes("primary"), fakes("backup")
    proxy = start(make_proxy, claude_config(primary.url, backup.url, failure_threshold=2))
    proxy.wait_for_output(f"dashboard at {dashboard_url(proxy)}")  # printed at start
    with Browser() as browser:  # no proxy setting: the proxy's own address
        browser.goto(f"http://127.0.0.1:{proxy.port}/")  # redirected to /__ccswitch/
        browser.wait_for("document.body && document.body.getAttribute('data-loaded') === '1'")
        assert browser.evaluate("location.pathname") == "/__ccswitch/"
        browser.screenshot(tmp_path / "empty.png")
        assert browser.evaluate(ROWS % "tr.request" + ".length") == 0
        assert browser.evaluate(ROWS % "[data-band]" + ".map(b => b.dataset.band)") == [
            "closed",
            "closed",
        ]

        for _ in range(3):
            assert send(proxy).status == 200
        wait_until(lambda: len(rows(proxy.state_path, "SELECT id FROM requests")) == 3)
        loaded_again(browser)
        browser.screenshot(tmp_path / "healthy.png")
        assert browser.evaluate(ROWS % "tr.request" + ".length") == 3
        assert cell(browser, "tr.request td.chain") == "primary 200"
        assert browser.evaluate(ROWS % "tr.tokens td" + ".map(td => td.textContent)")[2:4] == [
            "primary",
            "3",
        ]
        assert "current" in cell(browser, "[data-provider=primary]")
        tooltip = browser.evaluate("document.querySelector('.tag').title")
        assert "current: where requests go first" in tooltip

        primary.default = error(529)
        for _ in range(2):
            assert send(proxy).headers["x-ccswitch-provider"] == "backup"
        wait_until(lambda: len(rows(proxy.state_path, "SELECT id FROM requests")) == 5)
        loaded_again(browser)
        browser.screenshot(tmp_path / "failing-over.png")
        why = cell(browser, "[data-reason=primary]")
        assert why.startswith("opened by 529 at ")
        assert "a probe request may go at" in why
        assert "open" in browser.evaluate(ROWS % "[data-band]" + ".map(b => b.dataset.band)")
        assert browser.evaluate(ROWS % "[data-tick=primary]" + ".length") == 2
        assert cell(browser, "tr.request td.chain") == "primary 529 → backup 200"
        assert browser.evaluate(ROWS % "polyline[data-series]" + ".length") == 6  # 3 charts × 2
        assert cell(browser, "tr.event td:nth-child(5)") == "after primary: 529"
    for name in ("empty", "healthy", "failing-over"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute(sql).fetchall()
    except sqlite3.Error:
        return []


def test_each_button_changes_the_state(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    need_chromium()
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    proxy = start(make_proxy, claude_config(primary.url, backup.url, failure_threshold=1))
    send(proxy)
    assert provider_status(proxy, "primary")["state"] == "open"
    with Browser(proxy=f"http://127.0.0.1:{proxy.port}") as browser:  # through the proxy
        open_dashboard(browser, "http://ccswitch.local/")
        browser.evaluate("document.querySelector('button[data-action=switch]"
                         "[data-provider=backup]').click()")  # fmt: skip
        wait_until(lambda: status(proxy)["apps"]["claude"]["current"] == "backup", 10, "switch")
        browser.wait_for("document.getElementById('message').textContent.includes('now routes')")
        browser.evaluate("document.querySelector('button[data-action=reset]"
                         "[data-provider=primary]').click()")  # fmt: skip
        wait_until(lambda: provider_status(proxy, "primary")["state"] == "closed", 10, "reset")
    assert "switch via the control endpoint" in proxy.output()


ATTACKER_PAGE = """<!doctype html><html><body>
<form id="f" method="POST" enctype="text/plain" target="sink" action="{reset}">
<input name='{{"app":"claude","provider":"primary","x":"' value='"}}'></form>
<iframe name="sink"></iframe>
<script>
const body = JSON.stringify({{app: "claude", provider: "backup"}});
const results = {{}};
async function attempt(name, url, init) {{
  try {{
    const r = await fetch(url, init);
    results[name] = r.type === "opaque" ? "opaque" : String(r.status);
  }} catch (e) {{ results[name] = "blocked"; }}
}}
(async () => {{
  await attempt("no-cors switch", "{switch}", {{method: "POST", mode: "no-cors", body}});
  await attempt("no-cors direct", "{direct}", {{method: "POST", mode: "no-cors", body}});
  await attempt("json switch", "{switch}", {{method: "POST", body,
    headers: {{"content-type": "application/json", "x-ccswitch-token": "guess"}}}});
  await attempt("read token", "{token}", {{}});
  document.getElementById("f").submit();
  await new Promise(r => setTimeout(r, 500));
  document.body.setAttribute("data-results", JSON.stringify(results));
}})();
</script></body></html>"""


def test_a_cross_site_page_cannot_switch_reset_or_read_the_token(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    need_chromium()
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    proxy = start(make_proxy, claude_config(primary.url, backup.url, failure_threshold=1))
    send(proxy)
    before = status(proxy)["apps"]["claude"]
    assert (before["current"], before["queue"][0]["state"]) == ("primary", "open")
    page = ATTACKER_PAGE.format(
        switch="http://ccswitch.local/switch",
        reset="http://ccswitch.local/reset",
        direct=f"http://127.0.0.1:{proxy.port}/__ccswitch/switch",
        token="http://ccswitch.local/token",
    ).encode()

    class Attacker(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)  # another loopback origin
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Browser(proxy=f"http://127.0.0.1:{proxy.port}") as browser:
            browser.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            results = json.loads(
                browser.wait_for("document.body && document.body.getAttribute('data-results')")
            )
    finally:
        server.shutdown()
        server.server_close()
    # The browser hides a no-cors answer; the proxy's log shows each was refused.
    assert results == {
        "no-cors switch": "opaque",
        "no-cors direct": "opaque",
        "json switch": "blocked",  # its preflight is refused
        "read token": "blocked",  # no CORS header: the page cannot read it
    }
    after = status(proxy)["apps"]["claude"]
    assert (after["current"], after["queue"][0]["state"]) == ("primary", "open")
    output = proxy.output()
    refused = re.findall(r"POST http://(?:ccswitch\.local|127\.0\.0\.1:\d+)/(?:__ccswitch/)?"
                         r"(switch|reset)\s*\n\s*<< 403", output)  # fmt: skip
    assert sorted(refused) == ["reset", "switch", "switch"], output[-3000:]
    assert "via the control endpoint" not in output


def test_the_dashboard_under_its_prefix_on_a_reverse_listener(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    need_chromium()
    primary, backup = fakes("primary"), fakes("backup")
    proxy = start(
        make_proxy,
        claude_config(primary.url, backup.url),
        mode="reverse:https://api.anthropic.com",
    )
    assert reverse_request(proxy, "POST", "/v1/messages", json=BODY).status == 200
    with Browser() as browser:
        open_dashboard(browser, dashboard_url(proxy))
        apps = browser.evaluate(ROWS % "div.card[data-app]" + ".map(a => a.dataset.app)")
        assert apps == ["claude"]
        browser.evaluate("document.querySelector('button[data-action=switch]"
                         "[data-provider=backup]').click()")  # fmt: skip
        wait_until(
            lambda: (
                reverse_request(proxy, "GET", "/__ccswitch/status").json()["apps"]["claude"][
                    "current"
                ]
                == "backup"
            ),
            10,
            "the switch through the reverse listener",
        )
    assert len(primary.requests) == 1  # nothing under the prefix went to a provider
    assert len(backup.requests) == 0
    refused = reverse_request(
        proxy, "POST", "/__ccswitch/reset", json={"app": "claude", "provider": "primary"}
    )
    assert refused.status == 403  # no token


def test_a_refused_reload_is_a_banner_until_a_good_one(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    need_chromium()
    primary, backup = fakes("primary"), fakes("backup")
    proxy = start(make_proxy, claude_config(primary.url, backup.url))
    assert proxy.config_path is not None
    good = proxy.config_path.read_text()
    proxy.config_path.write_text(good.replace("    queue: [primary, backup]", "    queue: [nope]"))
    wait_until(lambda: status(proxy)["config_error"] is not None, 10, "the reload to be refused")
    with Browser() as browser:
        open_dashboard(browser, dashboard_url(proxy))
        text = cell(browser, "#banner")
        assert "was not reloaded" in text
        assert "'nope' is not a provider of claude" in text
        proxy.config_path.write_text(good + "\n")  # fixed (and changed, so it is read again)
        wait_until(lambda: status(proxy)["config_error"] is None, 10, "a good reload")
        browser.wait_for("document.getElementById('banner').textContent === ''")
