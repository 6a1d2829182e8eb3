"""Small upstream proxies on loopback for the tests: SOCKS5 and HTTP CONNECT, in threads.

Each counts the tunnels it opened and records where to, and may ask for a user and password.
They serve only loopback targets, and stop with ``stop()``.
"""

from __future__ import annotations

import base64
import select
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass, field


@dataclass
class Seen:
    target: str  # host:port as the client asked for it
    user: str = ""


@dataclass
class TunnelProxy:
    """``kind`` is "socks5" or "http"; with ``user``, the password must match too."""

    kind: str
    user: str = ""
    password: str = ""
    seen: list[Seen] = field(default_factory=list)
    refused: int = 0  # handshakes refused (bad credentials)
    open: int = 0  # connections being served: 0 once every client closed its end
    _server: socketserver.ThreadingTCPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def url(self, with_credentials: bool = True) -> str:
        creds = f"{self.user}:{self.password}@" if self.user and with_credentials else ""
        return f"{self.kind}://{creds}127.0.0.1:{self.port}"

    def start(self) -> TunnelProxy:
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with owner._lock:
                    owner.open += 1
                try:
                    if owner.kind == "socks5":
                        upstream = owner._socks5(self.request)
                    else:
                        upstream = owner._connect(self.request)
                    if upstream is not None:
                        _pipe(self.request, upstream)
                except OSError:
                    pass
                finally:
                    with owner._lock:
                        owner.open -= 1

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- SOCKS5 (RFC 1928, 1929) -------------------------------------------------------------

    def _socks5(self, client: socket.socket) -> socket.socket | None:
        version, count = _read(client, 2)
        methods = _read(client, count)
        assert version == 5
        user = ""
        if self.user:
            if 2 not in methods:
                self.refused += 1  # counted before the client can learn of it
                client.sendall(b"\x05\xff")
                return None
            client.sendall(b"\x05\x02")
            _, size = _read(client, 2)
            user = _read(client, size).decode()
            (size,) = _read(client, 1)
            password = _read(client, size).decode()
            if (user, password) != (self.user, self.password):
                self.refused += 1
                client.sendall(b"\x01\x01")
                return None
            client.sendall(b"\x01\x00")
        else:
            client.sendall(b"\x05\x00")
        _, _, _, kind = _read(client, 4)  # CONNECT, the only command asked for
        if kind == 1:
            host = socket.inet_ntoa(_read(client, 4))
        elif kind == 3:
            (size,) = _read(client, 1)
            host = _read(client, size).decode()
        else:
            host = socket.inet_ntop(socket.AF_INET6, _read(client, 16))
        (port,) = struct.unpack("!H", _read(client, 2))
        self.seen.append(Seen(f"{host}:{port}", user))
        try:
            upstream = _loopback(host, port)
        except OSError:
            client.sendall(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")  # connection refused
            return None
        client.sendall(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        return upstream

    # --- HTTP CONNECT (RFC 9110 9.3.6) ---------------------------------------------------------

    def _connect(self, client: socket.socket) -> socket.socket | None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(4096)
            if not data:
                return None
            head += data
        lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        headers = {k.lower(): v for k, v in headers.items()}
        user = ""
        if self.user:
            expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if headers.get("proxy-authorization") != f"Basic {expected}":
                self.refused += 1
                client.sendall(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n"
                )
                return None
            user = self.user
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            return None
        self.seen.append(Seen(target, user))
        host, _, port = target.rpartition(":")
        try:
            upstream = _loopback(host.strip("[]"), int(port))
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            return None
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return upstream


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed mid-handshake")
        data += chunk
    return data


def _loopback(host: str, port: int) -> socket.socket:
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise OSError("these test proxies reach loopback only")
    return socket.create_connection((host, port), timeout=10)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until either side closes; small writes go at once (no Nagle delay)."""
    for sock in (a, b):
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            readable, _, _ = select.select([a, b], [], [], 60)
            if not readable:
                return
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                (b if source is a else a).sendall(data)
    finally:
        b.close()
