"""`ccswitch check` beside a running proxy: keys this shell has and the proxy has not.

A key exported after the proxy started is seen by `check` (run from the user's shell) but
never by the proxy, whose environment is fixed. Say so instead of letting the two disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from ccswitch_addon.cli.client import DEFAULT_PROXY, ProxyUnavailable, call
from ccswitch_addon.core.config import Config
from ccswitch_addon.core.envfile import fix_hint

__all__ = ["stale_keys"]


def stale_keys(config: Config, err: TextIO, proxy: str = DEFAULT_PROXY) -> list[str]:
    """Providers enabled here but disabled in the proxy running this same file; each said
    on ``err`` with the fix."""
    try:
        code, status = call(proxy, "GET", "/status", timeout=1.0)
    except ProxyUnavailable:
        return []
    if code != 200 or not isinstance(status, dict) or not status.get("config"):
        return []
    try:
        same = Path(status["config"]).resolve() == Path(config.source).resolve()
    except OSError:
        return []
    if not same:
        return []
    stale = []
    for name, app in (status.get("apps") or {}).items():
        for entry in app.get("queue", ()):
            mine = config.apps.get(name)
            here = mine.providers.get(entry.get("id")) if mine else None
            if here is None or here.disabled or entry.get("state") != "disabled":
                continue
            variable = here.key_var or "its key"
            stale.append(f"{name}:{here.id}")
            print(
                f"note: the proxy at {proxy} has {name}:{here.id} disabled: {variable} is set "
                f"here but not in its environment; {fix_hint(variable, config.source)}",
                file=err,
            )
    return stale
