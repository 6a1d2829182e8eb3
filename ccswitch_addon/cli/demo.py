"""`ccswitch demo`: failover and recovery, live, with mock providers and the real proxy."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, TextIO

from ccswitch_addon.cli.client import call
from ccswitch_addon.cli.launch import mitm_command
from ccswitch_addon.cli.mockprovider import MockProvider
from ccswitch_addon.cli.reports import status_table

__all__ = ["run_demo"]

OPEN_SECONDS = 5
FAILURE_THRESHOLD = 2
WIDTH = 100
DEMO_KEY = "sk-demo-0000-not-a-real-key"
CONFIG = """\
# Written by `ccswitch demo`: two mock providers on loopback.
apps:
  claude:
    queue: [primary, backup]
    breaker:
      failure_threshold: {failure_threshold}
      success_threshold: 1
      open_seconds: {open_seconds}
    providers:
      primary:
        name: Mock primary
        base_url: {primary}
        auth: x-api-key
        api_key: ${{CCSWITCH_DEMO_KEY}}
      backup:
        name: Mock backup
        base_url: {backup}
        auth: x-api-key
        api_key: ${{CCSWITCH_DEMO_KEY}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Proxy:
    def __init__(self, workdir: Path, config: Path, keep: bool) -> None:
        self.port = _free_port()
        self.workdir = workdir
        self.confdir = workdir / "conf"
        self.url = f"http://127.0.0.1:{self.port}"
        program = "mitmweb" if keep else "mitmdump"
        extra = [
            "--set",
            f"confdir={self.confdir}",
            "--listen-port",
            str(self.port),
            "--set",
            f"ccswitch_config={config}",
            "--set",
            f"ccswitch_state={workdir / 'state.db'}",
            "-w",
            str(workdir / "flows.mitm"),
        ]
        if keep:
            self.web_port = _free_port()
            extra += ["--set", "web_open_browser=false", "--set", f"web_port={self.web_port}"]
        command, _, _, _ = mitm_command(program, extra)
        self.log = (workdir / "mitmproxy.log").open("wb")
        env = {**os.environ, "CCSWITCH_DEMO_KEY": DEMO_KEY}
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY"):
            env.pop(name, None)
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        ca = self.confdir / "mitmproxy-ca-cert.pem"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    "the proxy exited:\n"
                    + (self.workdir / "mitmproxy.log").read_text(errors="replace")[-2000:]
                )
            if ca.exists():
                try:
                    call(self.url, "GET", "/status", timeout=2)
                    return
                except Exception:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"the proxy did not start within {timeout:g}s")

    def send(self) -> tuple[int, dict[str, str], str]:
        """One streaming Messages request, the way Claude Code sends it through HTTPS_PROXY."""
        context = ssl.create_default_context(cafile=str(self.confdir / "mitmproxy-ca-cert.pem"))
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=context, timeout=30
        )
        connection.set_tunnel("api.anthropic.com", 443)
        body = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "Say something short."}],
        }
        try:
            connection.request(
                "POST",
                "/v1/messages",
                json.dumps(body),
                {
                    "content-type": "application/json",
                    "x-api-key": "the-tools-own-key",
                    "anthropic-version": "2023-06-01",
                },
            )
            response = connection.getresponse()
            data = response.read().decode("utf-8", "replace")
            headers = {k.lower(): v for k, v in response.getheaders()}
            return response.status, headers, data
        finally:
            connection.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


def _text(sse: str) -> str:
    words = []
    for line in sse.splitlines():
        if line.startswith("data:") and "text_delta" in line:
            words.append(json.loads(line[5:])["delta"]["text"])
    return "".join(words).strip()


class _Story:
    """Prints what happens, and the breaker transitions seen in the status."""

    def __init__(self, proxy: _Proxy, out: TextIO) -> None:
        self.proxy = proxy
        self.out = out
        self.states: dict[str, str] = {}
        self.events_seen = 0
        self.failovers = 0
        self.recoveries = 0

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def status(self) -> dict[str, Any]:
        _, status = call(self.proxy.url, "GET", "/status")
        assert isinstance(status, dict)
        claude = status["apps"]["claude"]
        for entry in claude["queue"]:
            old = self.states.get(entry["id"], "closed")
            if entry["state"] != old:
                self.say(f"   breaker {entry['id']}: {old} → {entry['state']}")
            self.states[entry["id"]] = entry["state"]
        for event in reversed(status["events"][: len(status["events"]) - self.events_seen]):
            self.say(f"   switch: {event['from']} → {event['to']} ({event['reason']})")
            if event["to"] == "backup":
                self.failovers += 1
            else:
                self.recoveries += 1
        self.events_seen = len(status["events"])
        return status

    def request(self, number: int, why: str = "") -> tuple[str, int]:
        """Send one request; print what came back and ``why``, the thing this line teaches."""
        status, headers, body = self.proxy.send()
        served = headers.get("x-ccswitch-provider", "?")
        attempts = int(headers.get("x-ccswitch-attempts", "1") or 1)
        how = "first try" if attempts == 1 else f"after {attempts - 1} failed attempt(s)"
        line = f"#{number:<2} {status} from {served:8} ({how})"
        if number == 1:
            line += f": {_text(body)!r}"
        if why and len(line) + len(why) + 3 <= WIDTH:
            line += f" - {why}"
        elif why:
            line += "\n" + textwrap.fill(
                why, WIDTH, initial_indent="    ", subsequent_indent="    "
            )
        self.say(line)
        self.status()
        return served, attempts


