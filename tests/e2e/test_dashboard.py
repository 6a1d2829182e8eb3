"""The dashboard, rendered by a real headless Chromium through the proxy."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from html.parser import HTMLParser

import pytest

from .fakes import FakeProvider, error
from .proxy import Proxy
from .test_routing import claude_config, send, start, status

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
    with tempfile.TemporaryDirectory(prefix="ccswitch-chromium-") as profile:
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
