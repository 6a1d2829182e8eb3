"""Which key of a provider's pool an attempt uses, and another one after a refusal.

The pools themselves are in core/keypool.py; the provider side only learns the key, as a
copy of the provider's configuration whose ``api_key`` is that key.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from ccswitch_addon.core.config import ProviderConfig
from ccswitch_addon.core.keypool import REFUSED
from ccswitch_addon.core.outcome import Outcome
from ccswitch_addon.core.rewrite import mask
from ccswitch_addon.core.router import Router

if TYPE_CHECKING:  # exchange imports this module
    from ccswitch_addon.upstream.job import Exchange

__all__ = ["another_key", "with_key"]

logger = logging.getLogger(__name__)


def with_key(router: Router, ex: Exchange, provider: ProviderConfig) -> ProviderConfig | None:
    """The provider with the pool key this request uses (the conversation's own), or None
    when every key cools down; a provider without a pool as it is."""
    pool = router.pools.get(ex.app.name, provider.id)
    if pool is None:
        return provider
    used = ex.keys.setdefault(provider.id, [])
    index = pool.pick(ex.conversation, used)
    if index is None:
        return None
    used.append(index)
    return dataclasses.replace(provider, api_key=pool.key(index))


def another_key(
    router: Router, ex: Exchange, provider: ProviderConfig, status: int, outcome: Outcome
) -> tuple[ProviderConfig, str] | None:
    """After a 401, 403 or 429: the key cools down alone and the provider with another key
    comes back, with a note for the attempt's record. None when the provider has no pool, no
    other key can serve, or a rule said the client gets this answer."""
    pool = router.pools.get(ex.app.name, provider.id)
    used = ex.keys.get(provider.id)
    if pool is None or not used or status not in REFUSED or not outcome.retry:
        return None
    index = used[-1]
    until = outcome.cooldown_until or time.time() + ex.app.breaker.open_seconds
    pool.refused(index, until, f"{status}: {outcome.reason}")
    keyed = with_key(router, ex, provider)
    if keyed is None:
        return None
    refused = f"key {mask(pool.key(index))} refused ({status}): cooling down"
    logger.info("ccswitch: %s:%s %s", ex.app.name, provider.id, refused)
    return keyed, f"{refused}; sent again with another key"
