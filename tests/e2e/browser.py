"""A real headless Chromium driven over the DevTools protocol: navigate, evaluate, screenshot.

Debian's ``chromium``, headless as root, with a fresh profile; the protocol's websocket is
spoken with wsproto (a mitmproxy dependency) over a plain socket, so nothing else is needed.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

from .proxy import wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1280,1800",
    "--remote-debugging-port=0",
)


def need_chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


class Browser:
    """One Chromium process with one page; ``proxy`` is the proxy server it uses, if any."""

    def __init__(self, proxy: str | None = None) -> None:
        self._profile = tempfile.TemporaryDirectory(
            prefix="ccswitch-chromium-", ignore_cleanup_errors=True
        )
        args = [need_chromium(), *FLAGS, f"--user-data-dir={self._profile.name}"]
        if proxy:
            args.append(f"--proxy-server={proxy}")
        self.process = subprocess.Popen(
            [*args, "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        active = Path(self._profile.name) / "DevToolsActivePort"
        self.port = int(
            wait_until(
                lambda: active.exists() and active.read_text().split("\n")[0], 30, "devtools"
            )
        )
        self._socket: socket.socket | None = None
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._next_id = 0
        self._connect(self._page_socket())

    def _page_socket(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("PUT", "/json/new?" + quote("about:blank", safe=""))
        target = json.loads(conn.getresponse().read())
        conn.close()
        return str(target["webSocketDebuggerUrl"])

    def _connect(self, url: str) -> None:
        parts = urlsplit(url)
        self._socket = socket.create_connection((parts.hostname, parts.port), timeout=60)
        self._socket.sendall(self._ws.send(Request(host=parts.netloc, target=parts.path)))
        while not any(isinstance(e, AcceptConnection) for e in self._receive()):
            pass

    def _receive(self) -> list[Any]:
        assert self._socket is not None
        data = self._socket.recv(1 << 20)
        if not data:
            raise ConnectionError("devtools connection closed")
        self._ws.receive_data(data)
        events = list(self._ws.events())
        for event in events:
            if isinstance(event, Ping):
                self._socket.sendall(self._ws.send(event.response()))
        return events

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events in between are ignored)."""
        assert self._socket is not None
        self._next_id += 1
        ident = self._next_id
        message = json.dumps({"id": ident, "method": method, "params": params})
        self._socket.sendall(self._ws.send(TextMessage(data=message)))
        text = ""
        while True:
            for event in self._receive():
                if isinstance(event, CloseConnection):
                    raise ConnectionError("devtools connection closed")
                if not isinstance(event, TextMessage):
                    continue
                text += event.data
                if not event.message_finished:
                    continue
                answer = json.loads(text)
                text = ""
                if answer.get("id") == ident:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    result: dict[str, Any] = answer.get("result", {})
                    return result

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout: float = 20, what: str = "") -> Any:
        """Poll a JS expression until it is truthy."""
        return wait_until(lambda: self.evaluate(expression), timeout, what or expression)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        # Chromium's helper processes can still be writing the profile for a moment after the
        # browser itself has exited: poll until it can be removed.
        deadline = time.monotonic() + 10
        while True:
            try:
                shutil.rmtree(self._profile.name)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._profile.cleanup()  # gone already: this only retires its finalizer

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def loaded_again(browser: Browser) -> None:
    """Wait for the dashboard's next full refresh (it marks the body each time)."""
    browser.evaluate("document.body.removeAttribute('data-loaded')")
    browser.wait_for("document.body.getAttribute('data-loaded') === '1'", what="a refresh")
