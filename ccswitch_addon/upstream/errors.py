"""What can go wrong between the provider client and a provider, below HTTP."""

from __future__ import annotations

__all__ = [
    "BadAnswer",
    "BadRequest",
    "ConnectFailed",
    "ConnectTimeout",
    "Disconnected",
    "ProviderError",
]


class ProviderError(Exception):
    """The exchange with a provider failed below HTTP: a transport or framing fault."""


class ConnectFailed(ProviderError):
    """No connection: refused, unresolvable, unreachable, or TLS failed."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__(str(os_error) or type(os_error).__name__)
        self.os_error = os_error


class ConnectTimeout(ProviderError):
    """The connection was not made within the connect timeout."""


class Disconnected(ProviderError):
    """The connection broke before the answer was complete."""


class BadAnswer(ProviderError):
    """The provider's bytes are not an HTTP/1.x answer this client can read."""


class BadRequest(ValueError):
    """The request cannot be written as HTTP/1.1 (a line break or NUL in a header, say): the
    tool's fault, found before anything was sent."""
