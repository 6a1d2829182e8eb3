"""A real mitmdump process (with or without the ccswitch addon) and stdlib HTTP clients for it.

`Proxy` runs ``mitmdump`` as a child process on an ephemeral loopback port with its own confdir
(so its own CA), logging to a file under the test's tmp_path. `request()` talks to a URL
through it as an explicit proxy (CONNECT + real TLS verified against only that CA for
https://), `reverse_request()` talks to it as a reverse proxy, and `Session` keeps one client
connection open for several requests. Bodies are read incrementally with arrival times so that
streaming tests can tell a relayed stream from a buffered one.
"""

from __future__ import annotations

import http.client
import json as _json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

from .fakes import SseEvent, parse_sse

REPO = Path(__file__).resolve().parents[2]
ADDON = REPO / "ccswitch_addon" / "addon.py"

# mitmproxy 11 logs e.g. "[12:00:00.000] HTTP(S) proxy listening at 127.0.0.1:41234." or
# "reverse proxy to http://127.0.0.1:9/ listening at 127.0.0.1:41234." (one line per mode).
LISTENING = re.compile(r"listening at (\S+?):(\d+)\.?\s*$", re.M)
# The child must reach loopback fakes directly, never through a proxy from our environment.
_PROXY_VARS = {"https_proxy", "http_proxy", "all_proxy", "no_proxy"}
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None], timeout: float = 10, what: str = "condition"
) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    AssertionError naming `what` after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def mitmdump_path() -> str:
    """The mitmdump of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "mitmdump"
    if beside.exists():
        return str(beside)
    found = shutil.which("mitmdump")
    if found is None:
        raise RuntimeError("mitmdump not found next to sys.executable nor on PATH")
    return found


class Proxy:
    """A mitmdump child process on 127.0.0.1 with its own confdir, config and state file."""

    def __init__(
        self,
        tmp_path: Path,
        config: str | Path | None,
        *,
        mode: str | None = None,
        addon: Path | None = ADDON,
        extra: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        state: Path | None = None,
    ) -> None:
        """`config`: YAML text (written to tmp_path/providers.yaml) or a path.

        `addon=None` runs plain mitmdump without any ccswitch options. Proxies made with one
        tmp_path share its confdir (CA) and, unless `state` is given, tmp_path/state.db: a
        restart sees the state of the run before.
        """
        self.tmp_path = Path(tmp_path)
        self.confdir = self.tmp_path / "conf"
        self.ca_path = self.confdir / "mitmproxy-ca-cert.pem"
        self.config_path: Path | None
        if config is None or isinstance(config, Path):
            self.config_path = config
        else:
            self.config_path = self._config_file(config)
        self.state_path = state if state is not None else self.tmp_path / "state.db"
        self.mode = mode
        self.addon = addon
        self.extra = list(extra)
        self.env = dict(env or {})
        self.port = 0
        self.ports: list[int] = []  # one per listening mode, in log order
        self.log_path: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._reader: IO[bytes] | None = None
        self._out = bytearray()

    # Lifecycle ------------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The mitmdump command line."""
        args = [
            mitmdump_path(),
            "--set", f"confdir={self.confdir}",
            "--listen-host", "127.0.0.1",
            "--listen-port", "0",  # mitmproxy 11 binds an ephemeral port and logs it
        ]  # fmt: skip
        if self.addon is not None:
            args += ["-s", str(self.addon)]
            if self.config_path is not None:
                args += ["--set", f"ccswitch_config={self.config_path}"]
            args += ["--set", f"ccswitch_state={self.state_path}"]
        if self.mode is not None:
            args += ["--mode", self.mode]
        return args + self.extra

    def child_env(self) -> dict[str, str]:
        """The environment of the child: ours without proxy variables, a private HOME, overrides."""
        env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
        home = self.tmp_path / "home"
        home.mkdir(exist_ok=True)
        # A private HOME keeps the user's ~/.ccswitch and ~/.mitmproxy out of the test.
        env["HOME"] = str(home)
        env["PYTHONUNBUFFERED"] = "1"  # log lines reach the file as they are printed
        env.update(self.env)
        return env

    def start(self, *, expect_exit: bool = False) -> Proxy:
        """Start mitmdump; wait until it listens and has its CA (`expect_exit`: until it exits)."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("proxy already running")
        self._close_files()
        self.log_path = self._fresh_log_path()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the child's lifetime
        self._reader = open(self.log_path, "rb")  # noqa: SIM115
        self._out = bytearray()
        self.port, self.ports = 0, []
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp_path,  # no ./providers.yaml from the repository by accident
            env=self.child_env(),
            start_new_session=True,  # a Ctrl-C at the terminal is for pytest, not for the child
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            exited = self.process.poll() is not None
            ports = [int(m.group(2)) for m in LISTENING.finditer(self.output())]
            if exited:
                if expect_exit:
                    return self
                code = self.process.returncode
                raise RuntimeError(
                    f"mitmdump exited with {code} before listening:\n{self.output()}"
                )
            if ports and self.ca_path.exists() and not expect_exit:
                self.ports, self.port = ports, ports[0]
                return self
            if time.monotonic() >= deadline:
                self.stop()
                expected = "exit" if expect_exit else "listening line and CA"
                raise RuntimeError(
                    f"mitmdump: no {expected} within {START_TIMEOUT}s:\n{self.output()}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM (mitmdump shuts down gracefully), wait with a deadline, then SIGKILL."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        self.output()  # keep the final output readable after stop()
        self._close_files()

    def __enter__(self) -> Proxy:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status, or None while running (or before start)."""
        return None if self.process is None else self.process.poll()

    def wait_exit(self, timeout: float = 10) -> int:
        """Wait for the process to exit by itself; its exit status."""
        assert self.process is not None, "proxy never started"
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"mitmdump still running after {timeout}s:\n{self.output()}"
            ) from None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (for HTTPS_PROXY, or reverse-mode requests)."""
        return f"http://127.0.0.1:{self.port}"

    # Output ---------------------------------------------------------------------------------

    def output(self) -> str:
        """Everything mitmdump printed so far (stdout and stderr merged)."""
        if self._reader is not None:
            self._out += self._reader.read()
        return self._out.decode("utf-8", "replace")

    def wait_for_output(
        self, pattern: str | re.Pattern[str], timeout: float = 10, *, since: int = 0
    ) -> str:
        """Wait until `pattern` (substring or compiled regex) appears in output()[since:].

        Returns the first line containing the match. Pass ``since=len(proxy.output())`` to
        wait for a new occurrence only.
        """

        def find() -> str | None:
            text = self.output()
            if isinstance(pattern, re.Pattern):
                match = pattern.search(text, since)
                start = match.start() if match else -1
            else:
                start = text.find(pattern, since)
            if start < 0:
                return None
            line_start = text.rfind("\n", 0, start) + 1
            line_end = text.find("\n", start)
            return text[line_start : line_end if line_end >= 0 else len(text)]

        try:
            return wait_until(find, timeout, f"mitmdump output {pattern!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; output so far:\n{self.output()}") from None

    def _config_file(self, text: str) -> Path:
        # A second proxy in the same test must not rewrite the first one's file under it;
        # the same text again (a restart) reuses the file.
        for n in range(1, 1000):
            path = self.tmp_path / ("providers.yaml" if n == 1 else f"providers-{n}.yaml")
            if not path.exists():
                path.write_text(text)
                return path
            if path.read_text() == text:
                return path
        raise RuntimeError("too many config files")

    def _fresh_log_path(self) -> Path:
        # Several proxies (or restarts) in one test each keep their own log.
        for n in range(1, 1000):
            path = self.tmp_path / ("mitmdump.log" if n == 1 else f"mitmdump-{n}.log")
            if not path.exists():
                return path
        raise RuntimeError("too many mitmdump logs")

    def _close_files(self) -> None:
        for f in (self._log, self._reader):
            if f is not None:
                f.close()
        self._log = self._reader = None

    def __repr__(self) -> str:
        return f"<Proxy port={self.port} running={self.running} log={self.log_path}>"


# --------------------------------------------------------------------------------------------
# Clients


@dataclass
class Reply:
    """A response as the client saw it, with the arrival time of every piece of the body."""

    status: int
    reason: str
    headers: dict[str, str]  # lower-cased names, last value wins
    header_list: list[tuple[str, str]]  # as received
    body: bytes
    chunks: list[tuple[float, bytes]]  # (time.monotonic() at arrival, data), one per read1()
    started: float  # time.monotonic() just before the request was sent
    headers_at: float  # time.monotonic() when the status line and headers had arrived
    error: str | None = None  # why the body ended early (e.g. "IncompleteRead(...)"), else None

    def json(self) -> Any:
        """The body parsed as JSON."""
        return _json.loads(self.body)

    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8", "replace")

    def sse(self) -> list[SseEvent]:
        """The body parsed as a server-sent event stream."""
        return parse_sse(self.body)

    @property
    def first_byte(self) -> float | None:
        """time.monotonic() when the first body byte arrived (None if no body).

        Like `started`, `headers_at` and the chunk times an absolute instant: time to first
        byte is ``reply.first_byte - reply.started``.
        """
        return self.chunks[0][0] if self.chunks else None

    @property
    def spread(self) -> float:
        """Seconds between the first and the last body piece."""
        return self.chunks[-1][0] - self.chunks[0][0] if self.chunks else 0.0

    def __repr__(self) -> str:
        size = len(self.body)
        return f"<Reply {self.status} {size}B chunks={len(self.chunks)} error={self.error!r}>"


@dataclass
class Session:
    """One client connection reused for several requests: through `proxy`, or direct if None.

    An https:// origin through the proxy is a CONNECT tunnel with TLS verified against only
    the proxy's CA; an http:// origin through the proxy uses absolute-form request targets.
    """

    proxy: Proxy | None
    origin: str  # scheme://host[:port]
    timeout: float = 30
    conn: http.client.HTTPConnection = field(init=False)
    _absolute: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {self.origin!r}")
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        if self.proxy is None:
            if parts.scheme == "https":
                self.conn = http.client.HTTPSConnection(host, port, timeout=self.timeout)
            else:
                self.conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        elif parts.scheme == "https":
            context = ssl.create_default_context(cafile=str(self.proxy.ca_path))  # only that CA
            self.conn = http.client.HTTPSConnection(
                "127.0.0.1", self.proxy.port, timeout=self.timeout, context=context
            )
            self.conn.set_tunnel(host, port)  # TLS is then verified for `host`, not 127.0.0.1
        else:
            self.conn = http.client.HTTPConnection(
                "127.0.0.1", self.proxy.port, timeout=self.timeout
            )
            self._absolute = True

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request (`url` is a path or a URL on this origin) and read the whole reply."""
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        target = self.origin + path if self._absolute else path
        send_headers = dict(headers or {})
        if json is not None:
            if body is not None:
                raise ValueError("pass json or body, not both")
            body = _json.dumps(json).encode()
            if not any(k.lower() == "content-type" for k in send_headers):
                send_headers["Content-Type"] = "application/json"
        started = time.monotonic()
        self.conn.request(method, target, body=body, headers=send_headers)
        resp = self.conn.getresponse()
        return read_reply(resp, started)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_reply(resp: http.client.HTTPResponse, started: float) -> Reply:
    """Read `resp` incrementally, recording arrival times; an early end becomes Reply.error."""
    headers_at = time.monotonic()
    header_list = resp.getheaders()
    chunks: list[tuple[float, bytes]] = []
    error: str | None = None
    try:
        while True:
            data = resp.read1(65536)
            if not data:
                break
            chunks.append((time.monotonic(), data))
        # read1() ends a short Content-Length body quietly; the remaining length tells.
        if resp.length:
            error = f"IncompleteRead: {resp.length} more bytes expected"
    except (http.client.HTTPException, OSError) as exc:
        error = f"{type(exc).__name__}: {exc!r}"
    finally:
        resp.close()
    return Reply(
        status=resp.status,
        reason=resp.reason,
        headers={k.lower(): v for k, v in header_list},
        header_list=header_list,
        body=b"".join(data for _, data in chunks),
        chunks=chunks,
        started=started,
        headers_at=headers_at,
        error=error,
    )


