"""The provider side through a real mitmdump: streams after the commit point, silence, a client
that goes away, probes with Host, keys in flow files and the console, Codex's websocket."""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mitmproxy.version
import pytest
from mitmproxy import io

from ccswitch_addon.flows import ATTEMPT

from .fakes import (
    FakeHandler,
    FakeProvider,
    Received,
    closed_port,
    error,
    hang,
    ok_json,
    ok_sse,
    sse_error_midstream,
    sse_script,
    sse_truncated,
)
from .proxy import Proxy, request, wait_until
from .test_routing import (
    BACKUP_KEY,
    BODY,
    CLIENT_HEADERS,
    MESSAGES,
    claude_config,
    provider_status,
    send,
    start,
    status,
)

pytestmark = pytest.mark.e2e

STREAM = {**BODY, "stream": True}


def timing(extra: str) -> str:
    """Breaker lines for claude_config's `extra`, at the breaker's indentation."""
    return "".join(f"      {line}\n" for line in extra.strip().splitlines())


class Stall:
    """A stream that sends its start and `deltas` text deltas, then goes silent."""

    def __init__(self, deltas: int = 2, silence: float = 30.0) -> None:
        self.deltas, self.silence = deltas, silence

    def run(self, h: FakeHandler, received: Received) -> None:
        script = sse_script(
            "anthropic", "m", deltas=self.deltas + 1, input_tokens=5, output_tokens=5
        )
        h.start_chunked(200, {"Content-Type": "text/event-stream"})
        for event in script.prelude + script.deltas[: self.deltas]:
            h.send_chunk(event)
        h.pause(self.silence)
        h.close_now(reset=False)


class Endless:
    """A stream that sends a text delta every `interval` until its client goes away."""

    def __init__(self, interval: float = 0.05, limit: float = 20.0) -> None:
        self.interval, self.limit = interval, limit
        self.cut = threading.Event()  # the proxy closed the connection on us

    def run(self, h: FakeHandler, received: Received) -> None:
        script = sse_script("anthropic", "m", deltas=1, input_tokens=5, output_tokens=5)
        h.start_chunked(200, {"Content-Type": "text/event-stream"})
        deadline = time.monotonic() + self.limit
        try:
            for event in script.prelude:
                h.send_chunk(event)
            while time.monotonic() < deadline:
                h.send_chunk(script.deltas[0])
                if not h.pause(self.interval):
                    return
        except OSError:
            self.cut.set()
            raise


class Silent:
    """Says nothing until the proxy closes the connection (then `cut` is set), `limit` at most."""

    def __init__(self, limit: float = 20.0) -> None:
        self.limit = limit
        self.cut = threading.Event()

    def run(self, h: FakeHandler, received: Received) -> None:
        sock = h.connection
        deadline = time.monotonic() + self.limit
        while time.monotonic() < deadline and h.pause(0):
            readable, _, _ = select.select([sock], [], [], 0.05)
            try:
                gone = bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                gone = True
            if gone:
                self.cut.set()
                return


class NeedsHost:
    """An HTTP/1.1 server that, as RFC 9112 requires, answers 400 to a request without Host."""

    def run(self, h: FakeHandler, received: Received) -> None:
        if "host" not in received.headers:
            h.send_full(400, b"missing Host", {"Content-Type": "text/plain"})
        else:
            h.send_full(200, json.dumps({"input_tokens": 3}).encode(), {})


class ErrorIn200:
    """A relay's way of failing: status 200, and an Anthropic error as the body."""

    def run(self, h: FakeHandler, received: Received) -> None:
        body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        h.send_full(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


# --- after the commit point ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "behaviour",
    [sse_error_midstream(after=2, interval=0.3), sse_truncated(after=2, interval=0.3)],
    ids=["error-event", "early-end"],
)
def test_a_fault_after_the_first_token_reaches_the_client_and_counts(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], behaviour: Any
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = behaviour
    proxy = start(make_proxy, claude_config(primary.url, backup.url))

    reply = send(proxy, body=STREAM)

    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "primary"
    events = [e.event for e in reply.sse()]
    assert events.count("content_block_delta") == 2  # what the client already had, kept
    assert "message_stop" not in events
    assert backup.requests == []  # too late to retry: the client has the primary's tokens
    entry = wait_until(
        lambda: (e := provider_status(proxy, "primary"))["consecutive_failures"] == 1 and e,
        5,
        "the broken stream to count as a failure",
    )
    assert entry["failures"] == 1


