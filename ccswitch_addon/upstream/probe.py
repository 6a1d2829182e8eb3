"""Active health probes through the same pooled client as real requests."""

from __future__ import annotations

import asyncio

from ccswitch_addon.core.config import AppConfig, Auth, ProviderConfig
from ccswitch_addon.core.proxy import Proxies
from ccswitch_addon.core.rewrite import probe_request
from ccswitch_addon.upstream.client import ProviderClient, ProviderError

__all__ = ["probe"]

PROBE_SECONDS = 30.0
PROBE_BODY_LIMIT = 1024 * 1024  # a probe's answer is read (the connection is reused) up to this


async def probe(
    client: ProviderClient, app: AppConfig, provider: ProviderConfig, proxies: Proxies | None = None
) -> tuple[bool, str]:
    """(healthy, detail) from one cheap request carrying everything a real request carries,
    by the same way as real requests (its proxy, if any)."""
    method, path, headers, body = probe_request(app.api, provider)
    host = f"[{provider.host}]" if ":" in provider.host else provider.host
    if provider.port != (443 if provider.scheme == "https" else 80):
        host = f"{host}:{provider.port}"
    url = f"{provider.scheme}://{host}{path}"
    try:
        async with asyncio.timeout(PROBE_SECONDS):
            proxy = (proxies or Proxies()).route(provider.proxy, provider.scheme, provider.host)
            timeout = app.breaker.connect_seconds
            response = await client.request(method, url, headers, body, timeout, proxy)
            try:
                status, read = response.status, 0
                while read < PROBE_BODY_LIMIT and (chunk := await response.readany()):
                    read += len(chunk)
            finally:
                response.release()
    except (ProviderError, OSError, TimeoutError, ValueError) as e:
        text = str(e) or type(e).__name__
        if isinstance(e, TimeoutError) and not str(e):
            text = f"no answer in {PROBE_SECONDS:g}s"
        return False, text.splitlines()[0][:200]
    # Without a key of its own (passthrough) a probe can only show the host answers.
    keyless = provider.auth is Auth.PASSTHROUGH
    ok = 200 <= status < 300 or (keyless and status < 500 and status not in (408, 429))
    return ok, str(status)
