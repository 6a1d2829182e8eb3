"""Key pools on the provider side: a refused key is retried at once with another, the
provider fails only when no key can serve, a rule's `return` is kept, and a conversation
keeps its key; the route header on answers."""

from __future__ import annotations

from .conftest import MakeHarness
from .providers import ok_json, status

ONE = "sk-lit-one-0000000000"
TWO = "sk-lit-two-1111111111"
CONFIG = f"""\
apps:
  claude:
    queue: [primary, backup]
    breaker: {{failure_threshold: 3, success_threshold: 1, open_seconds: 60}}
    routes:
      - {{name: small, when: {{model: "*haiku*"}}, queue: [backup]}}
    providers:
      primary:
        base_url: "<primary>"
        api_keys: ["{ONE}", "{TWO}"]
        rules: [{{status: 403, action: return}}]
      backup: {{base_url: "<backup>", api_key: "${{K}}"}}
"""


def session(conversation: str) -> dict[str, str]:
    return {"x-claude-code-session-id": conversation}


async def test_every_key_refused_fails_the_provider_over(harness: MakeHarness) -> None:
    h = await harness(CONFIG, primary=status(429), backup=ok_json())
    answer = await h.send(body={"model": "m"}, headers=session("c1"))
    assert answer.status == 200
    assert answer.headers["x-ccswitch-provider"] == "backup"
    assert answer.headers["x-ccswitch-attempts"] == "2"  # the second key's 429 is the attempt
    assert sorted(s.headers["x-api-key"] for s in h.providers["primary"].seen) == [ONE, TWO]
    assert h.breaker("primary").consecutive_failures == 1  # one failure, not two
    pool = h.router.pools.get("claude", "primary")
    assert pool is not None
    assert [k["state"] for k in pool.states()] == ["cooldown", "cooldown"]
    refused = answer.exchange.records[0]
    assert refused.error is not None
    assert "refused (429): cooling down; sent again with another key" in refused.error
    assert ONE not in refused.error
    # while every key cools down the provider is skipped, its breaker untouched
    again = await h.send(body={"model": "m"}, headers=session("c1"))
    assert again.headers["x-ccswitch-attempts"] == "1"
    assert len(h.providers["primary"].seen) == 2
    assert "primary: every key cooling down" in h.finished[-1].skipped


async def test_a_rule_that_returns_is_not_retried_with_another_key(harness: MakeHarness) -> None:
    h = await harness(CONFIG, primary=status(403))
    answer = await h.send(body={"model": "m"}, headers=session("c1"))
    assert answer.status == 403
    assert len(h.providers["primary"].seen) == 1


async def test_a_conversation_keeps_its_key_and_two_use_both(harness: MakeHarness) -> None:
    h = await harness(CONFIG)
    for conversation in ("a", "b", "a", "b", "a"):
        assert (await h.send(body={"model": "m"}, headers=session(conversation))).status == 200
    keys = [s.headers["x-api-key"] for s in h.providers["primary"].seen]
    assert keys[0] == keys[2] == keys[4]
    assert keys[1] == keys[3]
    assert {keys[0], keys[1]} == {ONE, TWO}


async def test_the_route_header(harness: MakeHarness) -> None:
    h = await harness(CONFIG)
    small = await h.send(body={"model": "claude-haiku-4-5"})
    assert small.headers["x-ccswitch-route"] == "small"
    assert small.headers["x-ccswitch-provider"] == "backup"
    assert h.finished[-1].route == "small"
    plain = await h.send(body={"model": "m"})
    assert "x-ccswitch-route" not in plain.headers
