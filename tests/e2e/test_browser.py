"""A hostile web page in a real headless Chromium that uses the proxy cannot spend a key."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from .fakes import FakeProvider, error
from .proxy import Proxy, wait_until
from .test_dashboard import CHROMIUM
from .test_routing import BACKUP_KEY, claude_config, provider_status, start

pytestmark = pytest.mark.e2e

PAGE = b"""<!doctype html>
<html><body><script>
const body = JSON.stringify({model: "claude-sonnet-4-5", max_tokens: 16,
                             messages: [{role: "user", content: "spend the key"}]});
const tries = ["http://api.anthropic.com/v1/messages", "https://api.anthropic.com/v1/messages"]
  .map(url => fetch(url, {method: "POST", mode: "no-cors", body,
                          headers: {"content-type": "text/plain"}})
    .then(r => url + " answered " + r.type, e => url + " failed " + e));
Promise.all(tries).then(results => {
  document.body.setAttribute("data-done", "1");
  document.body.textContent = results.join("\\n");
});
</script></body></html>
"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hostile_site() -> Iterator[str]:
    """http://127.0.0.1:PORT/ serving the page (another origin; Chromium reaches it directly)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_page_in_a_browser_using_the_proxy_gets_403_and_no_key_is_sent(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    hostile_site: str,
) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)  # the backup, with its key, would serve
    proxy = start(make_proxy, claude_config(primary.url, backup.url))

    with tempfile.TemporaryDirectory(
        prefix="ccswitch-chromium-",
        ignore_cleanup_errors=True,  # helpers may linger
    ) as profile:
        result = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                "--ignore-certificate-errors",  # as if the user trusted mitmproxy's CA
                f"--user-data-dir={profile}",
                f"--proxy-server=http://127.0.0.1:{proxy.port}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                hostile_site,
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    assert 'data-done="1"' in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]

    def refused() -> list[str]:
        lines = proxy.output().splitlines()
        return [
            lines[i] + lines[i + 1]
            for i in range(len(lines) - 1)
            if "api.anthropic.com/v1/messages" in lines[i] and " 403 Forbidden" in lines[i + 1]
        ]

    seen = wait_until(lambda: len(refused()) >= 2 and refused(), 10, "two refused requests")
    assert {line.split()[2].partition(":")[0] for line in seen} == {"http", "https"}, seen
    assert "refused a browser request (it carries" in proxy.output()
    assert primary.requests == []
    assert backup.requests == []
    assert BACKUP_KEY not in proxy.output()
    assert provider_status(proxy, "primary")["state"] == "closed"  # nothing counted either
