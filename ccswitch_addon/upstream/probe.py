"""Active health probes through the same pooled client as real requests."""

from __future__ import annotations

import aiohttp
from yarl import URL

from ccswitch_addon.core.config import AppConfig, Auth, ProviderConfig
from ccswitch_addon.core.rewrite import probe_request

__all__ = ["probe"]

PROBE_SECONDS = 30.0


async def probe(
    session: aiohttp.ClientSession, app: AppConfig, provider: ProviderConfig
) -> tuple[bool, str]:
    """(healthy, detail) from one cheap request carrying everything a real request carries."""
    method, path, headers, body = probe_request(app.api, provider)
    host = f"[{provider.host}]" if ":" in provider.host else provider.host
    url = URL(f"{provider.scheme}://{host}:{provider.port}{path}", encoded=True)
    timeout = aiohttp.ClientTimeout(
        total=PROBE_SECONDS,
        connect=app.breaker.connect_seconds,
        sock_connect=app.breaker.connect_seconds,
    )
    try:
        async with session.request(
            method, url, headers=headers, data=body, allow_redirects=False, timeout=timeout
        ) as response:
            status = response.status
            await response.read()
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        return False, str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    # Without a key of its own (passthrough) a probe can only show the host answers.
    keyless = provider.auth is Auth.PASSTHROUGH
    ok = 200 <= status < 300 or (keyless and status < 500 and status not in (408, 429))
    return ok, str(status)
