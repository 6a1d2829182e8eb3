"""Hostile providers and upstream proxies: what they cost the proxy (#20).

    python bench/hostile.py [--quick] [--requests 8] [--size-mb 8] [--bombs 4] [--rounds 200]

On loopback, mitmdump with the addon in reverse mode (plain HTTP to it), the e2e harness's
fake provider as the backup, and raw-socket hostile providers of this script's own:

- never_reads: a provider that accepts and never reads. ``--requests`` requests of
  ``--size-mb`` MB at once, ``first_byte_seconds: 1``: mitmdump's RSS before, at its peak
  while the provider holds them, and after; and the connections to that provider still open
  afterwards (from /proc/net/tcp). The bound: 256 KB unsent per attempt in the client, plus
  the request itself while the request lasts.
- bomb: a provider that answers 200 JSON of ~200 KB gzip that decodes to 200 MB. ``--bombs``
  at once: RSS before, peak and after. The bound: 4 MB decoded held per answer.
- socks5_latency: the same provider direct and through a loopback SOCKS5 proxy (the tests'
  thread-per-connection one, tests/e2e/tunnels.py) set with ``ccswitch_upstream_proxy``; time
  to the first event of a stream, p50 and p99 over ``--rounds`` requests, interleaved, on a
  kept-alive client connection (the pool keeps the tunnel too).

Figures as JSON on stdout. Run only small counts on a shared machine (``--quick``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from e2e.fakes import FakeProvider, ok_json, ok_sse  # noqa: E402
from e2e.proxy import Proxy, Session  # noqa: E402
from e2e.tunnels import TunnelProxy  # noqa: E402

CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    breaker: {{failure_threshold: 100, first_byte_seconds: 1, request_seconds: 30}}
    providers:
      primary: {{base_url: "{primary}", auth: passthrough}}
      backup: {{base_url: "{backup}", auth: passthrough}}
"""
HEADERS = {"x-api-key": "bench", "anthropic-version": "2023-06-01"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def established_to(port: int) -> int:
    """TCP connections in ESTABLISHED (or CLOSE_WAIT) to a local port, from /proc/net/tcp."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if int(remote.split(":")[1], 16) == port and state in ("01", "08"):
            count += 1
    return count


class Hostile:
    """A raw provider on loopback: ``never_reads``, or answers every request with ``answer``."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.answer is None:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                self.held.append(conn)  # never read: the window fills
            else:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        assert self.answer is not None
        with conn:
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                conn.sendall(self.answer)
            except OSError:
                pass

    def stop(self) -> None:
        self.stopped = True
        self.sock.close()
        for conn in self.held:
            conn.close()


def start_proxy(tmp: Path, config: str, name: str, extra: list[str] | None = None) -> Proxy:
    return Proxy(
        tmp,
        config,
        mode="reverse:https://api.anthropic.com",
        state=tmp / f"{name}.db",
        extra=extra or [],
    ).start()


def post(proxy: Proxy, body: bytes) -> int:
    with Session(None, proxy.url, timeout=60) as session:
        reply = session.request("POST", "/v1/messages", body=body, headers=HEADERS)
        return reply.status


def under_attack(proxy: Proxy, bodies: list[bytes], until: Callable[[], bool]) -> dict[str, Any]:
    """Send ``bodies`` at once; sample the proxy's RSS until every answer came."""
    assert proxy.process is not None
    pid = proxy.process.pid
    before = rss_mb(pid)
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda b=b: statuses.append(post(proxy, b)), daemon=True)
        for b in bodies
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    peak = before
    while any(t.is_alive() for t in threads) and time.monotonic() - started < 120:
        peak = max(peak, rss_mb(pid))
        time.sleep(0.02)
    held_after = until()
    time.sleep(1.0)  # what is released once the answers went
    return {
        "requests": len(bodies),
        "served": statuses.count(200),
        "seconds": round(time.monotonic() - started, 2),
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_peak_over_before_mb": round(peak - before, 1),
        "rss_after_mb": round(rss_mb(pid), 1),
        "still_open_to_the_provider": held_after,
    }


