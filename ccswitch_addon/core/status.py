"""The status document: what the router knows, as plain JSON-ready data (no secrets)."""

from __future__ import annotations

import re
from typing import Any

from ccswitch_addon.core.router import Router
from ccswitch_addon.core.routing_status import routing_status
from ccswitch_addon.core.switch import SwitchManager

__all__ = ["build_status", "printable"]

# C0 controls (escape sequences, line breaks, backspace), DEL, C1 controls, and the
# bidirectional overrides that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """Text from a provider, safe for a terminal: control characters shown escaped."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\u{ord(m.group()):04x}"), text)


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
            **routing_status(router, app),
        }
    return {
        "config": router.config.source,
        "apps": apps,
        "events": [event.to_json() for event in reversed(switches.events)],
    }
