"""Clients that do not trust the proxy's CA, as warnings for the status and the dashboard.

Without the CA a tool retries for minutes and then prints a certificate error, while the
proxy's only trace was mitmproxy's handshake line among many. mitmproxy's
``tls_failed_client`` hook reports each failed handshake; a warning per app stays in the
status until a handshake for that app's hosts succeeds again.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["UNTRUSTED", "Trust"]

# mitmproxy's own wording of a handshake error that means "the client rejected the
# certificate"; Node (Claude Code, Gemini CLI) mostly just closes the connection.
UNTRUSTED = ("unknown ca", "bad certificate", "certificate unknown", "connection closed")


class Trust:
    """The apps whose clients failed the TLS handshake with the proxy, and why."""

    def __init__(self, hint: Callable[[str], str]) -> None:
        self._hint = hint  # the app's setup line: eval "$(/abs/ccswitch env claude)"
        self._warnings: dict[str, str] = {}

    def failed(self, app: str, host: str, client: str, error: str) -> str | None:
        """A handshake failed; the new warning, or None when it says nothing new."""
        if error == "connection closed early" or not any(u in error for u in UNTRUSTED):
            return None
        text = (
            f"a client ({app} at {client}, for {host}) does not trust the proxy's CA: "
            f"run {self._hint(app)} in its shell and start it again"
        )
        if self._warnings.get(app) == text:
            return None
        self._warnings[app] = text
        return text

    def succeeded(self, app: str) -> bool:
        """A handshake succeeded: True when a warning was cleared."""
        return self._warnings.pop(app, None) is not None

    def warnings(self) -> list[str]:
        return list(self._warnings.values())
