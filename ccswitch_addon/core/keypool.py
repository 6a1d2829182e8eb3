"""Key pools: several keys for one provider (``api_keys``).

New conversations are spread over the keys (the key with the fewest conversations, ties in
turn), so a handful of conversations already uses every key; a conversation keeps its key,
since a prompt cache belongs to one account. A key refused with 401, 403 or 429 cools down
alone, and the request is sent again at once with another key of the same provider; the
provider's breaker hears of it only when no key can serve. Keys are only ever shown masked.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from ccswitch_addon.core.config import Config
from ccswitch_addon.core.rewrite import mask

__all__ = ["REFUSED", "KeyPool", "KeyPools"]

REFUSED = frozenset({401, 403, 429})  # the key, not the provider: another key may serve
_STICKY = 5_000  # conversations whose key a pool remembers


@dataclass(slots=True)
class _Key:
    secret: str
    cooldown_until: float | None = None
    reason: str | None = None
    conversations: int = 0  # conversations that hold this key now


class KeyPool:
    """One provider's keys, with each key's cooldown and the conversations holding it."""

    def __init__(self, keys: tuple[str, ...], clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._keys = [_Key(secret) for secret in keys]
        self._holder: OrderedDict[str, int] = OrderedDict()  # conversation → key index
        self._turn = 0

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(key.secret for key in self._keys)

    def key(self, index: int) -> str:
        return self._keys[index].secret

    def usable(self, index: int) -> bool:
        until = self._keys[index].cooldown_until
        if until is None:
            return True
        if until <= self._clock():
            self._keys[index].cooldown_until = self._keys[index].reason = None
            return True
        return False

    def pick(self, conversation: str | None, avoid: Collection[int] = ()) -> int | None:
        """The key for this request, or None when every key (but those avoided) cools down."""
        held = self._holder.get(conversation) if conversation is not None else None
        if held is not None and held not in avoid and self.usable(held):
            self._holder.move_to_end(conversation)  # type: ignore[arg-type]
            return held
        free = [i for i in range(len(self._keys)) if i not in avoid and self.usable(i)]
        if not free:
            return None
        self._turn += 1
        n = len(self._keys)
        chosen = min(free, key=lambda i: (self._keys[i].conversations, (i - self._turn) % n))
        if conversation is not None:
            self._hold(conversation, chosen)
        return chosen

    def _hold(self, conversation: str, index: int) -> None:
        before = self._holder.pop(conversation, None)
        if before is not None:
            self._keys[before].conversations -= 1
        self._holder[conversation] = index
        self._keys[index].conversations += 1
        if len(self._holder) > _STICKY:
            _, oldest = self._holder.popitem(last=False)
            self._keys[oldest].conversations -= 1

    def refused(self, index: int, until: float, reason: str) -> None:
        key = self._keys[index]
        key.cooldown_until, key.reason = until, reason

    def reset(self) -> None:
        for key in self._keys:
            key.cooldown_until = key.reason = None

    def adopt(self, old: KeyPool) -> None:
        """After a reload: keys that stayed keep their cooldowns; an unchanged pool keeps
        which conversation holds which key."""
        if old.secrets == self.secrets:
            self._keys, self._holder, self._turn = old._keys, old._holder, old._turn
            return
        before = {key.secret: key for key in old._keys}
        for key in self._keys:
            previous = before.get(key.secret)
            if previous is not None:
                key.cooldown_until, key.reason = previous.cooldown_until, previous.reason

    def states(self) -> list[dict[str, Any]]:
        """Each key masked, with its state: for status, the dashboard and ``check``."""
        shown = []
        for index, key in enumerate(self._keys):
            cooling = not self.usable(index)
            entry: dict[str, Any] = {
                "key": mask(key.secret),
                "state": "cooldown" if cooling else "ready",
                "conversations": key.conversations,
            }
            if cooling:
                entry["cooldown_until"] = key.cooldown_until
                entry["cooldown_reason"] = key.reason
            shown.append(entry)
        return shown


class KeyPools:
    """The pools of every provider that has more than one key."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._pools: dict[tuple[str, str], KeyPool] = {}

    def reload(self, config: Config) -> None:
        pools: dict[tuple[str, str], KeyPool] = {}
        for app in config.apps.values():
            for provider in app.providers.values():
                if len(provider.api_keys) < 2:
                    continue
                pool = KeyPool(provider.api_keys, self._clock)
                old = self._pools.get((app.name, provider.id))
                if old is not None:
                    pool.adopt(old)
                pools[(app.name, provider.id)] = pool
        self._pools = pools

    def get(self, app: str, pid: str) -> KeyPool | None:
        return self._pools.get((app, pid))
