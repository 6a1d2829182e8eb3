"""How the provider side judges and labels an attempt's answer: what a transport error or a
broken answer means for the breaker, whether a complete 2xx is usable, which of the provider's
headers go on to the tool and which labels of ours are added to them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from multidict import CIMultiDictProxy

from ccswitch_addon.core.outcome import Effect, ErrorKind, Outcome, classify_error
from ccswitch_addon.core.router import Selection
from ccswitch_addon.upstream.client import ConnectFailed, ConnectTimeout, ProviderError
from ccswitch_addon.upstream.held import Answering
from ccswitch_addon.wire.api import Api
from ccswitch_addon.wire.usage import BodyWatch

__all__ = [
    "UNANSWERED",
    "broken_outcome",
    "describe",
    "forwarded",
    "invalid_answer",
    "json_reply",
    "labelled",
    "noted",
    "ok_outcome",
    "queue_of",
    "transport_outcome",
]

logger = logging.getLogger(__name__)

# The error type a tool reads when no provider answered at all (refused, timed out).
UNANSWERED = {Api.ANTHROPIC: "api_error", Api.OPENAI: "server_error", Api.GEMINI: ""}

# Headers of the provider's answer that belong to its connection, not to the client's.
_RESPONSE_DROP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "content-length",
        "content-encoding",  # the client library decoded the body
        "upgrade",
        "te",
        "trailer",
        "x-ccswitch-provider",
        "x-ccswitch-attempts",
        "x-ccswitch-route",
        "x-ccswitch-note",
    }
)


def ok_outcome() -> Outcome:
    return Outcome(Effect.SUCCESS, retry=False, reason="ok")


def forwarded(headers: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    """The provider's headers less those of its connection, the ones its ``Connection:`` names
    included (RFC 9110 7.6.1)."""
    named = {
        token.strip().lower()
        for value in headers.getall("connection", ())
        for token in value.split(",")
    }
    return [(k, v) for k, v in headers.items() if k.lower() not in _RESPONSE_DROP | named]


def invalid_answer(body: bytes, watch: BodyWatch, completion: bool) -> str | None:
    """Why a complete 2xx answer is not one the tool can use: every API answers a JSON object
    (BodyWatch marks one it parsed as ended), and a completion carries content or usage."""
    if not body.strip():
        return "empty answer"
    if not watch.ended:
        return "answer is not a complete JSON object"
    problem = watch.problem()  # an error inside a 200 (a gateway's): said in its own words
    if problem is not None:
        return problem
    if completion and not watch.content and watch.usage.output_tokens is None:
        return "answer has neither content nor usage"
    return None


def labelled(
    headers: Sequence[tuple[str, str]], provider: str, attempts: int, route: str | None = None
) -> list[tuple[str, str]]:
    """The headers with our labels added; a provider's own were dropped (forwarded)."""
    labels = [("x-ccswitch-provider", provider), ("x-ccswitch-attempts", str(attempts))]
    return [*headers, *labels, *([("x-ccswitch-route", route)] if route else [])]


def queue_of(selection: Selection) -> tuple[str, ...]:
    """The queue the selection was made from: its route's, or the app's."""
    if selection.route is None:
        return selection.app.queue
    return next(r.queue for r in selection.app.routing.routes if r.name == selection.route)


def noted(headers: Sequence[tuple[str, str]], note: str | None) -> list[tuple[str, str]]:
    """The answer's headers with why no backup was tried, when none was."""
    return [*headers, ("x-ccswitch-note", note)] if note else list(headers)


def json_reply(
    answer: Answering,
    reply: tuple[int, bytes],
    provider: str | None,
    attempts: int,
    route: str | None = None,
) -> None:
    """An answer the proxy gives in the tool's format without a provider's."""
    headers = [("content-type", "application/json")]
    if provider is not None:
        headers.append(("x-ccswitch-provider", provider))
    headers.append(("x-ccswitch-attempts", str(attempts)))
    if route:
        headers.append(("x-ccswitch-route", route))
    answer.whole(reply[0], headers, reply[1])


def describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:200] if text else ""


def transport_outcome(error: Exception, first_byte_seconds: float) -> Outcome:
    """What an attempt that got no response headers means."""
    if isinstance(error, ConnectTimeout):
        return classify_error(ErrorKind.CONNECT, "connect timeout")
    if isinstance(error, ConnectFailed):  # refused, DNS, TLS
        return classify_error(ErrorKind.CONNECT, describe(error.os_error))
    if isinstance(error, TimeoutError):
        return classify_error(ErrorKind.TIMEOUT, f"no first byte in {first_byte_seconds:g}s")
    if isinstance(error, ProviderError | OSError):
        return classify_error(ErrorKind.RESET, describe(error))
    if isinstance(error, ValueError):  # a URL or header the client library refuses
        return classify_error(ErrorKind.CONNECT, describe(error))
    # Anything else is a bug of ours or the library's: still a failed attempt, never a
    # permit that is not given back.
    logger.error("ccswitch: an attempt failed unexpectedly", exc_info=error)
    return classify_error(ErrorKind.RESET, f"{type(error).__name__}: {describe(error)}")


def broken_outcome(error: Exception, request_seconds: float) -> Outcome:
    """What an attempt whose answer broke before the client got any of it means."""
    if isinstance(error, TimeoutError):
        return classify_error(ErrorKind.BROKEN, f"answer not complete in {request_seconds:g}s")
    if isinstance(error, ProviderError | OSError):
        return classify_error(ErrorKind.BROKEN, describe(error) or "answer broke")
    logger.error("ccswitch: an answer failed unexpectedly", exc_info=error)
    return classify_error(ErrorKind.BROKEN, f"{type(error).__name__}: {describe(error)}")