def never_reads(args: argparse.Namespace, tmp: Path, backup: FakeProvider) -> dict[str, Any]:
    hostile = Hostile(None)
    proxy = start_proxy(tmp, CONFIG.format(primary=hostile.url, backup=backup.url), "reads")
    try:
        pad = "x" * (args.size_mb * 1024 * 1024)
        bodies = [
            json.dumps({"model": "m", "max_tokens": 8, "messages": [], "pad": pad}).encode()
        ] * args.requests
        result = under_attack(proxy, bodies, lambda: established_to(hostile.port))
        result["request_mb"] = args.size_mb
        result["bound"] = "256 KB unsent per attempt, plus the request while it lasts"
        return result
    finally:
        proxy.stop()
        hostile.stop()


def bomb(args: argparse.Namespace, tmp: Path, backup: FakeProvider) -> dict[str, Any]:
    packed = gzip.compress(b'{"type":"message","content":"' + b" " * (200 * 1024 * 1024), 9)
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(packed), packed)
    )
    hostile = Hostile(answer)
    proxy = start_proxy(tmp, CONFIG.format(primary=hostile.url, backup=backup.url), "bomb")
    try:
        body = json.dumps({"model": "m", "max_tokens": 8, "messages": []}).encode()
        result = under_attack(proxy, [body] * args.bombs, lambda: established_to(hostile.port))
        result["gzip_kb"] = round(len(packed) / 1024, 1)
        result["decoded_mb"] = 200
        result["bound"] = "4 MB decoded held per answer"
        return result
    finally:
        proxy.stop()
        hostile.stop()


def socks5_latency(args: argparse.Namespace, tmp: Path, provider: FakeProvider) -> dict[str, Any]:
    socks = TunnelProxy("socks5").start()
    config = CONFIG.format(primary=provider.url, backup=provider.url)
    direct = start_proxy(tmp, config, "direct")
    tunnelled = start_proxy(
        tmp, config, "socks", ["--set", f"ccswitch_upstream_proxy={socks.url()}"]
    )
    body = json.dumps({"model": "m", "max_tokens": 8, "messages": [], "stream": True}).encode()
    times: dict[str, list[float]] = {"direct": [], "socks5": []}
    try:
        sessions = {
            "direct": Session(None, direct.url, timeout=30),
            "socks5": Session(None, tunnelled.url, timeout=30),
        }
        for _ in range(5):  # warm: connections, the tunnel, the pool
            for session in sessions.values():
                session.request("POST", "/v1/messages", body=body, headers=HEADERS)
        for _ in range(args.rounds):
            for name, session in sessions.items():
                reply = session.request("POST", "/v1/messages", body=body, headers=HEADERS)
                assert reply.first_byte is not None, reply
                assert reply.status == 200, reply
                times[name].append((reply.first_byte - reply.started) * 1000)
        for session in sessions.values():
            session.close()
    finally:
        direct.stop()
        tunnelled.stop()
        socks.stop()

    def summary(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "p50_ms": round(statistics.median(ordered), 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
        }

    result: dict[str, Any] = {name: summary(values) for name, values in times.items()}
    result["added_p50_ms"] = round(result["socks5"]["p50_ms"] - result["direct"]["p50_ms"], 3)
    result["tunnels_opened"] = len(socks.seen)
    result["rounds"] = args.rounds
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke test")
    parser.add_argument("--requests", type=int, default=8, help="never_reads: requests at once")
    parser.add_argument("--size-mb", type=int, default=8, help="never_reads: MB per request")
    parser.add_argument("--bombs", type=int, default=4, help="bomb: answers at once")
    parser.add_argument("--rounds", type=int, default=200, help="socks5_latency: requests each")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.size_mb, args.bombs, args.rounds = 2, 2, 2, 20
    backup = FakeProvider("backup").start()
    streaming = FakeProvider("streaming").start()
    backup.default = ok_json()
    streaming.default = ok_sse()
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="ccsw-hostile-bench-") as name:
            tmp = Path(name)
            results["never_reads"] = never_reads(args, tmp, backup)
            results["bomb"] = bomb(args, tmp, backup)
            results["socks5_latency"] = socks5_latency(args, tmp, streaming)
    finally:
        backup.stop()
        streaming.stop()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
