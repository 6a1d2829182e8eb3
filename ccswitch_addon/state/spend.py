"""Budgets shared by a team gateway: each provider's spend per period, summed in Redis.

Kept apart from state/shared.py (the breakers): one script, one small class. Each instance
adds its own requests' cost and takes the fleet's totals back, so a limit reached by the
fleet holds every instance's provider back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.exceptions import RedisError

from ccswitch_addon.core.budget import Spent, period_end

__all__ = ["SharedSpend", "spend_key"]

DAY = 86400


def spend_key(prefix: str, row: Spent) -> str:
    """``ccsw:{claude:primary}:spend:day:2026-12-06`` (the breaker's hash tag)."""
    return f"{prefix}:{{{row.app}:{row.provider}}}:spend:{row.period}:{row.key}"


class SharedSpend:
    def __init__(self, client: Any, prefix: str, timeout: float) -> None:
        lua = resources.files("ccswitch_addon.state") / "lua" / "spend.lua"
        self._script = client.register_script(lua.read_text())
        self._prefix = prefix
        self._timeout = timeout

    async def add(self, rows: Sequence[Spent], usd: float, now: float) -> list[Spent] | None:
        """Add ``usd`` to each row's period; the fleet's totals, or None when Redis failed."""
        keys = [spend_key(self._prefix, row) for row in rows]
        lives = [max(DAY, int(period_end(row.period, now) - now) + DAY) for row in rows]
        try:
            totals = await asyncio.wait_for(
                self._script(keys=keys, args=[repr(usd), *lives]), self._timeout
            )
        except (RedisError, OSError, TimeoutError):
            return None
        return [
            Spent(row.app, row.provider, row.period, row.key, float(total))
            for row, total in zip(rows, totals, strict=True)
        ]
