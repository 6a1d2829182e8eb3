"""What the CLI prints: the status table, and the request log and usage from the state file."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from ccswitch_addon.core.config import Config
from ccswitch_addon.core.status import printable

__all__ = [
    "STATUS_EXPLAINS",
    "USAGE_COVERS",
    "format_table",
    "known_apps",
    "log_rows",
    "parse_since",
    "status_from_store",
    "status_table",
    "usage_rows",
]

STATUS_EXPLAINS = (
    "current: the provider an app tries first (the queue's head, or the one chosen with "
    "`ccswitch switch`);\n"
    "active: the provider that served its last request (not the current one while failing over)."
)
STATUS_COUNTS = (
    "requests, success, p50/p95: attempts sent to each provider in the last hour since the "
    "proxy started (a request that failed over counts once for each provider it tried)"
)
USAGE_COVERS = (
    "From the request log in the state file (kept ccswitch_log_days, 30 by default): one row "
    "per client request, counted for the provider that answered it (or the last one tried); "
    "failures: requests whose final answer was an error. `ccswitch status` counts attempts "
    "per provider over the last hour instead."
)

_SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> float:
    """``90s``, ``30m``, ``1h``, ``7d`` → seconds."""
    match = _SINCE.match(text.strip())
    if not match:
        raise ValueError(f"--since takes a number and a unit (s, m, h, d), like 1h; got {text!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    # Cells hold provider text (error messages): never let it drive the terminal.
    cells = [[("-" if v is None else printable(str(v))) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def _until(deadline: float | None, now: float) -> str | None:
    if not deadline or deadline <= now:
        return None
    return f"in {int(deadline - now + 0.999)}s"


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{value * 100:.1f}%"


def status_table(status: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    out = []
    gateway = status.get("redis")
    if gateway:  # a team gateway: which instance this is, and its Redis
        seen = "reachable" if gateway["reachable"] else "UNREACHABLE, on local breakers"
        out.append(
            f"instance {status.get('instance')}, Redis {gateway['url']} ({seen}),"
            f" prefix {gateway['prefix']}"
        )
    out.append(STATUS_EXPLAINS)
    live = any("requests" in e for app in status["apps"].values() for e in app["queue"])
    if live:
        out.append(STATUS_COUNTS)
    for warning in status.get("warnings") or ():
        out.append(f"WARNING: {warning}")
    error = status.get("config_error")
    if error:
        since = time.strftime("%H:%M:%S", time.localtime(error["since"]))
        out.append(
            f"CONFIG ERROR since {since}: the proxy refused the changed file and keeps serving"
            f" the previous configuration until it is fixed:\n  "
            + str(error["message"]).replace("\n", "\n  ")
        )
    out.append("")
    for name, app in status["apps"].items():
        mode = "" if app.get("failover", True) else ", failover off"
        out.append(f"{name}: current {app['current']}, active {app.get('active') or '-'}{mode}")
        money = any(e.get("spent_usd", {}).get("month") or "budget" in e for e in app["queue"])
        windows = any("windows" in e for e in app["queue"])
        rows = []
        for entry in app["queue"]:
            rows.append(
                [
                    entry["id"],
                    entry["state"],
                    entry.get("health"),
                    entry.get("consecutive_failures"),
                    _until(entry.get("reopens_at"), now),
                    entry.get("requests"),
                    _pct(entry.get("success_rate")),
                    entry.get("p50_ms"),
                    entry.get("p95_ms"),
                ]
                + ([entry.get("changed_by") or "-"] if gateway else [])
                + ([_spent(entry, "day"), _spent(entry, "month")] if money else [])
                + ([_windows(entry.get("windows"))] if windows else [])
            )
        table = format_table(
            [
                "provider",
                "state",
                "health",
                "fails",
                "reopens",
                "requests",
                "success",
                "p50 ms",
                "p95 ms",
            ]
            + (["changed by"] if gateway else [])
            + (["today $", "month $"] if money else [])
            + (["5h / 7d"] if windows else []),
            rows,
        )
        out.append("  " + table.replace("\n", "\n  "))
        out.extend(_routing_lines(app, now))
        for entry in app["queue"]:
            if entry.get("budget_reason"):
                out.append(f"  {entry['id']}: {entry['budget_reason']}")
    events = status.get("events") or []
    if events:
        out.append("recent switches:")
        for event in events[:10]:
            stamp = time.strftime("%H:%M:%S", time.localtime(event["time"]))
            out.append(
                printable(
                    f"  {stamp}  {event['app']}: {event['from'] or '-'} → {event['to']}"
                    f" ({event['reason']})"
                )
            )
    return "\n".join(out)


def _routing_lines(app: dict[str, Any], now: float) -> list[str]:
    """Routes with their queues, live conversations and pool keys (status JSON: routing)."""
    lines = []
    for route in app.get("routes") or []:
        when = "; ".join(
            f"{k}: {', '.join(v) if isinstance(v, list) else v}" for k, v in route["when"].items()
        )
        lines.append(
            printable(
                f"  route {route['name']} ({when}): {' → '.join(route['queue'])};"
                f" current {route.get('current') or '-'}, active {route.get('active') or '-'}"
            )
        )
    if "affinity_seconds" in app:
        seconds = app["affinity_seconds"]
        conversations = app.get("conversations") or {}
        held = ", ".join(f"{pid} {n}" for pid, n in conversations.items()) or "none"
        mode = f"{seconds:g}s, failback {app.get('failback')}" if seconds else "off"
        lines.append(f"  affinity {mode}; live conversations: {held}")
    for pid, keys in (app.get("keys") or {}).items():
        shown = []
        for key in keys:
            state = key["state"]
            if state == "cooldown":
                state += f" {_until(key.get('cooldown_until'), now)}"
            shown.append(f"{key['key']} {state} ({key['conversations']} conv.)")
        lines.append(f"  keys of {pid}: " + ", ".join(shown))
    return lines


def _spent(entry: dict[str, Any], period: str) -> str | None:
    """Spend in the period, and the limit when a budget sets one: ``5.20/5.00``."""
    spent = entry.get("spent_usd", {}).get(period)
    limit = (entry.get("budget") or {}).get("daily_usd" if period == "day" else "monthly_usd")
    if spent is None:
        return None
    return f"{spent:.2f}" + (f"/{limit:.2f}" if limit is not None else "")


def _windows(windows: dict[str, Any] | None) -> str | None:
    """A subscription's windows: ``96% / 30%`` and its status when not plainly allowed."""
    if not windows:
        return None
    shown = " / ".join(_pct((windows.get(w) or {}).get("utilization")) or "-" for w in ("5h", "7d"))
    status = windows.get("status")
    return shown + (f" ({status})" if status and status != "allowed" else "")


