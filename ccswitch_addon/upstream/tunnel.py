"""A tunnel to a provider through an upstream proxy: the SOCKS5 or HTTP CONNECT handshake.

python-socks speaks both on asyncio; what comes back is a connected socket to the provider
on which the pool's connection runs (with TLS to the provider inside it, by its own name).
Whatever goes wrong on the way is :class:`ProxyFailed`, named by the proxy's masked URL.
"""

from __future__ import annotations

import socket

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
from python_socks.async_.asyncio import Proxy
from python_socks.sync import Proxy as BlockingProxy

from ccswitch_addon.core.proxy import ProxyUrl
from ccswitch_addon.upstream.errors import ConnectFailed

__all__ = ["ProxyFailed", "connect_through", "open_tunnel"]

_TYPES = {"http": ProxyType.HTTP, "socks5": ProxyType.SOCKS5}


class ProxyFailed(ConnectFailed):
    """The proxy refused, timed out, or would not open the tunnel: nothing reached the
    provider. A connection failure of the attempt; the message says it was the proxy."""

    def __init__(self, proxy: ProxyUrl, why: str) -> None:
        super().__init__(OSError(f"proxy {proxy.masked()} failed: {why}"))


async def open_tunnel(proxy: ProxyUrl, host: str, port: int) -> socket.socket:
    """A socket connected to ``host:port`` through ``proxy``; the caller bounds the time."""
    client = Proxy.create(
        proxy_type=_TYPES[proxy.scheme],
        host=proxy.host,
        port=proxy.port,
        username=proxy.username or None,
        password=proxy.password or None,
        rdns=True,  # the proxy resolves the provider's name (socks5h)
    )
    try:
        return await client.connect(dest_host=host, dest_port=port, timeout=None)
    except ProxyTimeoutError:
        raise ProxyFailed(proxy, "timed out") from None
    except ProxyConnectionError as e:
        raise ProxyFailed(proxy, _why(e)) from None
    except ProxyError as e:  # the handshake: refused credentials, CONNECT 403, SOCKS reply
        raise ProxyFailed(proxy, _why(e)) from None
    except OSError as e:
        raise ProxyFailed(proxy, _why(e)) from None


def connect_through(proxy: ProxyUrl, host: str, port: int, timeout: float) -> socket.socket:
    """The same tunnel for blocking code (``ccswitch test``): a connected socket or ProxyFailed."""
    client = BlockingProxy.create(
        proxy_type=_TYPES[proxy.scheme],
        host=proxy.host,
        port=proxy.port,
        username=proxy.username or None,
        password=proxy.password or None,
        rdns=True,
    )
    try:
        return client.connect(dest_host=host, dest_port=port, timeout=timeout)
    except ProxyTimeoutError:
        raise ProxyFailed(proxy, "timed out") from None
    except (ProxyError, OSError) as e:
        raise ProxyFailed(proxy, _why(e)) from None


def _why(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:160]
