"""Answers the proxy gives by itself, in the shape each API's clients understand."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from ccswitch_addon.wire.api import Api

__all__ = ["Reply", "api_error", "unavailable"]


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


# Error types by status, as each API names them.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    529: "overloaded_error",
}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    503: "service_unavailable",
}


def api_error(api: Api, status: int, message: str, kind: str = "") -> Reply:
    """An error body as the API itself would send it."""
    if api is Api.ANTHROPIC:
        error_type = kind or _ANTHROPIC_TYPES.get(status, "permission_error")
        body: object = {"type": "error", "error": {"type": error_type, "message": message}}
    elif api is Api.GEMINI:
        status_name = _GEMINI_STATUS.get(status, "UNAVAILABLE")
        body = {"error": {"code": status, "message": message, "status": status_name}}
    else:
        error_type = kind or _OPENAI_TYPES.get(status, "permission_denied")
        body = {"error": {"message": message, "type": error_type, "code": error_type}}
    return Reply(status, json.dumps(body).encode())


def unavailable(
    api: Api,
    app: str,
    reason: str,
    retry_at: float | None,
    now: float | None = None,
    note: str | None = None,
) -> Reply:
    """No provider can take the request: say why and when to come back, without contacting
    any; ``note`` names each provider and why it was left out."""
    now = time.time() if now is None else now
    if reason == "endpoint_missing":
        return api_error(api, 404, f"ccswitch: no provider for {app} has this endpoint")
    if reason == "none_configured":
        message = (
            f"ccswitch: no provider is configured for {app} "
            "(every provider is disabled; see `ccswitch check`)"
        )
        wait = 60
    else:
        wait = max(1, math.ceil((retry_at or now) - now))
        message = (
            f"ccswitch: every provider for {app} is open or cooling down; "
            f"the first is allowed again in {wait}s"
        )
    status = 529 if api is Api.ANTHROPIC else 503
    reply = api_error(api, status, message + (f" ({note})" if note else ""))
    return Reply(reply.status, reply.body, (*reply.headers, ("retry-after", str(wait))))
