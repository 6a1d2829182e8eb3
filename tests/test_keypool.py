"""Key pools: spreading conversations, keeping a conversation's key, cooling one key alone,
masked states, and the pool's parsing."""

from __future__ import annotations

import pytest
from conftest import FakeClock

from ccswitch_addon.core.config import ConfigError, parse_config
from ccswitch_addon.core.keypool import KeyPool, KeyPools

KEYS = ("sk-one-1111111111", "sk-two-2222222222", "sk-three-33333333")


def test_new_conversations_spread_over_every_key(clock: FakeClock) -> None:
    pool = KeyPool(KEYS, clock)
    picks = [pool.pick(f"c{n}") for n in range(3)]
    assert set(picks) == {0, 1, 2}  # three conversations already use every key
    assert pool.pick("c0") == picks[0]  # a conversation keeps its key
    assert [s["conversations"] for s in pool.states()] == [1, 1, 1]


def test_a_refused_key_cools_alone_and_its_conversation_moves(clock: FakeClock) -> None:
    pool = KeyPool(KEYS, clock)
    first = pool.pick("c1")
    assert first is not None
    pool.refused(first, clock.now + 60, "429: rate limited")
    again = pool.pick("c1", avoid=[first])
    assert again is not None
    assert again != first
    assert pool.pick("c1") == again
    states = pool.states()
    assert states[first]["state"] == "cooldown"
    assert states[first]["cooldown_reason"] == "429: rate limited"
    clock.advance(61)
    assert pool.states()[first]["state"] == "ready"


def test_no_key_left(clock: FakeClock) -> None:
    pool = KeyPool(KEYS[:2], clock)
    pool.refused(0, clock.now + 10, "401")
    pool.refused(1, clock.now + 10, "401")
    assert pool.pick("c1") is None
    assert pool.pick(None) is None


def test_requests_without_a_conversation_take_turns(clock: FakeClock) -> None:
    pool = KeyPool(KEYS, clock)
    assert {pool.pick(None) for _ in range(3)} == {0, 1, 2}


def test_states_are_masked(clock: FakeClock) -> None:
    shown = repr(KeyPool(KEYS, clock).states())
    assert "sk-o…1111" in shown
    assert all(key not in shown for key in KEYS)


POOL = """\
apps:
  claude:
    queue: [relay]
    providers:
      relay:
        base_url: https://relay.example
        api_keys: {keys}
"""


def test_pool_parsing_and_reload_keeps_cooldowns(clock: FakeClock) -> None:
    env = {"K1": KEYS[0], "K2": KEYS[1], "K3": KEYS[2]}
    config = parse_config(POOL.format(keys='["${K1}", "${K2}"]'), "p.yaml", env)
    relay = config.apps["claude"].providers["relay"]
    assert relay.api_keys == KEYS[:2]
    assert relay.api_key == KEYS[0]
    assert KEYS[0] not in repr(relay)
    pools = KeyPools(clock)
    pools.reload(config)
    pool = pools.get("claude", "relay")
    assert pool is not None
    pool.refused(1, clock.now + 100, "429")
    bigger = parse_config(POOL.format(keys='["${K1}", "${K2}", "${K3}"]'), "p.yaml", env)
    pools.reload(bigger)
    new = pools.get("claude", "relay")
    assert new is not None
    assert [s["state"] for s in new.states()] == [
        "ready",
        "cooldown",
        "ready",
    ]
    single = parse_config(POOL.format(keys='["${K1}"]'), "p.yaml", env)
    assert single.apps["claude"].providers["relay"].api_keys == ()  # one key: no pool


@pytest.mark.parametrize(
    ("keys", "extra", "expected"),
    [
        ("[]", "", "p.yaml:7: apps.claude.providers.relay.api_keys: the key pool is empty"),
        ('["${K1}", "${K1}"]', "", "the pool names one key twice"),
        ('["${K1}"]', "        api_key: ${K1}\n", "give api_key or api_keys"),
    ],
)
def test_pool_errors(keys: str, extra: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_config(POOL.format(keys=keys) + extra, "p.yaml", {"K1": KEYS[0]})


def test_an_unset_pool_key_disables_the_provider() -> None:
    config = parse_config(POOL.format(keys='["${K1}", "${NOPE}"]'), "p.yaml", {"K1": KEYS[0]})
    relay = config.apps["claude"].providers["relay"]
    assert relay.disabled is not None
    assert "NOPE" in relay.disabled
