"""Events the proxy writes into a stream itself, in each API's own shape."""

from __future__ import annotations

import json

from ccswitch_addon.wire.api import Api

__all__ = ["stream_error_event"]


def stream_error_event(api: Api, path: str, message: str) -> bytes:
    """An SSE event that ends a stream with an error the tool understands.

    Written after a provider's stream went silent: Anthropic's ``error`` event with
    ``overloaded_error``, an OpenAI Chat error chunk, a Responses ``response.failed``, or a
    Gemini error object.
    """
    if api is Api.ANTHROPIC:
        body = {"type": "error", "error": {"type": "overloaded_error", "message": message}}
        return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"
    if api is Api.GEMINI:
        gemini = {"error": {"code": 503, "message": message, "status": "UNAVAILABLE"}}
        return b"data: " + json.dumps(gemini).encode() + b"\n\n"
    if path.rstrip("/").endswith("/responses"):
        failed = {
            "type": "response.failed",
            "response": {
                "status": "failed",
                "error": {"code": "server_error", "message": message},
            },
        }
        return b"event: response.failed\ndata: " + json.dumps(failed).encode() + b"\n\n"
    chunk = {"error": {"message": message, "type": "server_error", "code": "stream_idle"}}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"
