"""A small Anthropic-style provider on loopback, for `ccswitch demo` (no keys, no internet)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["MockProvider"]

WORDS = ("Failover", "kept", "this", "session", "going", "without", "a", "restart.")


class MockProvider:
    """Answers POST /v1/messages with a streamed (or JSON) Messages reply.

    ``failure`` is asked before each answer: a status (e.g. 529) to fail with, or None.
    """

    def __init__(self, name: str, failure: Callable[[], int | None] = lambda: None) -> None:
        self.name = name
        self.failure = failure
        self.served = 0
        self.failed = 0
        self.keys_seen: set[str] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name=f"mock-{name}"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> MockProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the demo prints its own story

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with provider._lock:
                    provider.keys_seen.add(self.headers.get("x-api-key") or "")
                    status = provider.failure()
                    if status:
                        provider.failed += 1
                    else:
                        provider.served += 1
                if status:
                    self._send_json(
                        status,
                        {
                            "type": "error",
                            "error": {
                                "type": "overloaded_error",
                                "message": f"{provider.name} is overloaded",
                            },
                        },
                    )
                elif body.get("stream"):
                    self._stream(body.get("model", "claude"))
                else:
                    self._send_json(200, _message(provider.name, body.get("model", "claude")))

            def _send_json(self, status: int, document: dict[str, Any]) -> None:
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, model: str) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                message = _message(provider.name, model)
                message["content"] = []
                message["usage"] = {"input_tokens": 12, "output_tokens": 1}
                events: list[tuple[str, dict[str, Any]]] = [
                    ("message_start", {"type": "message_start", "message": message}),
                    (
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": 0,
                            "content_block": {"type": "text", "text": ""},
                        },
                    ),
                ]
                events += [
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": word + " "},
                        },
                    )
                    for word in WORDS
                ]
                events += [
                    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    (
                        "message_delta",
                        {
                            "type": "message_delta",
                            "delta": {"stop_reason": "end_turn"},
                            "usage": {"output_tokens": len(WORDS)},
                        },
                    ),
                    ("message_stop", {"type": "message_stop"}),
                ]
                for name, data in events:
                    self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()
                self.close_connection = True

        return Handler


def _message(provider: str, model: str) -> dict[str, Any]:
    return {
        "id": f"msg_{provider}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": " ".join(WORDS)}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 12, "output_tokens": len(WORDS)},
    }