def request(
    proxy: Proxy | None,
    method: str,
    url: str,
    *,
    json: Any = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> Reply:
    """One request to `url` on a fresh connection, through `proxy` (explicit proxy) or direct."""
    parts = urlsplit(url)
    with Session(proxy, f"{parts.scheme}://{parts.netloc}", timeout) as session:
        return session.request(method, url, json=json, body=body, headers=headers)


def reverse_request(
    proxy: Proxy,
    method: str,
    path: str,
    *,
    json: Any = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> Reply:
    """One plain-HTTP request straight to the proxy's port (for ``--mode reverse:…``)."""
    return request(
        None, method, proxy.url + path, json=json, body=body, headers=headers, timeout=timeout
    )


def concurrent(fn: Callable[[int], T], n: int, timeout: float = 60) -> list[T]:
    """Call ``fn(i)`` for i in range(n) in n threads released together; results in order.

    If any call raised, the first such exception is re-raised once all have finished.
    """
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException | None] = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout)
            results[i] = fn(i)
        except BaseException as exc:
            errors[i] = exc

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = sum(thread.is_alive() for thread in threads)
    if alive:
        raise AssertionError(f"{alive} of {n} concurrent calls still running after {timeout}s")
    failed = [exc for exc in errors if exc is not None]
    if failed:
        failed[0].add_note(f"{len(failed)} of {n} concurrent calls failed")
        raise failed[0]
    return results


