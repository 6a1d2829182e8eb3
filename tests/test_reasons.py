"""Honest reasons: skipped providers in queue order, and why there was no failover."""

from __future__ import annotations

from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.reasons import no_failover, order_of, skip_reason
from ccswitch_addon.core.record import Attempt, Finished

CONFIG = """\
apps:
  claude:
    queue: [official, chat, openrouter, deepseek]
    providers:
      official: {base_url: "https://api.anthropic.com", auth: passthrough}
      chat: {base_url: "https://chat.example", api_key: "${CHAT_API_KEY}"}
      openrouter: {base_url: "https://openrouter.ai/api", auth: passthrough}
      deepseek: {base_url: "https://api.deepseek.com", api_key: "${DEEPSEEK_API_KEY}"}
"""
APP = parse_config(CONFIG, "p.yaml", env={}).apps["claude"]
ORDER = APP.queue


def test_only_providers_before_the_one_that_served_are_named_in_order() -> None:
    done = Finished(
        "claude",
        "openrouter",
        [Attempt("official", 10, True, 529), Attempt("openrouter", 20, False, 200)],
        skipped=["chat: disabled (CHAT_API_KEY not set)", "deepseek: disabled (…)"],
        order=ORDER,
    )
    assert done.before_served() == [
        "official: 529",
        "chat: skipped, disabled (CHAT_API_KEY not set)",
    ]
    assert done.comment() == (
        "claude → openrouter (after official: 529, chat: skipped, disabled (CHAT_API_KEY not set))"
    )
    assert done.chain() == "official 529 → openrouter 200"


def test_a_skip_before_the_first_attempt_comes_first() -> None:
    done = Finished(
        "claude",
        "chat",
        [Attempt("chat", 5, False, 200)],
        skipped=["official: open until 14:02"],
        order=ORDER,
    )
    assert done.before_served() == ["official: skipped, open until 14:02"]


def test_disabled_providers_say_which_variable() -> None:
    assert skip_reason(APP.providers["deepseek"], None) == "disabled (DEEPSEEK_API_KEY not set)"


def test_no_failover_explains_each_backup_left_out() -> None:
    note = no_failover(
        APP,
        ["official"],
        ["chat: disabled (CHAT_API_KEY not set)", "openrouter: open until 14:02"],
    )
    assert note == (
        "no failover: chat disabled (CHAT_API_KEY not set), openrouter open until 14:02"
    )
    assert no_failover(APP, ["official", "openrouter"], ["chat: disabled (…)"]) is None


def test_no_failover_with_a_queue_of_one_or_failover_off() -> None:
    one = parse_config(
        CONFIG.replace("[official, chat, openrouter, deepseek]", "[official]"), "p.yaml", env={}
    ).apps["claude"]
    assert no_failover(one, ["official"], []) == (
        "no failover: claude has no other provider in its queue"
    )
    off = parse_config(
        CONFIG.replace("    queue:", "    failover: false\n    queue:"), "p.yaml", env={}
    ).apps["claude"]
    assert no_failover(off, ["official"], []) == "no failover: failover is off for claude"


def test_order_puts_a_manual_choice_first() -> None:
    assert order_of(APP, "official") == ORDER
    assert order_of(APP, "openrouter") == ("openrouter", "official", "chat", "deepseek")


def test_no_failover_names_max_attempts() -> None:
    one = parse_config(
        CONFIG.replace("    queue:", "    max_attempts: 1\n    queue:"), "p.yaml", env={}
    ).apps["claude"]
    assert no_failover(one, ["official"], ["openrouter: closed"]) == (
        "no failover: claude allows 1 attempt(s) (max_attempts)"
    )
