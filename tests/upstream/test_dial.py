"""dial.open_socket: the address race, on loopback, with and without an eager task factory."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from ccswitch_addon.upstream import dial


def _listener(backlog: int = 8) -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(backlog)
    return server


def _info(port: int) -> tuple[int, int, int, str, tuple[str, int]]:
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port whose connects hang: its accept queue is full, so the kernel drops new SYNs."""
    server = _listener(backlog=0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):  # a backlog of 0 still queues one or two; fill it
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


# mitmproxy 12 runs with asyncio's eager task factory (Python 3.12+): race under both there.
FACTORIES = ["default", "eager"] if hasattr(asyncio, "eager_task_factory") else ["default"]


@pytest.fixture(params=FACTORIES)
async def task_factory(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    if request.param == "eager":
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    yield
    loop.set_task_factory(None)


async def test_a_black_holed_first_address_loses_to_the_next_one(
    black_hole: int, task_factory: None
) -> None:
    good = _listener()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        sock = await asyncio.wait_for(
            dial._race(loop, [_info(black_hole), _info(good.getsockname()[1])], 0.05), 5
        )
        assert sock.getpeername()[1] == good.getsockname()[1]
        assert loop.time() - started < 3  # not the kernel's SYN retry time
        sock.close()
    finally:
        good.close()


async def test_every_address_refused_is_one_error_naming_them(task_factory: None) -> None:
    ports = []
    for _ in range(2):
        closed = _listener()
        ports.append(closed.getsockname()[1])
        closed.close()
    loop = asyncio.get_running_loop()
    with pytest.raises(OSError, match=str(ports[0])) as raised:
        await dial._race(loop, [_info(p) for p in ports], 0.05)
    assert all(str(port) in str(raised.value) for port in ports)


async def test_localhost_connects_under_the_eager_factory(task_factory: None) -> None:
    """'localhost' has two addresses here (127.0.0.1 and ::1): the path that tripped asyncio."""
    server = socket.create_server(("localhost", 0), family=socket.AF_INET)
    try:
        port = server.getsockname()[1]
        sock = await asyncio.wait_for(dial.open_socket("localhost", port, delay=0.05), 5)
        assert sock.getpeername()[:2] == ("127.0.0.1", port)
        sock.close()
    finally:
        server.close()


def test_families_alternate_first_family_first() -> None:
    v6 = (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 1, 0, 0))
    v4a, v4b = _info(1), _info(2)
    assert dial._interleave([v6, v4a, v4b]) == [v6, v4a, v4b]
    assert dial._interleave([v4a, v4b, v6]) == [v4a, v6, v4b]


async def test_a_cancelled_race_leaves_no_socket_open(black_hole: int, task_factory: None) -> None:
    loop = asyncio.get_running_loop()
    before = _open_sockets_to(black_hole)  # the fillers still knocking
    race = asyncio.ensure_future(dial._race(loop, [_info(black_hole), _info(black_hole)], 0.01))
    deadline = loop.time() + 5
    while loop.time() < deadline and _open_sockets_to(black_hole) < before + 2:
        await asyncio.sleep(0.01)
    assert _open_sockets_to(black_hole) == before + 2  # both attempts under way
    race.cancel()
    with pytest.raises(asyncio.CancelledError):
        await race
    deadline = loop.time() + 5
    while loop.time() < deadline and _open_sockets_to(black_hole) > before:
        await asyncio.sleep(0.01)
    assert _open_sockets_to(black_hole) == before


def _open_sockets_to(port: int) -> int:
    """Our process's sockets in SYN-SENT to ``port`` (from /proc/net/tcp)."""
    count = 0
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if remote_port == port and fields[3] == "02":  # SYN_SENT
                count += 1
    return count