def status_from_store(
    db: sqlite3.Connection, config: Config | None, now: float | None = None
) -> dict[str, Any]:
    """A status document from the state file alone (no proxy running)."""
    now = time.time() if now is None else now
    saved = {
        app: (current, active)
        for app, current, active in db.execute("SELECT app, current, active FROM apps")
    }
    breakers: dict[str, dict[str, tuple[str, float, float]]] = {}
    for app, provider, state, open_until, cooldown in db.execute(
        "SELECT app, provider, state, open_until, cooldown_until FROM breakers"
    ):
        breakers.setdefault(app, {})[provider] = (state, open_until or 0.0, cooldown or 0.0)
    names = list(config.apps) if config else sorted(set(saved) | set(breakers))
    apps: dict[str, Any] = {}
    for name in names:
        current, active = saved.get(name, (None, None))
        if config and name in config.apps:
            queue = list(config.apps[name].queue)
            current = current or queue[0]
        else:
            queue = sorted(breakers.get(name, {}))
        entries = []
        for pid in queue:
            state, open_until, cooldown = breakers.get(name, {}).get(pid, ("closed", 0.0, 0.0))
            if cooldown > now:
                label, reopens = "cooldown", max(cooldown, open_until)
            elif state != "closed" and open_until > now:
                label, reopens = state, open_until
            else:
                label, reopens = "closed", None
            entries.append({"id": pid, "state": label, "reopens_at": reopens})
        apps[name] = {"current": current or "-", "active": active, "queue": entries}
    events = [
        {"time": t, "app": a, "from": f, "to": to, "reason": r}
        for t, a, f, to, r in db.execute(
            "SELECT time, app, from_provider, to_provider, reason FROM events"
            " ORDER BY time DESC LIMIT 50"
        )
    ]
    return {"apps": apps, "events": events}


def known_apps(db: sqlite3.Connection, config: Config | None) -> list[str]:
    """The app names a filter may use: the configuration's, and any the state file has seen."""
    names = list(config.apps) if config else []
    for (name,) in db.execute("SELECT app FROM apps UNION SELECT DISTINCT app FROM requests"):
        if name not in names:
            names.append(name)
    return names