THRESHOLD = (
    "the primary was tried first again although the switch to the backup was announced: "
    "the announcement says who served, while the primary's breaker opens only after "
    "failure_threshold failures in a row ({threshold} in this demo, 8 by default for "
    "claude), so until then every request still starts at the primary"
)


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so the finally below stops the proxy and the mocks


def run_demo(out: TextIO, keep: bool = False) -> int:
    signal.signal(signal.SIGTERM, _exit_on_term)
    down = {"primary": False}
    primary = MockProvider("primary", lambda: 529 if down["primary"] else None).start()
    backup = MockProvider("backup").start()
    workdir = Path(tempfile.mkdtemp(prefix="ccswitch-demo-"))
    config = workdir / "providers.yaml"
    config.write_text(
        CONFIG.format(
            primary=primary.url,
            backup=backup.url,
            open_seconds=OPEN_SECONDS,
            failure_threshold=FAILURE_THRESHOLD,
        )
    )
    proxy = _Proxy(workdir, config, keep)
    story = _Story(proxy, out)
    went_wrong = False  # its files are kept to find out why; Ctrl-C removes them too
    try:
        story.say(
            f"ccswitch demo: mock providers at {primary.url} (primary) and "
            f"{backup.url} (backup); starting the real proxy…"
        )
        proxy.wait_ready()
        story.say(f"proxy on {proxy.url}; sending streaming Claude requests through it\n")
        story.request(1, "the mock's answer, streamed through the proxy")
        story.request(2, "a healthy primary serves every request; each success is counted")
        number = 3
        story.say("\n-- the primary starts answering 529 Overloaded --")
        down["primary"] = True
        failed = 0
        while story.states.get("primary") != "open":
            if failed == 0:
                why = "the 529 was retried on the backup within the same request"
            elif failed == 1:
                why = THRESHOLD.format(threshold=FAILURE_THRESHOLD)
            else:
                why = f"failure {failed + 1} in a row at the primary"
            story.request(number, why)
            failed += 1
            number += 1
        story.say(
            f"   (that was failure {failed} in a row: the primary's breaker is open now, "
            "so requests skip it without waiting for its error)"
        )
        story.say(
            "\n-- the primary recovers, but its breaker is open: traffic stays on the backup --"
        )
        down["primary"] = False
        story.request(
            number,
            f"the primary is not asked while open ({OPEN_SECONDS}s here), even though it is fine",
        )
        number += 1
        reopens = story.status()["apps"]["claude"]["queue"][0]["reopens_at"] or time.time()
        live = out.isatty()
        if not live:
            story.say(
                f"   waiting {max(0.0, reopens - time.time()):.0f}s for the breaker to "
                "allow a probe…"
            )
        while time.time() < reopens:
            if live:
                print(
                    f"\r   waiting for the breaker to allow a probe: "
                    f"{reopens - time.time():4.1f}s ",
                    end="",
                    file=out,
                    flush=True,
                )
            time.sleep(0.2)
        if live:
            print(file=out)
        story.status()  # shows open → half_open
        story.say("-- a half-open probe tries the primary again --")
        story.request(
            number, "one real request is let through as the probe; it succeeded, so it closes"
        )
        story.request(number + 1, "back to normal: the primary is current and active again")
        story.say("\n" + status_table(story.status()))
        if keep:  # without --keep the files go when the demo ends
            story.say(
                f"\nstate file: {workdir / 'state.db'}\nflows:      {workdir / 'flows.mitm'}"
                f"  (open with: mitmweb -r {workdir / 'flows.mitm'})"
            )
        if DEMO_KEY in primary.keys_seen and "the-tools-own-key" not in primary.keys_seen:
            story.say("the providers saw only their own key, never the tool's")
        ok = story.failovers >= 1 and story.recoveries >= 1
        story.say("demo: failover and recovery shown" if ok else "demo: something went wrong")
        if keep:
            story.say(
                f"\n--keep: proxy {proxy.url}, mitmweb http://127.0.0.1:{proxy.web_port}/,"
                f" dashboard: curl -x {proxy.url} http://ccswitch.local/ ; Ctrl-C stops"
            )
            with contextlib.suppress(KeyboardInterrupt):
                proxy.process.wait()
        went_wrong = not ok
        return 0 if ok else 1
    except (RuntimeError, OSError) as e:
        went_wrong = True
        print(f"ccswitch demo: {e}", file=sys.stderr)
        return 1
    finally:
        proxy.stop()
        primary.stop()
        backup.stop()
        if not (keep or went_wrong):
            shutil.rmtree(workdir, ignore_errors=True)
        else:  # kept on purpose, or for finding out what went wrong
            print(f"ccswitch demo: its files are in {workdir}", file=sys.stderr)
