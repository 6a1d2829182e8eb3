"""A TCP connection to a provider's host, racing its addresses (Happy Eyeballs, RFC 8305).

asyncio's own race (``happy_eyeballs_delay``) trips an assertion in ``staggered_race`` under an
eager task factory, which mitmproxy 12 installs on Python 3.12+ (CPython gh-124309), and without
a race a host whose first address is black-holed (broken IPv6) would take the whole connect
timeout. So the race is done here, on plain sockets: the winner is handed to
``loop.create_connection(sock=…)`` for TLS and the protocol; a loser is only ever a socket to close.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Sequence
from typing import Any

__all__ = ["ATTEMPT_DELAY", "open_socket"]

ATTEMPT_DELAY = 0.25  # seconds before the next address is tried while one is still connecting

_AddrInfo = tuple[int, int, int, str, Any]


async def open_socket(host: str, port: int, *, delay: float = ATTEMPT_DELAY) -> socket.socket:
    """A connected non-blocking socket to ``host:port``; OSError when no address answers."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    if not infos:
        raise OSError(f"{host} has no address")
    addresses = _interleave(infos)
    if len(addresses) == 1:
        return await _connect(loop, addresses[0])
    return await _race(loop, addresses, delay)


def _interleave(infos: Sequence[_AddrInfo]) -> list[_AddrInfo]:
    """Alternate address families, the resolver's first family first (RFC 8305 §4)."""
    by_family: dict[int, list[_AddrInfo]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    rounds = itertools.zip_longest(*by_family.values())
    return [info for round_ in rounds for info in round_ if info is not None]


async def _connect(loop: asyncio.AbstractEventLoop, info: _AddrInfo) -> socket.socket:
    family, kind, proto, _, address = info
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


async def _race(
    loop: asyncio.AbstractEventLoop, addresses: list[_AddrInfo], delay: float
) -> socket.socket:
    waiting = iter(addresses)
    running: set[asyncio.Task[socket.socket]] = set()
    started: list[asyncio.Task[socket.socket]] = []
    errors: list[OSError] = []
    winner: socket.socket | None = None
    try:
        start_next = True
        while True:
            if start_next:
                info = next(waiting, None)
                if info is not None:
                    task = loop.create_task(_connect(loop, info))
                    started.append(task)
                    running.add(task)
            more = len(started) < len(addresses)
            if not running:
                break
            done, running = await asyncio.wait(
                running, timeout=delay if more else None, return_when=asyncio.FIRST_COMPLETED
            )
            start_next = True  # the delay ran out, or an attempt failed: the next one goes now
            for task in done:
                error = task.exception()
                if error is None:
                    winner = task.result()
                    return winner
                errors.append(error if isinstance(error, OSError) else OSError(str(error)))
    finally:
        for task in started:
            task.cancel()  # a cancelled attempt closes its own socket; a done one is kept as is
            task.add_done_callback(lambda t: _close_loser(t, winner))
    if len(errors) == 1:
        raise errors[0]
    raise OSError("; ".join(dict.fromkeys(str(e) for e in errors)))


def _close_loser(task: asyncio.Task[socket.socket], winner: socket.socket | None) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    sock = task.result()
    if sock is not winner:
        sock.close()
