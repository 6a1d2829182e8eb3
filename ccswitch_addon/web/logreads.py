"""The request log as the dashboard shows it: the last rows, and tokens by provider and day.

Read from the state file through a read-only connection (the proxy's writer thread keeps
its own); the attempt chains of requests this process served come from memory.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ccswitch_addon.state.store import StoreError, open_readonly

__all__ = ["recent_requests", "tokens_by_day"]

ROW_FIELDS = (
    "time",
    "app",
    "provider",
    "model_requested",
    "model_sent",
    "status",
    "error",
    "attempts",
    "total_ms",
    "input_tokens",
    "output_tokens",
    "route",
    "why",
    "chain",
    "note",
    "cost_usd",
)


def recent_requests(
    path: Path | None, in_memory: Iterable[dict[str, Any]], limit: int = 50
) -> list[dict[str, Any]]:
    """The last ``limit`` requests, newest first, each with its attempt chain when known."""
    chains = {(round(r["time"], 3), r["app"]): r for r in in_memory}
    rows: list[dict[str, Any]] = []
    if path is not None:
        try:
            with open_readonly(path) as db:
                found = db.execute(
                    f"SELECT {', '.join(ROW_FIELDS)} FROM requests ORDER BY time DESC LIMIT ?",
                    (limit,),
                ).fetchall()
        except (StoreError, sqlite3.Error):
            found = []
        for values in found:
            row = dict(zip(ROW_FIELDS, values, strict=True))
            known = chains.pop((round(row["time"], 3), row["app"]), None)
            row["chain"] = known["chain"] if known else _chain(row["chain"])
            rows.append(row)
    # Requests not in the file yet (written within the second) or no file at all.
    rows.extend(chains.values())
    rows.sort(key=lambda r: r["time"], reverse=True)
    return rows[:limit]


def _chain(stored: str | None) -> list[Any] | None:
    """The chain a previous run wrote (JSON), so chains survive a restart."""
    try:
        chain = json.loads(stored) if stored else None
    except ValueError:
        return None
    return chain if isinstance(chain, list) else None


def tokens_by_day(path: Path | None, days: int = 7, now: float | None = None) -> dict[str, Any]:
    """Tokens, cost and cache hit ratio per provider and local day, the last ``days`` days."""
    if path is None:
        return {"rows": [], "note": "no state file: tokens are counted in the request log"}
    cutoff = (time.time() if now is None else now) - days * 86400
    try:
        with open_readonly(path) as db:
            found = db.execute(
                "SELECT date(time, 'unixepoch', 'localtime') AS day, app, provider,"
                " count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
                " sum(cost_usd), coalesce(sum(cache_read_tokens), 0),"
                " coalesce(sum(input_total_tokens), 0)"
                " FROM requests WHERE time >= ? GROUP BY day, app, provider"
                " ORDER BY day DESC, app, provider",
                (cutoff,),
            ).fetchall()
    except (StoreError, sqlite3.Error) as e:
        return {"rows": [], "note": str(e)}
    keys = ("day", "app", "provider", "requests", "input_tokens", "output_tokens", "cost_usd")
    rows = []
    for *values, read, total in found:
        row = dict(zip(keys, values, strict=True))
        # cache read tokens / all input tokens (uncached, cache reads and writes)
        row["cache_hit_ratio"] = round(read / total, 4) if total else None
        rows.append(row)
    return {"rows": rows, "note": None}
