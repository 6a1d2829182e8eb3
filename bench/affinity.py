"""A simulated day of Claude Code conversations: what affinity saves on prompt caching.

    python bench/affinity.py [--quick] [--conversations 50] [--turns 30] [--seed 1]

An in-process simulation of the router (the real Router, breakers and affinity, on a fake
clock; no proxy, no sockets): conversations of growing context are served one request at a
time in time order; the primary fails (529) for 2 minutes twice; a fake that models
per-provider prompt caching (a prefix written at one provider is a hit there for 5 minutes
after its last use, as Anthropic's ephemeral cache) prices every request: fresh input ×1,
cache write ×1.25, cache read ×0.1, output. Primary and backup serve the same model at the
same price (a relay), so every difference in cost is the cache. Reported per mode (affinity
off, ``failback: idle``, ``failback: at_once``) against the ideal (the same day without
failures): the cache-hit ratio (input tokens read from cache / all input tokens), the cost,
and how often a conversation changed provider without a failure forcing it while its cache
was warm.

``--cpu`` adds the CPU cost of routes and affinity per request: ``select_providers`` with a
request's facts (the three routes above, none of which takes it, so every condition is
asked; a conversation header) and the served record, minus the same selection without them,
in µs (best of 5 slices), over a Claude-Code-shaped 80 KB body.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass, field

from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.facts import Facts
from ccswitch_addon.core.outcome import classify_status
from ccswitch_addon.core.router import Router
from ccswitch_addon.wire.api import Api

PRICE_IN = 3.0 / 1e6  # $ per input token (Sonnet-class)
PRICE_OUT = 15.0 / 1e6
WRITE, READ = 1.25, 0.10
CACHE_TTL = 300.0
OUTAGE = 120.0
DAY = 8 * 3600.0

CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    affinity_seconds: {seconds}
    failback: {failback}
    breaker: {{failure_threshold: 3, success_threshold: 2, open_seconds: 30}}
    routes:
      - name: small
        when: {{model: "*haiku*"}}
        queue: [backup, primary]
      - name: subagents
        when: {{subagent: true}}
        queue: [backup, primary]
      - name: long
        when: {{tokens_over: 150000}}
        queue: [primary]
    providers:
      primary: {{base_url: "https://primary.example", auth: passthrough}}
      backup: {{base_url: "https://backup.example", auth: passthrough}}
"""
MODES = {
    "ideal": ("300", "idle", False),
    "off": ("0", "idle", True),
    "idle": ("300", "idle", True),
    "at_once": ("300", "at_once", True),
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Turn:
    time: float
    conversation: str
    context: int  # input tokens of this request
    output: int


@dataclass
class Tally:
    input_tokens: int = 0
    read: int = 0
    written: int = 0
    cost: float = 0.0
    moves: int = 0  # provider changes of a conversation
    warm_moves: int = 0  # of those, not forced by a failure, leaving a warm cache behind
    failed_requests: int = 0
    cache: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    last: dict[str, str] = field(default_factory=dict)


def day(conversations: int, turns: int, seed: int) -> list[Turn]:
    """Claude-Code-like sizes: ~18k tokens of system and tools, ~2-6k more each turn
    (tool results), 200-1,500 output tokens, 15-90 s between turns, now and then a pause."""
    rng = random.Random(seed)
    out = []
    for n in range(conversations):
        t = rng.uniform(0, DAY - turns * 60)
        context = 18_000 + rng.randint(0, 4_000)
        for _ in range(turns):
            out.append(Turn(t, f"conv-{n:03d}", context, rng.randint(200, 1_500)))
            context += rng.randint(2_000, 6_000)
            t += rng.uniform(15, 90) if rng.random() > 0.08 else rng.uniform(360, 900)
    out.sort(key=lambda turn: turn.time)
    return out


def outages(seed: int, count: int) -> list[tuple[float, float]]:
    """``count`` outages of 2 minutes, one in each equal part of the day."""
    rng = random.Random(seed + 1)
    part = DAY / count
    starts = [part * n + rng.uniform(0.1, 0.9) * (part - OUTAGE) for n in range(count)]
    return [(start, start + OUTAGE) for start in starts]


def price(tally: Tally, pid: str, turn: Turn, now: float) -> None:
    """The fake provider's cache: the conversation's prefix at this provider, if warm."""
    cached, expires = tally.cache.get((pid, turn.conversation), (0, 0.0))
    read = min(cached, turn.context) if expires > now else 0
    written = turn.context - read
    tally.input_tokens += turn.context
    tally.read += read
    tally.written += written
    tally.cost += (read * READ + written * WRITE) * PRICE_IN + turn.output * PRICE_OUT
    tally.cache[(pid, turn.conversation)] = (turn.context + turn.output, now + CACHE_TTL)


def simulate(mode: str, turns: list[Turn], down: list[tuple[float, float]]) -> Tally:
    seconds, failback, failing = MODES[mode]
    random.seed(0)  # the breakers' jitter on a repeated trip: the same in every mode and run
    clock = Clock()
    router = Router(
        parse_config(CONFIG.format(seconds=seconds, failback=failback), "bench", env={}), clock
    )
    tally = Tally()
    for turn in turns:
        clock.now = turn.time
        headers = ((b"x-claude-code-session-id", turn.conversation.encode()),)
        body = b'{"model": "claude-sonnet-4-5", "messages": []}'
        facts = Facts(Api.ANTHROPIC, "/v1/messages", headers, body)
        selection = router.select_providers("claude", None, facts)
        forced = False
        for provider in selection.providers:
            pid = provider.id
            permit = router.acquire("claude", pid)
            outage = failing and pid == "primary" and any(a <= turn.time < b for a, b in down)
            router.record_result("claude", pid, classify_status(529 if outage else 200), permit)
            if outage:
                forced = True
                tally.failed_requests += 1
                continue
            before = tally.last.get(turn.conversation)
            if before is not None and before != pid:
                tally.moves += 1
                warm = tally.cache.get((before, turn.conversation), (0, 0.0))[1] > turn.time
                skipped = before not in [p.id for p in selection.providers]
                if warm and not forced and not skipped:
                    tally.warm_moves += 1
            tally.last[turn.conversation] = pid
            price(tally, pid, turn, turn.time)
            router.served("claude", selection.route, selection.conversation, pid)
            break
    return tally


def cpu(requests: int, subagent: bool) -> tuple[float, float]:
    """µs per request: (with facts: routes + affinity, without); ``subagent``: with the route
    that asks whether the request is a subagent's (a scan of the body's tail)."""
    text = CONFIG.format(seconds=300, failback="idle")
    if not subagent:
        text = text.replace("      - name: subagents\n        when: {subagent: true}\n"
                            "        queue: [backup, primary]\n", "")  # fmt: skip
        assert "subagent" not in text
    router = Router(parse_config(text, "bench", env={}))
    # Claude Code's order and rough sizes: model, messages (the growing part), system with
    # the billing line at its head, tools.
    # Text like code and prose: a run of one character would be a pathological case for the
    # byte searches (their skips rely on mismatches).
    billing = "x-anthropic-billing-header: cc_version=2.1.197.123; cc_entrypoint=sdk-cli;"
    words = 'the quick brown fox jumps over the lazy dog; def f(x): return x * 2 # "q" [1, 2] '
    body = json.dumps(
        {
            "model": "claude-opus-4-8",
            "messages": [{"role": "user", "content": (words * 500)[:40_000]}],
            "system": [
                {"type": "text", "text": billing},
                {"type": "text", "text": (words * 125)[:10_000]},
            ],
            "tools": [{"name": f"tool{n}", "description": (words * 25)[:2_000]} for n in range(10)],
            "metadata": {"user_id": "{}"},
        }
    ).encode()
    requests_made = [
        ((b"x-claude-code-session-id", f"conv-{n % 50}".encode()),) for n in range(requests)
    ]

    def with_facts() -> None:
        for headers in requests_made:
            facts = Facts(Api.ANTHROPIC, "/v1/messages", headers, body)
            selection = router.select_providers("claude", None, facts)
            router.served(
                "claude", selection.route, selection.conversation, selection.providers[0].id
            )

    def without() -> None:
        for _ in requests_made:
            router.select_providers("claude", None)

    best = []
    for run in (with_facts, without):
        run()  # warm up
        slices = []
        for _ in range(5):
            started = time.process_time()
            run()
            slices.append(time.process_time() - started)
        best.append(min(slices) / requests * 1e6)
    return best[0], best[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="10 conversations of 10 turns")
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--outages", type=int, default=2, help="2-minute primary outages")
    parser.add_argument("--cpu", action="store_true", help="also the CPU µs per request")
    args = parser.parse_args()
    conversations, turns = (10, 10) if args.quick else (args.conversations, args.turns)
    plan = day(conversations, turns, args.seed)
    down = outages(args.seed, args.outages)
    print(
        f"{conversations} conversations × {turns} turns, primary down "
        + ", ".join(f"{a / 3600:.2f}h–{b / 3600:.2f}h" for a, b in down[:4])
        + (f" and {len(down) - 4} more" if len(down) > 4 else "")
    )
    ideal = simulate("ideal", plan, down)
    print(f"{'mode':8} {'hit ratio':>9} {'cost $':>9} {'vs ideal':>8} {'moves':>6} "
          f"{'warm moves':>10} {'failed':>6}")  # fmt: skip
    for mode in MODES:
        t = ideal if mode == "ideal" else simulate(mode, plan, down)
        print(
            f"{mode:8} {t.read / t.input_tokens:9.3f} {t.cost:9.2f} "
            f"{(t.cost / ideal.cost - 1) * 100:+7.1f}% {t.moves:6d} {t.warm_moves:10d} "
            f"{t.failed_requests:6d}"
        )
    if args.cpu:
        for subagent in (False, True):
            on, off = cpu(2_000 if args.quick else 20_000, subagent)
            which = "model, tokens_over" + (", subagent" if subagent else "")
            print(
                f"routes ({which}) + affinity: {on - off:.1f} µs per request "
                f"(select with facts and record {on:.1f} − plain select {off:.1f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
