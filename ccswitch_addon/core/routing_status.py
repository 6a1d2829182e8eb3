"""The routing part of an app's status: routes with their queues and active providers,
live conversations per provider, and each pool key's state (masked)."""

from __future__ import annotations

from typing import Any

from ccswitch_addon.core.config import AppConfig
from ccswitch_addon.core.router import Router

__all__ = ["routing_status"]


def routing_status(router: Router, app: AppConfig) -> dict[str, Any]:
    name = app.name
    routing = app.routing
    routes = []
    for route in routing.routes:
        when = route.when
        shown: dict[str, Any] = {}
        if when.models:
            shown["model"] = list(when.models)
        for key in ("subagent", "tokens_over", "thinking"):
            value = getattr(when, key)
            if value is not None:
                shown[key] = value
        if when.headers:
            shown["header"] = {h: p.pattern for h, p in when.headers}
        routes.append(
            {
                "name": route.name,
                "when": shown,
                "queue": list(route.queue),
                "current": _first_available(router, app, route.queue),
                "active": router.route_active.get((name, route.name)),
            }
        )
    keys = {}
    for pid in app.providers:
        pool = router.pools.get(name, pid)
        if pool is not None:
            keys[pid] = pool.states()
    return {
        "routes": routes,
        "affinity_seconds": routing.affinity_seconds,
        "failback": routing.failback.value,
        "conversations": router.live_conversations(name),
        "keys": keys,
    }


def _first_available(router: Router, app: AppConfig, queue: tuple[str, ...]) -> str | None:
    """The provider the route's next request goes to first (no conversation held): not one
    the router skips (disabled, open, or held back by the gate: a spent budget)."""
    gate = router.gate
    for pid in queue:
        if app.providers[pid].disabled or not router.breaker(app.name, pid).available():
            continue
        if gate is not None and gate(app.name, pid, None) is not None:
            continue
        return pid
    return None