def h2_request(
    proxy: Proxy,
    url: str,
    *,
    json: Any,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    """One POST over HTTP/2 (as Codex CLI sends it) through the proxy's CONNECT tunnel:
    (status, headers, body). mitmproxy's own dependency ``h2`` is the client."""
    import socket

    import h2.config
    import h2.connection
    import h2.events

    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    tls: ssl.SSLSocket | None = None
    try:
        raw.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = raw.recv(4096)
            if not chunk:
                raise ConnectionError("the proxy closed the tunnel")
            answer += chunk
        assert answer.split(b" ", 2)[1] == b"200", answer
        context = ssl.create_default_context(cafile=str(proxy.ca_path))
        context.set_alpn_protocols(["h2"])
        tls = context.wrap_socket(raw, server_hostname=host)
        assert tls.selected_alpn_protocol() == "h2", tls.selected_alpn_protocol()
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        body = _json.dumps(json).encode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request_headers = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", host),
            (":path", path),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            *((k.lower(), v) for k, v in (headers or {}).items()),
        ]
        conn.send_headers(1, request_headers)
        conn.send_data(1, body, end_stream=True)
        tls.sendall(conn.data_to_send())
        status, reply_headers, data = 0, {}, b""
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                raise ConnectionError("the proxy closed the connection mid-reply")
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    reply_headers = {k.decode(): v.decode() for k, v in event.headers}
                    status = int(reply_headers[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    return status, reply_headers, data
                elif isinstance(event, h2.events.StreamReset):
                    raise ConnectionError(f"stream reset: {event.error_code}")
            tls.sendall(conn.data_to_send())
    finally:
        if tls is not None:
            tls.close()
        raw.close()
