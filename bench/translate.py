"""What translation costs: the translator in process, and time to first event through the proxy.

    python bench/translate.py [--quick] [--no-proxy]

1. In process (CPU, one core): µs per streamed Chat event through the Anthropic and the
   Responses stream translators (one event per network read, as a provider sends them),
   µs per 1 KB Chat JSON answer made the tool's, µs per request translated (a Claude Code
   turn of about 1 KB).
2. Through a real mitmdump with the addon (the e2e harness: explicit proxy, TLS to the proxy,
   one kept-alive connection per case): time to the first event of a streamed answer from
   the same Chat fake, translated (Claude Code's /v1/messages to a Chat provider) against
   untranslated (a Chat request from the codex app to the same provider), interleaved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from ccswitch_addon.wire.translate.translator import (  # noqa: E402
    AnthropicToChat,
    ResponsesToChat,
)

TURN = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "stream": True,
    "system": [{"type": "text", "text": "You are Claude Code. " * 10}],
    "tools": [
        {
            "name": "Read",
            "description": "Read a file",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
        }
    ],
    "messages": [{"role": "user", "content": "Explain this repository. " * 24}],
}


def chat_events(n: int) -> list[bytes]:
    """A Chat stream as a provider sends it: text deltas of ~20 characters, finish, usage."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        obj = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": "Hello, "})]
    events += [chunk({"content": f"word{i} and some more "}) for i in range(n)]
    events.append(chunk({}, "stop"))
    usage = {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": n}}
    events.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def per_event_us(make: Any, events: list[bytes], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        machine = make().stream()
        t0 = time.perf_counter()
        for event in events:
            machine.feed(event)
        machine.close()
        best = min(best, (time.perf_counter() - t0) / len(events))
    return best * 1e6


def answer_us(rounds: int) -> tuple[float, int]:
    text = "x" * 1000
    answer = json.dumps(
        {
            "id": "chatcmpl-bench",
            "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 200},
        }
    ).encode()
    translator = AnthropicToChat()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        translator.answer(200, "application/json", answer)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6, len(answer)


def request_us(rounds: int) -> tuple[float, int]:
    body = json.dumps(TURN).encode()
    samples = []
    for _ in range(rounds):
        translator = AnthropicToChat()
        t0 = time.perf_counter()
        translator.request("/v1/messages", body)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6, len(body)


def through_proxy(requests: int) -> dict[str, float]:
    from e2e.fakes import FakeProvider, ok_sse  # the e2e harness
    from e2e.proxy import Proxy, Session

    fake = FakeProvider("chat").start()
    fake.default = ok_sse("openai_chat", events=20)
    config = f"""\
apps:
  claude:
    queue: [chat]
    providers:
      chat: {{base_url: "{fake.url}/v1", format: openai_chat, api_key: sk-bench-0123456789}}
  codex:
    queue: [chat]
    providers:
      chat: {{base_url: "{fake.url}/v1", format: openai_chat, api_key: sk-bench-0123456789}}
"""
    cases = {
        "translated": (
            "https://api.anthropic.com",
            "/v1/messages",
            TURN,
            {"x-api-key": "k", "anthropic-version": "2023-06-01"},
        ),
        "untranslated": (
            "https://api.openai.com",
            "/v1/chat/completions",
            {
                "model": "m",
                "stream": True,
                "messages": [{"role": "user", "content": "Explain this repository. " * 24}],
            },
            {"authorization": "Bearer k"},
        ),
    }
    ttfe: dict[str, list[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as tmp:
        proxy = Proxy(Path(tmp), config, state=Path(tmp) / "state.db").start()
        sessions = {name: Session(proxy, origin) for name, (origin, *_rest) in cases.items()}
        try:
            for i in range(requests + 5):
                for name, (origin, path, body, headers) in cases.items():
                    reply = sessions[name].request(
                        "POST", origin + path, json=body, headers=headers
                    )
                    if reply.status != 200 or reply.first_byte is None:
                        raise SystemExit(f"{name}: {reply!r}")
                    if i >= 5:  # warm-up: connections, TLS, first imports
                        ttfe[name].append((reply.first_byte - reply.started) * 1000)
        finally:
            for session in sessions.values():
                session.close()
            proxy.stop()
            fake.stop()
    return {name: statistics.median(values) for name, values in ttfe.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--no-proxy", action="store_true", help="the in-process part only")
    args = parser.parse_args()
    rounds = 3 if args.quick else 30
    events = chat_events(50 if args.quick else 500)
    to_anthropic = per_event_us(AnthropicToChat, events, rounds)
    to_responses = per_event_us(ResponsesToChat, events, rounds)
    answer, answer_size = answer_us(rounds * 10)
    request, request_size = request_us(rounds * 10)
    print(f"stream, Chat → Anthropic      {to_anthropic:8.1f} µs per event")
    print(f"stream, Chat → Responses      {to_responses:8.1f} µs per event")
    print(f"JSON answer ({answer_size} B) → Anthropic {answer:8.1f} µs")
    print(f"request ({request_size} B) Anthropic → Chat {request:8.1f} µs")
    if not args.no_proxy:
        ttfe = through_proxy(5 if args.quick else 40)
        for name, ms in ttfe.items():
            print(f"time to first event, {name:12s} {ms:8.2f} ms (median, through mitmdump)")
        print(f"translation adds              {ttfe['translated'] - ttfe['untranslated']:8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