def test_a_stalled_stream_ends_with_the_apis_error_event(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = Stall(deltas=2, silence=30)
    config = claude_config(primary.url, backup.url, extra=timing("stream_idle_seconds: 1"))
    proxy = start(make_proxy, config)

    started = time.monotonic()
    reply = send(proxy, body=STREAM)

    assert time.monotonic() - started < 15  # not the fake's 30 s of silence
    events = reply.sse()
    assert [e.event for e in events].count("content_block_delta") == 2
    assert events[-1].event == "error"
    assert events[-1].json()["error"]["type"] == "overloaded_error"
    assert "silent" in events[-1].json()["error"]["message"]
    assert provider_status(proxy, "primary")["consecutive_failures"] == 1


# --- live after a failover -------------------------------------------------------------------


def test_a_stream_served_after_a_failover_arrives_live(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    backup.default = ok_sse(events=12, interval=0.15)
    proxy = start(make_proxy, claude_config(primary.url, backup.url))

    reply = send(proxy, body=STREAM)

    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "backup"
    assert reply.headers["x-ccswitch-attempts"] == "2"
    assert [e.event for e in reply.sse()][-1] == "message_stop"
    arrivals = [t for t, _ in reply.chunks]
    assert reply.first_byte is not None
    # The backup's stream takes ~2.4 s; its first event reached the client long before it ended.
    assert arrivals[-1] - reply.first_byte >= 1.5, reply.chunks


def test_a_pre_commit_error_then_the_backups_stream_is_one_clean_stream(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = sse_error_midstream(after=0)
    backup.default = ok_sse(events=4)
    direct = request(None, "POST", f"{backup.url}/v1/messages", json=STREAM)
    proxy = start(make_proxy, claude_config(primary.url, backup.url))

    through = send(proxy, body=STREAM)

    def shape(reply: Any) -> list[tuple[str | None, Any]]:
        events = [(e.event, json.loads(e.data)) for e in reply.sse()]
        for _, data in events:
            data.get("message", {}).pop("id", None)
            data.get("message", {}).pop("model", None)
        return events

    assert through.headers["x-ccswitch-provider"] == "backup"
    assert shape(through) == shape(direct)


# --- the client goes away ------------------------------------------------------------------


def post(proxy: Proxy, body: dict[str, Any]) -> http.client.HTTPSConnection:
    """A tool's POST through the proxy's tunnel; the connection is left open."""
    context = ssl.create_default_context(cafile=str(proxy.ca_path))
    conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=10, context=context)
    conn.set_tunnel("api.anthropic.com", 443)
    conn.request("POST", "/v1/messages", body=json.dumps(body), headers=CLIENT_HEADERS)
    return conn


def hang_up(conn: http.client.HTTPSConnection) -> None:
    assert conn.sock is not None
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()


def blamed_no_one(proxy: Proxy, backup: FakeProvider) -> None:
    entry = provider_status(proxy, "primary")
    assert entry["state"] == "closed"
    assert entry["consecutive_failures"] == 0
    assert backup.requests == []


def test_a_client_that_hangs_up_mid_stream_cancels_the_attempt_and_blames_no_one(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    endless = Endless()
    primary.default = endless
    proxy = start(make_proxy, claude_config(primary.url, backup.url, failure_threshold=1))

    conn = post(proxy, STREAM)
    response = conn.getresponse()
    assert response.status == 200
    assert b"content_block_delta" in response.read1(65536)
    hang_up(conn)  # Esc in Claude Code

    assert endless.cut.wait(10), "the provider's stream was not cut when the client left"
    blamed_no_one(proxy, backup)


@pytest.mark.parametrize("body", [BODY, STREAM], ids=["whole", "stream-before-commit"])
def test_a_client_that_hangs_up_before_an_answer_cancels_the_attempt(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    tmp_path: Path,
    body: dict[str, Any],
) -> None:
    """mitmproxy holds a connection's events while a hook runs: a whole answer is served in
    the request hook (the addon notices the client's leaving itself), and a stream's flow
    waits in the responseheaders hook for the real head until its commit point (mitmproxy
    closes the relay's connection once the client's has gone). Either way the provider's
    request is cut at once."""
    primary, backup = fakes("primary"), fakes("backup")
    silent = Silent()
    primary.default = silent
    flows = tmp_path / "flows.mitm"
    config = claude_config(primary.url, backup.url, failure_threshold=1)
    proxy = start(make_proxy, config, extra=["-w", str(flows)])

    conn = post(proxy, body)
    wait_until(lambda: primary.requests, what="the request at the primary")
    hang_up(conn)  # Ctrl-C in the tool

    assert silent.cut.wait(10), "the provider's request was not cut when the client left"
    blamed_no_one(proxy, backup)
    proxy.stop()
    with flows.open("rb") as saved:
        kept = list(io.FlowReader(saved).stream())
    (tool,) = [f for f in kept if ATTEMPT not in f.metadata and f.request.path == "/v1/messages"]
    assert tool.request.pretty_url == MESSAGES  # the tool's own request
    assert tool.error is not None
    assert tool.response is None  # never the relay's stand-in head


# --- probes ---------------------------------------------------------------------------------


def test_an_active_probe_carries_host_and_reaches_a_strict_server(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529))
    primary.default = NeedsHost()
    config = claude_config(primary.url, backup.url, failure_threshold=1, open_seconds=1).replace(
        "        auth: passthrough\n", "        auth: passthrough\n        probe: true\n", 1
    )
    proxy = start(make_proxy, config)
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"

    probe = primary.wait_for_requests(2, timeout=15)[1]
    assert probe.path == "/v1/messages/count_tokens"
    assert probe.headers["host"] == primary.url.split("//", 1)[1]
    wait_until(
        lambda: provider_status(proxy, "primary")["state"] in ("half_open", "closed"),
        10,
        "a good probe to move the primary to half_open",
    )


# --- keys never in flows -----------------------------------------------------------------------


def test_no_provider_key_in_a_flow_file_or_the_console_after_any_failure(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    dead = f"http://127.0.0.1:{closed_port()}"
    config = f"""\
apps:
  claude:
    queue: [refused, slow, broken, erring, backup]
    breaker: {{failure_threshold: 20, first_byte_seconds: 1}}
    providers:
      refused: {{base_url: "{dead}", api_key: "${{BACKUP_KEY}}"}}
      slow: {{base_url: "{primary.url}/slow", api_key: "${{BACKUP_KEY}}"}}
      broken: {{base_url: "{primary.url}/broken", api_key: "${{BACKUP_KEY}}"}}
      erring: {{base_url: "{primary.url}/erring", api_key: "${{BACKUP_KEY}}"}}
      backup: {{base_url: "{backup.url}", api_key: "${{BACKUP_KEY}}"}}
"""
    primary.queue(hang(10), sse_error_midstream(after=0), error(529))
    flows = tmp_path / "flows.mitm"
    proxy = start(make_proxy, config, extra=["-w", str(flows), "--set", "flow_detail=4"])

    reply = send(proxy, body=STREAM)

    assert reply.headers["x-ccswitch-provider"] == "backup"
    assert reply.headers["x-ccswitch-attempts"] == "5"
    assert backup.requests[0].headers["x-api-key"] == BACKUP_KEY  # it was sent, upstream only
    proxy.stop()
    saved = flows.read_bytes()
    assert saved  # the tool's flow and one flow per attempt were written
    assert BACKUP_KEY.encode() not in saved
    assert BACKUP_KEY not in proxy.output()
    for provider in ("refused", "slow", "broken", "erring", "backup"):
        assert f"→ {provider}".encode() in saved, provider


# --- Codex's websocket -------------------------------------------------------------------------


CODEX = """\
apps:
  codex:
    queue: [primary]
    {websocket}
    providers:
      primary: {{base_url: "{url}/v1", api_key: "${{BACKUP_KEY}}"}}
"""


@pytest.mark.parametrize("setting", ["", "websocket: passthrough"])
def test_codex_websocket_upgrade_gets_426_unless_passed_through(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], setting: str
) -> None:
    primary = fakes("primary")
    proxy = start(make_proxy, CODEX.format(websocket=setting, url=primary.url))
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "OpenAI-Beta": "responses_websockets=2026-02-06",
        "Authorization": "Bearer codex-own-token",
    }
    reply = request(proxy, "GET", "https://api.openai.com/v1/responses", headers=headers)
    if setting:
        assert reply.status == 502  # passed through to the real host, unreachable here
    else:
        assert reply.status == 426
        assert reply.json()["error"]["type"] == "upgrade_required"
    assert primary.requests == []
    assert status(proxy)["apps"]["codex"]["queue"][0]["consecutive_failures"] == 0


# --- count_tokens -----------------------------------------------------------------------------


def test_count_tokens_404s_leave_the_backup_closed_and_serving(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    proxy = start(make_proxy, claude_config(primary.url, backup.url, failure_threshold=1))
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"  # the primary is open now
    count = "https://api.anthropic.com/v1/messages/count_tokens"
    backup.queue(error(404))

    first = send(proxy, url=count)
    assert first.status == 404
    for _ in range(2):  # remembered: not sent there again; the open primary is skipped too
        again = send(proxy, url=count)
        assert again.status == 529
        assert again.json()["error"]["type"] == "overloaded_error"
    counted = [r for r in backup.requests if r.path.endswith("/count_tokens")]
    assert len(counted) == 1
    entry = provider_status(proxy, "backup")
    assert entry["state"] == "closed"
    assert entry["consecutive_failures"] == 0
    served = send(proxy, body=BODY)
    assert served.status == 200
    assert served.headers["x-ccswitch-provider"] == "backup"


def test_a_json_answer_with_an_error_inside_a_200_is_failed_over(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = ErrorIn200()
    proxy = start(make_proxy, claude_config(primary.url, backup.url))

    reply = send(proxy)

    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "backup"
    assert reply.json()["content"], reply.json()


# --- mitmweb's flow list -------------------------------------------------------------------


# mitmweb 12 asks for a password on its API (web_password, sent as a bearer token); 11 has none.
WEB_AUTH = int(mitmproxy.version.VERSION.split(".")[0]) >= 12
WEB_PASSWORD = "ccswitch-test"


class WebProxy(Proxy):
    """mitmweb instead of mitmdump, its web server on `web_port`."""

    web_port = 0

    def command(self) -> list[str]:
        args = super().command()
        args[0] = str(Path(args[0]).with_name("mitmweb"))
        self.web_port = closed_port()
        args += ["--set", f"web_port={self.web_port}", "--set", "web_open_browser=false"]
        if WEB_AUTH:
            args += ["--set", f"web_password={WEB_PASSWORD}"]
        return args


def test_dashboard_polls_stay_out_of_mitmwebs_flow_list_and_attempts_are_in_it(
    fakes: Callable[[str], FakeProvider], tmp_path: Path
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    proxy = WebProxy(
        tmp_path, claude_config(primary.url, backup.url), env={"BACKUP_KEY": BACKUP_KEY}
    )
    try:
        proxy.start()
        for _ in range(3):
            assert request(proxy, "GET", "http://ccswitch.local/status").status == 200
        assert send(proxy).headers["x-ccswitch-provider"] == "backup"

        def listed() -> list[str]:
            conn = http.client.HTTPConnection("127.0.0.1", proxy.web_port, timeout=5)
            auth = {"Authorization": f"Bearer {WEB_PASSWORD}"} if WEB_AUTH else {}
            conn.request("GET", "/flows", headers=auth)
            flows = json.loads(conn.getresponse().read())
            conn.close()
            return [f"{f['request']['host']}{f['request']['path']}" for f in flows]

        wait_until(lambda: len(listed()) == 3, 10, "the routed flow and its two attempts only")
        names = listed()
        assert "api.anthropic.com/v1/messages" in names  # the tool's flow, as it asked
        assert not any(name.startswith("ccswitch.local") for name in names), names
        assert sum(name.startswith("127.0.0.1") for name in names) == 2, names  # the attempts
    finally:
        proxy.stop()


# --- a script reload -------------------------------------------------------------------------


def test_a_reloaded_script_keeps_routing(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """mitmproxy reloads a changed script and calls its running and done hooks from sync
    code (a `git pull` under a running proxy does this)."""
    primary, backup = fakes("primary"), fakes("backup")
    script = tmp_path / "ccswitch_script.py"
    script.write_text("from ccswitch_addon.addon import CcSwitch\n\naddons = [CcSwitch()]\n")
    proxy = start(make_proxy, claude_config(primary.url, backup.url), addon=script)
    assert send(proxy).headers["x-ccswitch-provider"] == "primary"

    mark = len(proxy.output())
    script.write_text(script.read_text() + "# changed\n")
    proxy.wait_for_output("Loading script", 15, since=mark)
    proxy.wait_for_output("ccswitch: dashboard at", 15, since=mark)

    assert send(proxy).headers["x-ccswitch-provider"] == "primary"
    assert "cannot be called from sync context" not in proxy.output()
    assert "Traceback" not in proxy.output()


# --- whole answers, served after every other addon ----------------------------------------

OTHER_ADDON = '''
import asyncio

from mitmproxy import http


class Other:
    """Loaded after ccswitch: what mitmweb's intercept, a kill or a mock would do."""

    def request(self, flow: http.HTTPFlow) -> None:
        what = flow.request.headers.get("x-test-other", "")
        if what == "hold":
            flow.intercept()
            asyncio.get_running_loop().call_later(0.5, flow.resume)
        elif what == "kill":
            flow.kill()
        elif what == "answer":
            flow.response = http.Response.make(299, b"mocked", {"content-type": "text/plain"})


addons = [Other()]
'''


def test_a_whole_answer_waits_for_every_addon_after_it_and_an_intercept(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    other = tmp_path / "other_addon.py"
    other.write_text(OTHER_ADDON)
    proxy = start(make_proxy, claude_config(primary.url, backup.url), extra=["-s", str(other)])

    sent = time.monotonic()
    reply = send(proxy, headers={**CLIENT_HEADERS, "x-test-other": "hold"})
    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "primary"
    assert len(primary.requests) == 1
    assert primary.requests[0].at - sent >= 0.45  # not before the intercept was resumed

    reply = send(proxy, headers={**CLIENT_HEADERS, "x-test-other": "answer"})
    assert reply.status == 299  # an addon after ours answered: nobody else is asked
    assert reply.body == b"mocked"

    with pytest.raises((ConnectionError, OSError, http.client.HTTPException)):
        send(proxy, headers={**CLIENT_HEADERS, "x-test-other": "kill"})
    assert len(primary.requests) == 1
    assert backup.requests == []
    assert "Traceback" not in proxy.output()


ORDER_ADDON = '''
import json
import logging

from mitmproxy import http
from mitmproxy.proxy import commands

ORDER = []
_made = commands.SendData.__init__


def _marked(self, connection, data):
    """mitmproxy makes the client's bytes here, in the step that writes them."""
    _made(self, connection, data)
    if data.startswith(b"HTTP/1.1 2") and b"Connection established" not in data:
        ORDER.append("answer")
    elif data == b"0\\r\\n\\r\\n":
        ORDER.append("end")


commands.SendData.__init__ = _marked


class Lines(logging.Handler):
    def emit(self, record):
        ORDER.append("line")


logging.getLogger("ccswitch_addon.requests").addHandler(Lines())


class Order:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.headers.get("x-test-order"):
            flow.response = http.Response.make(299, json.dumps(ORDER), {})


addons = [Order()]
'''


def test_the_console_line_comes_after_the_answer_on_the_wire(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """The request's record and console line are not on its path: a whole answer is written,
    and a stream's end, before them (mitmproxy 12 writes a turn later than 11)."""
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(ok_json(), ok_sse(events=3))
    script = tmp_path / "order_addon.py"
    script.write_text(ORDER_ADDON)
    proxy = start(make_proxy, claude_config(primary.url, backup.url), extra=["-s", str(script)])

    assert send(proxy).status == 200
    streamed = send(proxy, body=STREAM)
    assert streamed.status == 200
    assert b"message_stop" in streamed.body
    order = send(proxy, headers={**CLIENT_HEADERS, "x-test-order": "1"})

    assert order.status == 299
    assert json.loads(order.body) == ["answer", "line", "answer", "end", "line"]
    # mitmproxy's own line for the stream still reaches the console (compat.quiet_stream_start)
    assert "Streaming response from api.anthropic.com" in proxy.output()


def test_a_stream_that_fails_everywhere_gets_the_last_status_not_the_relays_stand_in(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """The relay's head is told in-process (answer.py): mitmproxy has read a stand-in 200 long
    before the exchange decides, and the tool must still get the decision."""
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    backup.default = error(529)
    flows = tmp_path / "flows.mitm"
    proxy = start(make_proxy, claude_config(primary.url, backup.url), extra=["-w", str(flows)])

    failed = send(proxy, body=STREAM)
    assert failed.status == 529
    assert failed.json()["error"]["type"] == "overloaded_error"
    assert failed.headers["content-length"] == str(len(failed.body))
    assert "x-ccswitch-head" not in failed.headers

    backup.default = ok_sse(events=3)
    served = send(proxy, body=STREAM)
    assert served.status == 200
    assert served.headers["x-ccswitch-provider"] == "backup"
    assert "x-ccswitch-head" not in served.headers
    assert b"message_stop" in served.body
    proxy.stop()
    saved = flows.read_bytes()
    assert b"529" in saved
    assert b"x-ccswitch-head" not in saved  # nor in what a flow file keeps
