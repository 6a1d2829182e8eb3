"""What translation costs, per pair: the translator in process, and time to first event.

    python bench/translate.py [--quick] [--no-proxy]

1. In process (CPU, one core), for every pair (tool ← provider): µs per streamed event of the
   provider's stream (one event per network read, as providers send them) made the tool's,
   and µs per 1 KB of the provider's JSON answer made the tool's; plus µs per Claude Code
   turn of about 1 KB translated for a Chat provider.
2. Through a real mitmdump with the addon (the e2e harness: explicit proxy, TLS to the proxy,
   one kept-alive connection per case), one proxy per provider format: time to the first
   event of a streamed answer from the same fake, for each tool translated to it, against the
   tool whose own format the provider speaks (untranslated), interleaved.
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

from e2e.fakes import json_body, sse_script  # noqa: E402

from ccswitch_addon.wire.translate import SUPPORTED_PAIRS, Format, translator_for  # noqa: E402
from ccswitch_addon.wire.translate.translator import AnthropicToChat, Translator  # noqa: E402

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
PAIRS = sorted(SUPPORTED_PAIRS)


def provider_events(fmt: Format, n: int) -> list[bytes]:
    """A provider's stream of ``n`` text deltas, one network read per event."""
    script = sse_script(fmt.value, "m", deltas=n, input_tokens=10, output_tokens=n)
    return [*script.prelude, *script.deltas, *script.finale]


def make(tool: Format, provider: Format) -> Translator:
    translator = translator_for(tool, provider)
    assert translator is not None
    return translator


def per_event_us(tool: Format, provider: Format, events: list[bytes], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        machine = make(tool, provider).stream()
        t0 = time.perf_counter()
        for event in events:
            machine.feed(event)
        machine.close()
        if not machine.finished:
            raise SystemExit(f"{tool.value} ← {provider.value}: {machine.failure}")
        best = min(best, (time.perf_counter() - t0) / len(events))
    return best * 1e6


def answer_us_per_kb(tool: Format, provider: Format, rounds: int) -> float:
    answer = json.dumps(
        json_body(provider.value, "m", text="x" * 1000, input_tokens=10, output_tokens=200)
    ).encode()
    translator = make(tool, provider)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        translator.answer(200, "application/json", answer)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6 * 1024 / len(answer)


def request_us(rounds: int) -> tuple[float, int]:
    body = json.dumps(TURN).encode()
    samples = []
    for _ in range(rounds):
        translator = AnthropicToChat()
        t0 = time.perf_counter()
        translator.request("/v1/messages", body)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6, len(body)


# --- through the proxy ------------------------------------------------------------------------

_GEMINI_TURN = {
    "contents": [{"role": "user", "parts": [{"text": "Explain this repository. " * 24}]}]
}
# tool format → (origin, path, body, headers) of a streamed request as the tool sends it
_CLIENTS: dict[Format, tuple[str, str, dict[str, Any], dict[str, str]]] = {
    Format.ANTHROPIC: (
        "https://api.anthropic.com",
        "/v1/messages",
        TURN,
        {"x-api-key": "k", "anthropic-version": "2023-06-01"},
    ),
    Format.OPENAI_RESPONSES: (
        "https://api.openai.com",
        "/v1/responses",
        {"model": "m", "stream": True, "input": "Explain this repository. " * 24},
        {"authorization": "Bearer k"},
    ),
    Format.OPENAI_CHAT: (
        "https://api.openai.com",
        "/v1/chat/completions",
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Explain."}]},
        {"authorization": "Bearer k"},
    ),
    Format.GEMINI: (
        "https://generativelanguage.googleapis.com",
        "/v1beta/models/m:streamGenerateContent?alt=sse",
        _GEMINI_TURN,
        {"x-goog-api-key": "k"},
    ),
}
_APP_OF = {
    Format.ANTHROPIC: "claude",
    Format.OPENAI_RESPONSES: "codex",
    Format.OPENAI_CHAT: "codex",
    Format.GEMINI: "gemini",
}


def through_proxy(provider: Format, requests: int) -> dict[Format, float]:
    """Median ms to the first event per tool format, all served by one ``provider`` fake."""
    from e2e.fakes import FakeProvider, ok_sse  # the e2e harness
    from e2e.proxy import Proxy, Session

    tools = [Format(provider)] if provider is not Format.OPENAI_CHAT else []
    tools += [t for t, p in PAIRS if p is provider]
    fake = FakeProvider(provider.value).start()
    fake.default = ok_sse(provider.value, events=20)
    base = "/v1" if provider in (Format.OPENAI_CHAT, Format.OPENAI_RESPONSES) else ""
    entry = (
        f'{{base_url: "{fake.url}{base}", format: {provider.value}, api_key: sk-bench-0123456789}}'
    )
    apps = sorted(
        {_APP_OF[t] for t in tools} | ({"codex"} if provider is Format.OPENAI_CHAT else set())
    )
    if provider is Format.OPENAI_CHAT:
        tools.append(Format.OPENAI_CHAT)  # the untranslated case: Chat passed through
    config = "apps:\n" + "".join(
        f"  {app}:\n    queue: [p]\n    providers:\n      p: {entry}\n" for app in apps
    )
    ttfe: dict[Format, list[float]] = {t: [] for t in tools}
    with tempfile.TemporaryDirectory() as tmp:
        proxy = Proxy(Path(tmp), config, state=Path(tmp) / "state.db").start()
        sessions = {t: Session(proxy, _CLIENTS[t][0]) for t in tools}
        try:
            for i in range(requests + 3):
                for tool in tools:
                    origin, path, body, headers = _CLIENTS[tool]
                    reply = sessions[tool].request(
                        "POST", origin + path, json=body, headers=headers
                    )
                    if reply.status != 200 or reply.first_byte is None:
                        raise SystemExit(f"{tool.value} ← {provider.value}: {reply!r}")
                    if i >= 3:  # warm-up: connections, TLS, first imports
                        ttfe[tool].append((reply.first_byte - reply.started) * 1000)
        finally:
            for session in sessions.values():
                session.close()
            proxy.stop()
            fake.stop()
    return {tool: statistics.median(values) for tool, values in ttfe.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--no-proxy", action="store_true", help="the in-process part only")
    args = parser.parse_args()
    rounds = 3 if args.quick else 30
    deltas = 50 if args.quick else 500
    print(f"{'tool ← provider':34s} {'stream':>16s} {'1 KB answer':>14s}")
    for tool, provider in PAIRS:
        stream = per_event_us(tool, provider, provider_events(provider, deltas), rounds)
        answer = answer_us_per_kb(tool, provider, rounds * 10)
        label = f"{tool.value} ← {provider.value}"
        print(f"{label:34s} {stream:8.1f} µs/event {answer:8.1f} µs")
    request, request_size = request_us(rounds * 10)
    print(f"request ({request_size} B) anthropic → openai_chat {request:8.1f} µs")
    if not args.no_proxy:
        for provider in sorted({p for _, p in PAIRS}):
            ttfe = through_proxy(provider, 3 if args.quick else 30)
            own = Format.OPENAI_CHAT if provider is Format.OPENAI_CHAT else provider
            for tool, ms in ttfe.items():
                extra = "" if tool is own else f"  ({ms - ttfe[own]:+.2f} ms translated)"
                print(
                    f"time to first event, {tool.value} ← {provider.value}: "
                    f"{ms:6.2f} ms median{extra}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
