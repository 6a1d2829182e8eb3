"""The one pooled HTTP client all attempts and probes share."""

from __future__ import annotations

import aiohttp

__all__ = ["POOL_LIMIT", "new_session"]

POOL_LIMIT = 1024  # connections open to all providers together
KEEPALIVE_SECONDS = 60.0


def new_session() -> aiohttp.ClientSession:
    """Keep-alive connections reused across every client; never through HTTPS_PROXY (the
    environment is not read), bodies decoded only for encodings the provider was offered."""
    connector = aiohttp.TCPConnector(
        limit=POOL_LIMIT,
        limit_per_host=0,
        keepalive_timeout=KEEPALIVE_SECONDS,
        ttl_dns_cache=300,
    )
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        auto_decompress=True,
        skip_auto_headers=("User-Agent", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
