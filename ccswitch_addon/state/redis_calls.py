"""Talking to the team gateway's Redis: key names, the Lua scripts, every call with a timeout.

Nothing here decides anything: a call either answers or raises one of ``CALL_ERRORS``; what
a failure means (the instance goes on alone) is state/reachability.py's and shared.py's.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Awaitable
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

__all__ = [
    "CALL_ERRORS",
    "SCRIPTS",
    "TIMEOUT_SECONDS",
    "RedisCalls",
    "instance_id",
    "key",
    "mask_url",
    "script_text",
]

T = TypeVar("T")

TIMEOUT_SECONDS = 0.25  # every Redis call; past it the instance goes on alone
CALL_ERRORS = (RedisError, OSError, TimeoutError)
SCRIPTS = ("acquire", "confirm", "record", "release", "reset", "served", "tally", "writeback")


def key(prefix: str, kind: str, app: str = "", pid: str = "") -> str:
    """Every key and the channel, built here. ``{…}`` is a hash tag: one breaker's keys
    share a cluster slot.

    ``cb`` breaker hash, ``inflight`` an unproven provider's unanswered requests (sorted
    set), ``w`` the prefix of its error-rate buckets, ``active`` an app's active provider,
    ``events`` the event stream, ``channel`` the pub/sub channel, ``conv`` the provider that
    last served a conversation (``pid`` is then ``route|conversation``).
    """
    if kind in ("cb", "inflight", "w"):
        return f"{prefix}:{{{app}:{pid}}}:{kind}" + (":" if kind == "w" else "")
    if kind == "active":
        return f"{prefix}:{{{app}}}:active"
    if kind == "conv":
        return f"{prefix}:{{{app}}}:conv:{pid}"
    if kind in ("events", "channel"):
        return f"{prefix}:{kind}"
    raise ValueError(f"no such key kind: {kind}")


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def mask_url(url: str) -> str:
    """The Redis URL without its password, for logs and the status."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def script_text(name: str) -> str:
    lua = resources.files("ccswitch_addon.state") / "lua"
    return (lua / "common.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


class RedisCalls:
    """One client, the scripts registered once, and Redis's clock as last seen."""

    def __init__(self, url: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = url
        self.timeout = timeout
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self.scripts = {name: self.client.register_script(script_text(name)) for name in SCRIPTS}
        self.skew = 0.0  # local clock − Redis clock, seconds

    def local(self, redis_ms: float) -> float:
        """A Redis-clock time (ms) on this instance's clock (s)."""
        return redis_ms / 1000.0 + self.skew

    def redis_ms(self, local: float) -> int:
        """A time on this instance's clock (s) on Redis's (ms), as far as the skew is known."""
        return int((local - self.skew) * 1000)

    def saw(self, now_ms: float) -> None:
        self.skew = time.time() - now_ms / 1000.0

    async def read(self, awaitable: Awaitable[T]) -> T:
        """Any command or pipeline, within the timeout."""
        return await asyncio.wait_for(awaitable, self.timeout)

    async def script(self, name: str, keys: list[str], args: list[Any]) -> dict[str, Any]:
        """A script's JSON reply; raises one of CALL_ERRORS."""
        raw = await self.read(self.scripts[name](keys=keys, args=args))
        reply: dict[str, Any] = json.loads(raw)
        self.saw(reply["now"])
        return reply
