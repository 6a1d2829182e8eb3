"""Hardening (issue 13): what a hostile page, a remote client, odd paths and bodies, a bad
option or a provider's Retry-After do to a real mitmdump."""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from .fakes import FakeProvider, error, ok_json
from .proxy import Proxy, request
from .test_routing import BODY, CLIENT_HEADERS, claude_config, provider_status, send
from .test_routing import start as start_proxy
from .test_state import CCSWITCH

pytestmark = pytest.mark.e2e

MESSAGES = "https://api.anthropic.com/v1/messages"


def start(make_proxy: Callable[..., Proxy], primary: FakeProvider, backup: FakeProvider,
          **kwargs: object) -> Proxy:  # fmt: skip
    return start_proxy(make_proxy, claude_config(primary.url, backup.url), **kwargs)


def nothing_upstream(*providers: FakeProvider) -> None:
    for provider in providers:
        assert provider.requests == [], provider.requests


# --- browsers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Mode": "no-cors"},
    ],
)
def test_a_request_with_browser_headers_is_refused_without_a_key(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], header: dict[str, str]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)  # the backup, with its key, would serve
    proxy = start(make_proxy, primary, backup)

    reply = send(proxy, headers={**CLIENT_HEADERS, **header})

    assert reply.status == 403
    error_body = reply.json()
    assert error_body["type"] == "error"
    assert error_body["error"]["type"] == "permission_error"
    assert next(iter(header)).lower() in error_body["error"]["message"]
    nothing_upstream(primary, backup)


