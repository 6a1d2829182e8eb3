"""One client request while the provider side serves it (:class:`Exchange`), what each of
its attempts leaves for mitmweb and flow files (:class:`AttemptRecord`), and an attempt's two
ends: failed (:class:`Failed`) or committed to (:class:`Committed`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ccswitch_addon.core.breaker import Permit
from ccswitch_addon.core.config import AppConfig, Endpoint, ProviderConfig
from ccswitch_addon.core.outcome import Outcome
from ccswitch_addon.core.record import Attempt, Finished
from ccswitch_addon.upstream.answer import Verdict
from ccswitch_addon.upstream.client import ProviderResponse
from ccswitch_addon.upstream.translation import Leg, Readable
from ccswitch_addon.wire.usage import BodyWatch

__all__ = ["AttemptRecord", "Committed", "Exchange", "Failed"]


@dataclass(slots=True)
class AttemptRecord:
    """One attempt as it may be shown in mitmweb and flow files (secrets masked)."""

    number: int
    provider: str
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None
    started: float
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""
    error: str | None = None
    failed: bool = False
    ended: float = 0.0


@dataclass(slots=True)
class Exchange:
    """What the provider side keeps about one client request while it is served."""

    app: AppConfig  # the configuration the request started with, kept through a reload
    endpoint: Endpoint  # which of the app's endpoints; count_tokens is no health signal
    method: str
    path: str  # as the client sent it, with its query
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes | None
    started: float = field(default_factory=time.time)
    attempts: list[Attempt] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    records: list[AttemptRecord] = field(default_factory=list)
    models: tuple[str | None, str | None] = (None, None)
    served: str | None = None
    ttfb_ms: float | None = None
    watch: BodyWatch | None = None
    finished: Finished | None = None
    keep_records: bool = True  # build AttemptRecords (for mitmweb and flow files)
    thinking_stripped: bool = False  # retried once without thinking after a signature 400
    route: str | None = None  # the route that took it (core/routes.py)
    why: str | None = None  # what affinity decided
    conversation: str | None = None
    keys: dict[str, list[int]] = field(default_factory=dict)  # pool keys used, per provider
    order: tuple[str, ...] = ()  # the providers in the order this request considers them
    note: str | None = None  # why no backup was tried (core/reasons.py)
    session: str | None = None  # the conversation, when the router's gate asks for it
    arrived: Callable[[], object] | None = None  # told when the relay has the request
    # read as asking for no stream (held.wants_stream): served in the hook, and told to the
    # engine by the hook's side (Upstream.report) once the answer is out, not at its finish
    whole: bool = False
    reported: bool = False
    # the relay's answer to mitmproxy, when its head is told in-process (answer.Answer.later)
    later_head: asyncio.Future[Verdict | None] | None = None


@dataclass(slots=True)
class Failed:
    provider: ProviderConfig
    outcome: Outcome
    status: int | None
    headers: list[tuple[str, str]]
    body: bytes
    unsent: bool = False  # the request could not be written: the client's fault, no provider's


@dataclass(slots=True)
class Committed:
    provider: ProviderConfig
    permit: Permit | None
    response: ProviderResponse
    record: AttemptRecord | None
    t0: float
    slow: bool
    buffered: bytes
    watch: BodyWatch
    complete: bool  # the whole answer is in ``buffered`` and judged already
    headers: list[tuple[str, str]]  # the provider's, less those of its connection
    leg: Leg | None = None  # how the answer is translated for the tool
    body: Readable | None = None  # the rest of a stream, translated; else the response