def log_rows(
    db: sqlite3.Connection, app: str | None, since: float, failovers: bool, now: float | None = None
) -> tuple[list[str], list[list[Any]]]:
    now = time.time() if now is None else now
    cutoff = now - since
    if failovers:
        sql = (
            "SELECT time, app, from_provider, to_provider, reason FROM events"
            " WHERE time >= ? AND (? IS NULL OR app = ?) ORDER BY time"
        )
        rows = [[_clock(r[0]), *r[1:]] for r in db.execute(sql, (cutoff, app, app))]
        return ["time", "app", "from", "to", "reason"], rows
    # A state file written before routes (schema 2) has no route column, nor chains before 4.
    columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
    routed = "route, why" if "route" in columns else "NULL, NULL"
    chained = "chain, note" if "chain" in columns else "NULL, NULL"
    sql = (
        "SELECT time, app, provider, model_requested, model_sent, status, error, attempts,"
        f" total_ms, ttfb_ms, input_tokens, output_tokens, streaming, {routed}, {chained},"
        f" {_cost(db)} FROM requests WHERE time >= ? AND (? IS NULL OR app = ?) ORDER BY time"
    )
    rows = []
    for r in db.execute(sql, (cutoff, app, app)):
        model = r[3] if r[3] == r[4] else f"{r[3]} → {r[4]}"
        rows.append(
            [
                _clock(r[0]),
                r[1],
                r[2],
                model,
                r[6] or r[5],
                chain_text(r[15], r[7]) + (f"; {r[16]}" if r[16] else ""),
                r[8],
                r[9],
                r[10],
                r[11],
                _usd(r[17]),
                "yes" if r[12] else "no",
                "; ".join(([f"route {r[13]}"] if r[13] else []) + ([r[14]] if r[14] else [])),
            ]
        )
    return [
        "time",
        "app",
        "provider",
        "model",
        "result",
        "chain",
        "ms",
        "ttfb ms",
        "in tok",
        "out tok",
        "cost $",
        "stream",
        "why",
    ], rows


def chain_text(stored: str | None, attempts: int) -> str:
    """``official 529 → openrouter 200`` from the stored chain; a count for older rows."""
    try:
        chain = json.loads(stored) if stored else None
    except ValueError:
        chain = None
    if not isinstance(chain, list) or not chain:
        return f"{attempts} attempt(s)"
    return " → ".join(f"{a.get('provider')} {a.get('error') or a.get('status')}" for a in chain)


def usage_rows(db: sqlite3.Connection, by: str) -> tuple[list[str], list[list[Any]]]:
    # by app too: claude, codex and gemini may each have a provider called backup
    key = (
        "app, provider"
        if by == "provider"
        else "date(time, 'unixepoch', 'localtime'), app, provider"
    )
    money = _money_columns(db)
    sql = (
        f"SELECT {key}, count(*),"
        " sum(CASE WHEN error IS NOT NULL OR status >= 400 THEN 1 ELSE 0 END),"
        " coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
        f" {money} FROM requests GROUP BY {key} ORDER BY {key}"
    )
    rows = []
    for r in db.execute(sql):
        *head, cost, unpriced, read, total = r
        # cost of the priced requests; "+" marks a sum that leaves unpriced requests out
        shown = None if cost is None else f"{cost:.4f}" + ("+" if unpriced else "")
        rows.append([*head, shown, _pct(read / total) if total else None])
    headers = ["app", "provider"] if by == "provider" else ["day", "app", "provider"]
    return [
        *headers,
        "requests",
        "failures",
        "input tokens",
        "output tokens",
        "cost $",
        "cache hit",
    ], rows


def _columns(db: sqlite3.Connection) -> set[str]:
    return {row[1] for row in db.execute("PRAGMA table_info(requests)")}


def _cost(db: sqlite3.Connection) -> str:
    """cost_usd, or NULL in a state file the proxy has not migrated yet (schema < 5)."""
    return "cost_usd" if "cost_usd" in _columns(db) else "NULL"


def _money_columns(db: sqlite3.Connection) -> str:
    """Cost, unpriced served requests, cache reads and all input tokens."""
    if "cost_usd" not in _columns(db):
        return "NULL, 0, 0, 0"
    return (
        "sum(cost_usd),"
        " sum(CASE WHEN cost_usd IS NULL AND status < 400 AND error IS NULL THEN 1 ELSE 0 END),"
        " coalesce(sum(cache_read_tokens), 0), coalesce(sum(input_total_tokens), 0)"
    )


def _usd(value: float | None) -> str | None:
    return None if value is None else f"{value:.4f}"


def _clock(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
