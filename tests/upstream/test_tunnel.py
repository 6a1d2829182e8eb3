"""The provider client through upstream proxies on loopback: SOCKS5 and HTTP CONNECT, TLS to the
provider inside the tunnel, credentials, the pool keyed by the way there, and a proxy failing."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from e2e.fakes import closed_port
from e2e.tunnels import TunnelProxy

from ccswitch_addon.core.proxy import ProxyUrl, parse_proxy
from ccswitch_addon.upstream.client import ConnectFailed, ProviderClient, ProxyFailed

from .conftest import MakeHarness
from .test_client import OK, Raw, Serve, answering, client, raw, read_all, serving, tls_server
from .test_exchange import CONFIG

__all__ = ["client", "raw", "tls_server"]  # fixtures, used here by name

LIMIT = 10.0


@pytest.fixture(params=["socks5", "http"])
def tunnel(request: pytest.FixtureRequest) -> Iterator[TunnelProxy]:
    proxy = TunnelProxy(request.param).start()
    yield proxy
    proxy.stop()


def url_of(text: str) -> ProxyUrl:
    choice = parse_proxy(text, {})
    assert choice.url is not None
    return choice.url


async def get(
    client: ProviderClient, url: str, proxy: ProxyUrl | None, timeout: float = 5.0
) -> bytes:
    response = await asyncio.wait_for(client.request("GET", url, [], None, timeout, proxy), LIMIT)
    return await read_all(response)


async def test_a_plain_provider_through_the_proxy_with_the_connection_kept(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient, tunnel: TunnelProxy
) -> None:
    server = await serving(raw, answering(OK))
    proxy = url_of(tunnel.url())
    for _ in range(3):
        assert await get(client, f"http://127.0.0.1:{server.port}/v1", proxy) == b"{}"
    assert [s.target for s in tunnel.seen] == [f"127.0.0.1:{server.port}"]  # one tunnel
    assert server.connections == 1
    # The same provider directly is another connection: the pool keys by the way there.
    assert await get(client, f"http://127.0.0.1:{server.port}/v1", None) == b"{}"
    assert server.connections == 2
    assert len(tunnel.seen) == 1


async def test_tls_to_the_provider_runs_inside_the_tunnel_by_its_name(
    tls_server: tuple[Raw, Path], tunnel: TunnelProxy
) -> None:
    server, ca = tls_server
    trusting = ProviderClient(ssl_context=ssl.create_default_context(cafile=str(ca)))
    try:
        url = f"https://localhost:{server.port}/v1"
        assert await get(trusting, url, url_of(tunnel.url())) == b"{}"
    finally:
        await trusting.close()
    assert [s.target for s in tunnel.seen] == [f"localhost:{server.port}"]  # named, not resolved


async def test_an_untrusted_provider_certificate_fails_inside_the_tunnel_too(
    tls_server: tuple[Raw, Path], client: ProviderClient, tunnel: TunnelProxy
) -> None:
    server, _ = tls_server
    with pytest.raises(ConnectFailed) as caught:
        await get(client, f"https://localhost:{server.port}/v1", url_of(tunnel.url()))
    assert not isinstance(caught.value, ProxyFailed)  # the provider's fault, not the proxy's
    # asyncio closes the failed handshake's socket a few turns of the loop later: the proxy
    # sees its end close then.
    deadline = asyncio.get_running_loop().time() + LIMIT
    while tunnel.open:
        assert asyncio.get_running_loop().time() < deadline, "the tunnel was never closed"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("kind", ["socks5", "http"])
async def test_credentials_are_sent_and_a_wrong_password_is_the_proxys_failure(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient, kind: str
) -> None:
    server = await serving(raw, answering(OK))
    proxy = TunnelProxy(kind, user="alice", password="s3cret-pass").start()
    try:
        target = f"http://127.0.0.1:{server.port}/v1"
        assert await get(client, target, url_of(proxy.url())) == b"{}"
        assert proxy.seen[0].user == "alice"
        wrong = url_of(f"{kind}://alice:wrong-pass@127.0.0.1:{proxy.port}")
        with pytest.raises(ProxyFailed) as caught:
            await get(client, target, wrong)
        assert proxy.refused == 1
        message = str(caught.value)
        assert message.startswith(f"proxy {kind}://alice:***@127.0.0.1:{proxy.port} failed")
        assert "wrong-pass" not in message
    finally:
        proxy.stop()


async def test_a_dead_proxy_is_a_connect_failure_naming_the_proxy(client: ProviderClient) -> None:
    for kind in ("socks5", "http"):
        dead = url_of(f"{kind}://127.0.0.1:{closed_port()}")
        with pytest.raises(ProxyFailed, match=rf"^proxy {kind}://127.0.0.1:\d+ failed"):
            await get(client, "http://127.0.0.1:9/v1", dead)
    assert client._open == 0


async def test_a_proxy_that_cannot_reach_the_provider_fails_the_attempt(
    client: ProviderClient, tunnel: TunnelProxy
) -> None:
    with pytest.raises(ProxyFailed):
        await get(client, f"http://127.0.0.1:{closed_port()}/v1", url_of(tunnel.url()))


async def test_a_silent_proxy_times_out_as_the_proxys_failure(client: ProviderClient) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # says nothing until the test ends

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ProxyFailed, match="no tunnel"):
            await get(client, "http://127.0.0.1:9/v1", url_of(f"socks5://127.0.0.1:{port}"), 0.3)
    finally:
        for writer in writers:
            writer.close()
        server.close()


async def test_a_dead_proxy_fails_over_and_counts_against_the_provider(
    harness: MakeHarness, tunnel: TunnelProxy
) -> None:
    dead = f"socks5://127.0.0.1:{closed_port()}"
    config = CONFIG.replace(
        'primary: {base_url: "<primary>", api_key: "${K}"}',
        f'primary: {{base_url: "<primary>", api_key: "${{K}}", proxy: "{dead}"}}',
        1,
    ).replace(
        'backup: {base_url: "<backup>", api_key: "${K}"}',
        f'backup: {{base_url: "<backup>", api_key: "${{K}}", proxy: "{tunnel.url()}"}}',
        1,
    )
    h = await harness(config)
    answer = await h.send(body={"model": "m"})
    assert answer.status == 200
    assert answer.headers["x-ccswitch-provider"] == "backup"
    first = h.finished[0].attempts[0]
    assert first.failed
    assert (first.error or "").startswith(f"connect: proxy {dead} failed")
    assert h.breaker("primary").label() == "open"  # unreachable, as a refused connection
    assert h.providers["primary"].seen == []
    assert [s.target for s in tunnel.seen] == [h.providers["backup"].url.removeprefix("http://")]