def test_node_fetchs_own_sec_fetch_mode_is_not_a_browser(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    proxy = start(make_proxy, primary, backup)
    # What Node's built-in fetch (undici) sends, as a Node CLI using it would.
    reply = send(proxy, headers={**CLIENT_HEADERS, "Sec-Fetch-Mode": "cors", "User-Agent": "node"})
    assert reply.status == 200
    assert len(primary.requests) == 1


def test_browsers_are_allowed_by_option(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    proxy = start(make_proxy, primary, backup, extra=["--set", "ccswitch_allow_browsers=true"])
    reply = send(proxy, headers={**CLIENT_HEADERS, "Origin": "https://app.example"})
    assert reply.status == 200
    assert len(primary.requests) == 1


def test_plain_http_to_an_api_host_is_not_routed_in_regular_mode(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    proxy = start(make_proxy, primary, backup)

    reply = send(proxy, url="http://api.anthropic.com/v1/messages")

    assert reply.status == 403
    assert "http://" in reply.json()["error"]["message"]
    nothing_upstream(primary, backup)
    assert send(proxy).status == 200  # https is routed as before


# --- remote clients ------------------------------------------------------------------------------


def _own_address() -> str | None:
    """This machine's first address that is not loopback (None if it has none)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent; picks the outgoing interface
        address: str = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def _raw(address: str, port: int, data: bytes) -> bytes:
    with socket.create_connection((address, port), timeout=10) as conn:
        conn.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_remote_client_gets_403_for_every_request(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    address = _own_address()
    if address is None:
        pytest.skip("this machine has no address beyond loopback")
    primary, backup = fakes("primary"), fakes("backup")
    other = fakes("loopback-only service")
    proxy = start(make_proxy, primary, backup, extra=["--listen-host", "0.0.0.0"])
    proxy.wait_for_output("clients beyond loopback get 403 for every request")

    connect = _raw(address, proxy.port, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % other.port)
    plain = _raw(
        address,
        proxy.port,
        b"GET http://127.0.0.1:%d/secret HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % other.port,
    )
    body = json.dumps(BODY).encode()
    routed = _raw(
        address,
        proxy.port,
        b"POST http://api.anthropic.com/v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
    )

    for answer in (connect, plain, routed):
        assert answer.startswith(b"HTTP/1.1 403"), answer
    nothing_upstream(primary, backup, other)
    assert request(proxy, "GET", other.url + "/fine").status == 200  # loopback is served


# --- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/messages/../../admin",
        "/v1/messages/./",
        "/v1/%2e%2e/v1/messages",
        "/v1/messages%2Fcount_tokens",
        "/v1/%2E%2E/admin",
        "/v1/messages%5c..",
    ],
)
def test_path_tricks_get_400_and_go_nowhere(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], path: str
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    proxy = start(make_proxy, primary, backup)

    reply = send(proxy, url="https://api.anthropic.com" + path)

    assert reply.status == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    nothing_upstream(primary, backup)


def test_a_longer_segment_is_not_routed(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    proxy = start(make_proxy, primary, backup)
    for path in ("/v1/messagesXYZ", "/v1/messages/batches"):
        reply = send(proxy, url="https://api.anthropic.com" + path)
        assert "x-ccswitch-provider" not in reply.headers  # passed through, not routed
    nothing_upstream(primary, backup)


def test_count_tokens_404s_leave_the_backup_closed(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    backup.default = ok_json()
    proxy = start(make_proxy, primary, backup)
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"
    backup.reset()
    backup.default = error(404)  # it has no count_tokens: were it routed, it would 404

    for _ in range(4):
        send(proxy, url=MESSAGES + "/count_tokens")

    assert provider_status(proxy, "backup")["state"] == "closed"
    backup.default = ok_json()
    reply = send(proxy)
    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "backup"


# --- bodies --------------------------------------------------------------------------------------


def test_a_deeply_nested_body_gets_400_and_goes_nowhere(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)  # the backup maps the model: the rewrite parses the body
    proxy = start(make_proxy, primary, backup)
    deep = b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    reply = request(proxy, "POST", MESSAGES, body=deep, headers=CLIENT_HEADERS)

    assert reply.status == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    nothing_upstream(primary, backup)
    assert "Traceback" not in proxy.output()
    assert "RecursionError" not in proxy.output()
    for bad in (b"[1, 2]", b'{"messages": [1,], "model": "x"}', b"not json"):
        reply = request(proxy, "POST", MESSAGES, body=bad, headers=CLIENT_HEADERS)
        assert reply.status == 400, bad
    nothing_upstream(primary, backup)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # the peak resident set, so a spike cannot be missed
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


def test_a_gzip_bomb_gets_413_with_bounded_memory(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    proxy = start(make_proxy, primary, backup)
    assert proxy.process is not None
    inflated = b'{"model": "claude-sonnet-4-5", "pad": "' + b"a" * (400 * 1024 * 1024) + b'"}'
    bomb = gzip.compress(inflated, 9)
    del inflated
    assert len(bomb) < 1024 * 1024
    before = _rss_kib(proxy.process.pid)

    reply = request(
        proxy,
        "POST",
        MESSAGES,
        body=bomb,
        headers={**CLIENT_HEADERS, "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )

    assert reply.status == 413
    assert reply.json()["error"]["type"] == "request_too_large"
    nothing_upstream(primary, backup)
    grown = _rss_kib(proxy.process.pid) - before
    assert grown < 200 * 1024, f"mitmdump grew by {grown} KiB"
    small = gzip.compress(json.dumps(BODY).encode())
    reply = request(proxy, "POST", MESSAGES, body=small,
                    headers={**CLIENT_HEADERS, "Content-Encoding": "gzip"})  # fmt: skip
    assert reply.status == 200
    sent = json.loads(gzip.decompress(backup.requests[-1].body))
    assert sent["model"] == "backup-sonnet"  # mapped after inflating


# --- Retry-After ---------------------------------------------------------------------------------


def test_a_529_with_retry_after_cools_the_provider_down(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529, headers={"Retry-After": "120"}))
    proxy = start(make_proxy, primary, backup)
    now = time.time()

    assert send(proxy).headers["x-ccswitch-provider"] == "backup"

    entry = provider_status(proxy, "primary")
    assert entry["state"] == "cooldown"
    assert entry["cooldown_reason"] == "Retry-After"
    assert now + 100 < entry["reopens_at"] < now + 140
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"
    assert len(primary.requests) == 1


# --- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("ccswitch_log_days=abc", "ccswitch_log_days: expected a whole number of days"),
        ("ccswitch_log_days=0", "ccswitch_log_days: expected a whole number of days"),
        ("ccswitch_allow_remote=maybe", "ccswitch_allow_remote: expected true or false"),
        ("ccswitch_allow_browsers=2", "ccswitch_allow_browsers: expected true or false"),
        ("ccswitch_body_limit=lots", "ccswitch_body_limit: expected a size"),
    ],
)
def test_a_bad_option_value_stops_the_start_with_one_line(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    setting: str,
    message: str,
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    proxy = start(make_proxy, primary, backup, extra=["--set", setting], start=False)
    proxy.start(expect_exit=True)
    assert proxy.wait_exit() != 0
    output = proxy.output()
    assert message in output
    assert "Traceback" not in output


# --- secrets -------------------------------------------------------------------------------------


def test_a_base_url_with_a_password_is_refused_at_start_without_showing_it(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    with_password = backup.url.replace("http://", "http://user:hunter2-pass@")
    config = claude_config(primary.url, with_password)
    proxy = start_proxy(make_proxy, config, start=False)
    proxy.start(expect_exit=True)
    assert proxy.wait_exit() != 0
    output = proxy.output()
    assert "hunter2" not in output
    assert "apps.claude.providers.backup.base_url: a base URL takes no user:password@" in output
    assert (
        f"providers.yaml:{config.splitlines().index(f'        base_url: {with_password}/v1') + 1}:"
        in output
    )


# --- provider text in the log --------------------------------------------------------------------


class EscapingError:
    """A 200 stream whose error event's message holds terminal escapes and a line break."""

    MESSAGE = "boom\x1b[2J\x1b]0;pwned\x07\nFAKE ROW\u202e"

    def run(self, h: Any, received: Any) -> None:
        event = {"type": "error", "error": {"type": "api_error", "message": self.MESSAGE}}
        h.start_chunked(200, {"content-type": "text/event-stream"})
        h.send_chunk(b"event: error\ndata: " + json.dumps(event).encode() + b"\n\n")
        h.end_chunked()


def test_provider_text_is_printed_escaped_by_ccswitch_log(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    # Both break before their first token: the client gets the last one's stream, and the
    # log row carries its error text.
    primary.queue(EscapingError())
    backup.queue(EscapingError())
    proxy = start(make_proxy, primary, backup)
    send(proxy, body={**BODY, "stream": True})
    proxy.stop()  # the writer flushes the log at shutdown

    result = subprocess.run(
        [CCSWITCH, "log", "--since", "1h", "--state", str(proxy.state_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(proxy.tmp_path / "home")},
        cwd=proxy.tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "boom\\u001b[2J\\u001b]0;pwned\\u0007\\nFAKE ROW\\u202e" in result.stdout
    assert "\x1b" not in result.stdout
    assert "\x07" not in result.stdout
    assert len(result.stdout.splitlines()) == 2  # the header and one row
    with closing(sqlite3.connect(proxy.state_path)) as db:
        stored = db.execute("SELECT error FROM requests").fetchone()
    assert EscapingError.MESSAGE in stored[0]  # kept as data, escaped when printed


# --- the state file ------------------------------------------------------------------------------


def damage(path: Path, table: str) -> None:
    """Overwrite the root page of one table with garbage."""
    db = sqlite3.connect(path)
    size = db.execute("PRAGMA page_size").fetchone()[0]
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    db.close()
    with path.open("r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xde\xad\xbe\xef" * (size // 4))


def test_a_state_file_with_one_damaged_page_is_reported_and_routing_goes_on(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529))
    proxy = start(make_proxy, primary, backup)
    send(proxy)  # a switch event, breaker rows, a log row
    proxy.stop()
    damage(proxy.state_path, "breakers")
    before = proxy.state_path.read_bytes()

    proxy.start()

    line = proxy.wait_for_output("cannot use the state file")
    assert "damaged" in line
    assert "routing goes on with state in memory only" in line
    assert proxy.running
    assert send(proxy).status == 200
    proxy.stop()
    assert proxy.output().count("cannot use the state file") == 1
    assert "Traceback" not in proxy.output()
    assert proxy.state_path.read_bytes() == before  # never written


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    """chattr +i: read-only even for root; undone at teardown."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    made: list[Path] = []

    def make(path: Path) -> None:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("this filesystem has no immutable attribute")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_read_only_state_file_is_reported_at_start(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    immutable: Callable[[Path], None],
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    proxy = start(make_proxy, primary, backup)
    proxy.stop()
    immutable(proxy.state_path)
    proxy.start()
    line = proxy.wait_for_output("cannot use the state file")
    assert "the file is read-only" in line
    assert send(proxy).status == 200


def test_an_unwritable_shm_file_costs_no_sigbus_and_state_is_kept(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    immutable: Callable[[Path], None],
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    proxy = start(make_proxy, primary, backup)
    proxy.stop()
    shm = proxy.state_path.with_name(proxy.state_path.name + "-shm")
    shm.write_bytes(b"\0" * 100)  # a stale WAL index too short to map, that cannot grow
    immutable(shm)

    proxy.start()
    proxy.wait_for_output("state.db-shm is not writable")
    for _ in range(3):
        assert send(proxy).status == 200
    proxy.stop()

    assert proxy.returncode == 0
    db = sqlite3.connect(proxy.state_path)
    assert db.execute("SELECT count(*) FROM requests").fetchone() == (3,)
    assert db.execute("SELECT active FROM apps WHERE app = 'claude'").fetchone() == ("backup",)
    db.close()
