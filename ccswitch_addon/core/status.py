"""The status document: what the router knows, as plain JSON-ready data (no secrets)."""

from __future__ import annotations

from typing import Any

from ccswitch_addon.core.router import Router
from ccswitch_addon.core.switch import SwitchManager

__all__ = ["build_status"]


def build_status(router: Router, switches: SwitchManager) -> dict[str, Any]:
    apps: dict[str, Any] = {}
    for name, app in router.config.apps.items():
        current = router.current(name)
        order = list(app.queue)
        if current not in order:
            order.insert(0, current)
        order += [pid for pid in app.providers if pid not in order]
        entries = []
        for pid in order:
            provider = app.providers[pid]
            breaker = router.breaker(name, pid)
            entry: dict[str, Any] = {
                "id": pid,
                "name": provider.name,
                "state": "disabled" if provider.disabled else breaker.label(),
                "consecutive_failures": breaker.consecutive_failures,
                "reopens_at": breaker.reopens_at(),
                "in_queue": pid in app.queue,
                "base_url": provider.base_url,
                "auth": provider.auth.value,
            }
            if provider.disabled:
                entry["disabled_reason"] = provider.disabled
            if breaker.cooldown_until is not None:
                entry["cooldown_reason"] = breaker.cooldown_reason
            if entry["state"] in ("open", "half_open"):
                entry["opened_by"] = breaker.opened_by
                entry["opened_at"] = breaker.opened_at
            entries.append(entry)
        apps[name] = {
            "failover": app.failover,
            "current": current,
            "active": switches.active(name),
            "queue": entries,
        }
    return {
        "config": router.config.source,
        "apps": apps,
        "events": [event.to_json() for event in reversed(switches.events)],
    }
