"""Error rules and reset hints: parsing with FILE:LINE errors, matching, cooldowns, durations."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ccswitch_addon.core.config import ConfigError, parse_config
from ccswitch_addon.core.outcome import Effect
from ccswitch_addon.core.rules import (
    Action,
    Rule,
    apply_rules,
    classify_response,
    parse_duration,
    reset_hint,
)

NOW = 1_700_000_000.0
HOUR = 3600.0

RULES = """\
apps:
  claude:
    queue: [a, b]
    rules:
      - status: 429
        action: failover
      - status: [402, 403]
        cooldown: 3600
      - status: "500-599"
        body: overloaded
        action: neutral
      - headers: {X-Should-Retry: "^false$", X-Request-Id: true}
        action: return
    providers:
      a:
        base_url: https://a.example
        auth: passthrough
        rules:
          - status: 429
            body: usage limit
            cooldown: 60
          - status: 500
            action: return
      b: {base_url: "https://b.example", auth: passthrough}
"""


class Body:
    """A response body that counts how often it was read."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.text


def iso(epoch: float) -> str:
    """RFC 3339 as Anthropic sends it: ``2023-11-14T22:13:20Z``."""
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def rule(
    *statuses: tuple[int, int],
    body: str | None = None,
    headers: tuple[tuple[str, str | None], ...] = (),
    action: Action = Action.FAILOVER,
    cooldown: float = 0.0,
    where: str = "p.yaml:5",
) -> Rule:
    return Rule(
        statuses,
        re.compile(body) if body is not None else None,
        tuple((name, re.compile(p) if p is not None else None) for name, p in headers),
        action,
        cooldown,
        where,
    )


# --- parsing --------------------------------------------------------------------------------


def test_app_rules_parse_in_order_with_their_lines() -> None:
    app = parse_config(RULES, "p.yaml", env={}).apps["claude"]
    failover, cooldown, neutral, returned = app.rules
    assert failover.statuses == ((429, 429),)
    assert failover.action is Action.FAILOVER
    assert failover.body is None
    assert failover.headers == ()
    assert failover.where == "p.yaml:5"
    assert cooldown.statuses == ((402, 402), (403, 403))
    assert cooldown.action is Action.COOLDOWN
    assert cooldown.cooldown_seconds == 3600
    assert cooldown.where == "p.yaml:7"
    assert neutral.statuses == ((500, 599),)
    assert neutral.body is not None
    assert neutral.body.pattern == "overloaded"
    assert neutral.action is Action.NEUTRAL
    assert neutral.where == "p.yaml:9"
    assert returned.statuses == ()
    assert returned.action is Action.RETURN
    assert [(name, p.pattern if p else None) for name, p in returned.headers] == [
        ("x-should-retry", "^false$"),  # header names are matched lower-cased
        ("x-request-id", None),
    ]
    assert returned.where == "p.yaml:12"


def test_provider_rules_parse_and_come_before_the_apps() -> None:
    app = parse_config(RULES, "p.yaml", env={}).apps["claude"]
    a, b = app.providers["a"], app.providers["b"]
    usage, five_hundred = a.rules
    assert usage.statuses == ((429, 429),)
    assert usage.body is not None
    assert usage.body.pattern == "usage limit"
    assert usage.action is Action.COOLDOWN
    assert usage.cooldown_seconds == 60
    assert usage.where == "p.yaml:19"
    assert five_hundred.action is Action.RETURN
    assert five_hundred.where == "p.yaml:22"
    assert b.rules == ()
    assert app.rules_for(a) == (*a.rules, *app.rules)
    assert app.rules_for(b) == app.rules


def test_describe_names_what_a_rule_matches_and_does() -> None:
    app = parse_config(RULES, "p.yaml", env={}).apps["claude"]
    assert app.rules[1].describe() == "status 402,403 → cooldown 3600s"
    assert app.rules[2].describe() == "status 500-599 and body /overloaded/ → neutral"


def app_with_rules(rules: str) -> str:
    """A config whose app rules start on line 5."""
    return (
        "apps:\n  claude:\n    queue: [a]\n    rules:\n"
        + rules
        + '    providers:\n      a: {base_url: "https://x.example", auth: passthrough}\n'
    )


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "p.yaml", env={})
    return str(info.value)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            "      - status: 500\n        body: '(unclosed'\n        action: failover\n",
            "p.yaml:6: apps.claude.rules[0].body: bad regular expression '(unclosed': "
            "missing ), unterminated subpattern at position 0",
        ),
        (
            "      - status: 500\n        headers: {x-a: '['}\n        action: failover\n",
            "p.yaml:6: apps.claude.rules[0].headers.x-a: bad regular expression '[': "
            "unterminated character set at position 0",
        ),
        (
            "      - status: 500\n        action: explode\n",
            "p.yaml:6: apps.claude.rules[0].action: unknown action 'explode'; "
            "one of: failover, return, neutral, cooldown",
        ),
        (
            "      - status: 500\n        action: cooldown\n",
            "p.yaml:6: apps.claude.rules[0].action: action cooldown needs cooldown: SECONDS",
        ),
        (
            "      - action: failover\n",
            "p.yaml:5: apps.claude.rules[0]: a rule needs at least one of status, body, "
            "headers to match",
        ),
        (
            "      - status: 500\n",
            "p.yaml:5: apps.claude.rules[0]: a rule needs an action (failover, return, "
            "neutral) or cooldown: SECONDS",
        ),
        (
            "      - {status: 429, action: return}\n      - status: 99\n        action: return\n",
            "p.yaml:6: apps.claude.rules[1].status: expected a status like 429 or a range "
            "like 500-599, got 99",
        ),
        (
            "      - status: [429, 5xx]\n        action: return\n",
            "p.yaml:5: apps.claude.rules[0].status[1]: expected a status like 429 or a range "
            "like 500-599, got '5xx'",
        ),
        (
            "      - status: '599-500'\n        action: return\n",
            "p.yaml:5: apps.claude.rules[0].status: expected a status like 429 or a range "
            "like 500-599, got '599-500'",
        ),
        (
            "      - status: true\n        action: return\n",
            "p.yaml:5: apps.claude.rules[0].status: expected a status like 429 or a range "
            "like 500-599, got True",
        ),
        (
            "      - status: 500\n        actoin: failover\n",
            "p.yaml:6: apps.claude.rules[0].actoin: unknown key (did you mean 'action'?); "
            "allowed: status, body, headers, action, cooldown",
        ),
        (
            "      - status: 500\n        cooldown: -1\n",
            "p.yaml:6: apps.claude.rules[0].cooldown: -1 is out of range: must be from 0 to 604800",
        ),
        (
            "      - status: []\n        action: return\n",
            "p.yaml:5: apps.claude.rules[0].status: the list is empty; give a status like 429 "
            "or a range like 500-599",
        ),
        (
            "      - headers: {}\n        action: return\n",
            "p.yaml:5: apps.claude.rules[0].headers: the mapping is empty; give name: regex "
            "or true",
        ),
        (
            "      status: 500\n",
            "p.yaml:4: apps.claude.rules: expected a list, got a mapping",
        ),
    ],
    ids=[
        "bad-body-regex",
        "bad-header-regex",
        "unknown-action",
        "cooldown-without-seconds",
        "nothing-to-match",
        "no-action",
        "status-99",
        "status-5xx",
        "reversed-range",
        "status-bool",
        "unknown-key",
        "negative-cooldown",
        "empty-status-list",
        "empty-headers",
        "not-a-list",
    ],
)
def test_rule_mistakes_name_file_line_and_key(rules: str, message: str) -> None:
    assert error_of(app_with_rules(rules)) == message


def test_a_mistake_in_a_provider_rule_names_the_providers_key_path() -> None:
    text = RULES.replace("            body: usage limit\n", "            body: '+'\n")
    assert error_of(text).startswith(
        "p.yaml:20: apps.claude.providers.a.rules[0].body: bad regular expression '+'"
    )


@pytest.mark.parametrize(
    ("status", "statuses"),
    [
        ("429", ((429, 429),)),
        ("[402, 403]", ((402, 402), (403, 403))),
        ('"500-599"', ((500, 599),)),
        ('[400, "500 - 503"]', ((400, 400), (500, 503))),
        ("100", ((100, 100),)),
        ("599", ((599, 599),)),
    ],
)
def test_status_forms(status: str, statuses: tuple[tuple[int, int], ...]) -> None:
    text = app_with_rules(f"      - status: {status}\n        action: return\n")
    assert parse_config(text, "p.yaml", env={}).apps["claude"].rules[0].statuses == statuses


@pytest.mark.parametrize("status", ["600", "'0-599'", "'500-600'", "4.5e2", "'429 '"])
def test_statuses_outside_100_to_599_are_refused(status: str) -> None:
    text = app_with_rules(f"      - status: {status}\n        action: return\n")
    assert "expected a status like 429 or a range like 500-599" in error_of(text)


def test_cooldown_alone_makes_a_cooldown_rule() -> None:
    text = app_with_rules("      - status: 402\n        cooldown: 90.5\n")
    (only,) = parse_config(text, "p.yaml", env={}).apps["claude"].rules
    assert only.action is Action.COOLDOWN
    assert only.cooldown_seconds == 90.5


def test_action_cooldown_with_seconds() -> None:
    text = app_with_rules("      - {status: 402, action: cooldown, cooldown: 30}\n")
    (only,) = parse_config(text, "p.yaml", env={}).apps["claude"].rules
    assert (only.action, only.cooldown_seconds) == (Action.COOLDOWN, 30)


# --- matching and actions ----------------------------------------------------------------------


def test_return_gives_the_client_the_response_and_leaves_the_breaker_alone() -> None:
    outcome = apply_rules((rule((400, 400), action=Action.RETURN),), 400, {}, Body(), NOW, HOUR)
    assert outcome is not None
    assert (outcome.effect, outcome.retry) == (Effect.NEUTRAL, False)
    assert outcome.reason == "400 (rule p.yaml:5)"
    assert outcome.cooldown_until is None


def test_neutral_tries_the_next_provider_without_counting() -> None:
    outcome = apply_rules((rule((500, 599), action=Action.NEUTRAL),), 502, {}, Body(), NOW, HOUR)
    assert outcome is not None
    assert (outcome.effect, outcome.retry) == (Effect.NEUTRAL, True)
    assert outcome.cooldown_until is None


def test_failover_turns_a_client_fault_into_a_failure() -> None:
    overloaded = rule((400, 400), body="overloaded")
    outcome = apply_rules((overloaded,), 400, {}, Body('{"error": "overloaded"}'), NOW, HOUR)
    assert outcome is not None
    assert (outcome.effect, outcome.retry) == (Effect.FAILURE, True)
    assert outcome.reason == "400 (rule p.yaml:5)"


def test_a_rule_without_a_place_reports_the_bare_status() -> None:
    outcome = apply_rules((rule((400, 400), where=""),), 400, {}, Body(), NOW, HOUR)
    assert outcome is not None
    assert outcome.reason == "400"


def test_the_first_matching_rule_wins() -> None:
    returned = rule((500, 500), action=Action.RETURN, where="p.yaml:5")
    failover = rule((500, 599), action=Action.FAILOVER, where="p.yaml:7")
    first = apply_rules((returned, failover), 500, {}, Body(), NOW, HOUR)
    assert first is not None
    assert first.effect is Effect.NEUTRAL
    assert first.reason == "500 (rule p.yaml:5)"
    second = apply_rules((failover, returned), 500, {}, Body(), NOW, HOUR)
    assert second is not None
    assert second.effect is Effect.FAILURE
    assert second.reason == "500 (rule p.yaml:7)"
    # A status only the later rule covers skips the first.
    other = apply_rules((returned, failover), 503, {}, Body(), NOW, HOUR)
    assert other is not None
    assert other.reason == "503 (rule p.yaml:7)"


def test_no_match_leaves_it_to_the_built_in_table() -> None:
    rules = (rule((402, 402), action=Action.RETURN), rule((500, 599), body="overloaded"))
    assert apply_rules(rules, 400, {}, Body("overloaded"), NOW, HOUR) is None
    assert apply_rules(rules, 503, {}, Body("busy"), NOW, HOUR) is None
    table = classify_response(503, {}, Body("busy"), NOW, rules)
    assert (table.effect, table.retry, table.reason) == (Effect.FAILURE, True, "503")
    client_fault = classify_response(400, {}, Body("overloaded"), NOW, rules)
    assert (client_fault.effect, client_fault.retry) == (Effect.NEUTRAL, False)


def test_provider_rules_are_tried_before_the_apps() -> None:
    app = parse_config(RULES, "p.yaml", env={}).apps["claude"]
    a, b = app.providers["a"], app.providers["b"]
    # a: its own "500 → return" comes before the app's "500-599 with overloaded → neutral".
    on_a = classify_response(500, {}, Body("overloaded"), NOW, app.rules_for(a))
    assert (on_a.effect, on_a.retry, on_a.reason) == (Effect.NEUTRAL, False, "500 (rule p.yaml:22)")
    on_b = classify_response(500, {}, Body("overloaded"), NOW, app.rules_for(b))
    assert (on_b.effect, on_b.retry, on_b.reason) == (Effect.NEUTRAL, True, "500 (rule p.yaml:9)")
    # a's usage-limit cooldown only for a; b falls through to the app's 429 → failover.
    limit = Body('{"error": "usage limit reached"}')
    cooled = classify_response(429, {}, limit, NOW, app.rules_for(a))
    assert cooled.cooldown_until == NOW + 60
    assert cooled.cooldown_reason == "rule p.yaml:19"
    failed = classify_response(429, {}, limit, NOW, app.rules_for(b))
    assert (failed.effect, failed.reason, failed.cooldown_until) == (
        Effect.FAILURE,
        "429 (rule p.yaml:5)",
        None,
    )


def test_headers_match_by_presence_and_by_regex() -> None:
    rules = (rule(headers=(("x-should-retry", "^false$"), ("x-request-id", None))),)
    both = {"x-should-retry": "false", "x-request-id": "req_1"}
    assert apply_rules(rules, 500, both, Body(), NOW, HOUR) is not None
    assert apply_rules(rules, 500, {**both, "x-should-retry": "falsey"}, Body(), NOW, HOUR) is None
    assert apply_rules(rules, 500, {"x-should-retry": "false"}, Body(), NOW, HOUR) is None
    assert apply_rules(rules, 500, {"x-request-id": "req_1"}, Body(), NOW, HOUR) is None


def test_all_conditions_of_a_rule_must_hold() -> None:
    rules = (rule((400, 400), body="overloaded", headers=(("x-a", None),)),)
    assert apply_rules(rules, 400, {"x-a": "1"}, Body("overloaded"), NOW, HOUR) is not None
    assert apply_rules(rules, 400, {}, Body("overloaded"), NOW, HOUR) is None
    assert apply_rules(rules, 400, {"x-a": "1"}, Body("fine"), NOW, HOUR) is None
    assert apply_rules(rules, 401, {"x-a": "1"}, Body("overloaded"), NOW, HOUR) is None


def test_the_body_is_not_read_when_no_rule_looks_at_it() -> None:
    rules = (
        rule((402, 402), action=Action.RETURN),
        rule(headers=(("x-a", None),)),
        rule((500, 599), action=Action.NEUTRAL),
    )
    body = Body("overloaded")
    outcome = classify_response(503, {}, body, NOW, rules)
    assert outcome.effect is Effect.NEUTRAL
    assert body.calls == 0
    unmatched = classify_response(404, {}, body, NOW, rules)
    assert unmatched.effect is Effect.FAILURE
    assert body.calls == 0
    no_rules = classify_response(500, {}, body, NOW)
    assert no_rules.effect is Effect.FAILURE
    assert body.calls == 0


def test_the_body_is_read_for_a_rule_that_looks_at_it() -> None:
    body = Body("the server is overloaded")
    outcome = classify_response(400, {}, body, NOW, (rule((400, 400), body="overloaded"),))
    assert outcome.effect is Effect.FAILURE
    assert body.calls >= 1


def test_cooldown_rule_cools_for_its_seconds() -> None:
    outcome = apply_rules(
        (rule((402, 402), action=Action.COOLDOWN, cooldown=3600),), 402, {}, Body(), NOW, 6 * HOUR
    )
    assert outcome is not None
    assert (outcome.effect, outcome.retry) == (Effect.NEUTRAL, True)
    assert outcome.cooldown_until == NOW + 3600
    assert outcome.cooldown_reason == "rule p.yaml:5"


def test_cooldown_rule_is_capped_by_max_cooldown() -> None:
    outcome = apply_rules(
        (rule((402, 402), action=Action.COOLDOWN, cooldown=86400),), 402, {}, Body(), NOW, 600
    )
    assert outcome is not None
    assert outcome.cooldown_until == NOW + 600


def test_cooldown_rule_takes_the_reset_time_the_response_names() -> None:
    cooldown = (rule((429, 429), body="usage limit", action=Action.COOLDOWN, cooldown=3600),)
    headers = {"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-remaining-requests": "0"}
    outcome = apply_rules(cooldown, 429, headers, Body("usage limit"), NOW, 6 * HOUR)
    assert outcome is not None
    assert outcome.cooldown_until == NOW + 360
    gemini = Body(gemini_error("120s", message="usage limit"))
    from_body = apply_rules(cooldown, 429, {}, gemini, NOW, 6 * HOUR)
    assert from_body is not None
    assert from_body.cooldown_until == NOW + 120


# --- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("100ns", 1e-7),
        ("30", 30.0),
        ("2.5", 2.5),
        (" 17s ", 17.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    parsed = parse_duration(text)
    assert parsed is not None
    assert parsed == pytest.approx(seconds, rel=1e-9, abs=0)


@pytest.mark.parametrize(
    "text",
    ["", "  ", "soon", "6m0", "5m30", "1x", "m", "-1s", "-5", "s6m", "6 m", "nan", "inf", "1_000"],
)
def test_parse_duration_refuses_garbage(text: str) -> None:
    assert parse_duration(text) is None


# --- reset hints ----------------------------------------------------------------------------------


def gemini_error(delay: str, message: str = "quota exceeded") -> str:
    return json.dumps(
        {
            "error": {
                "code": 429,
                "message": message,
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
                ],
            }
        }
    )


def test_anthropic_the_exhausted_limit_binds() -> None:
    headers = {
        "anthropic-ratelimit-requests-reset": iso(NOW + 60),
        "anthropic-ratelimit-requests-remaining": "12",
        "anthropic-ratelimit-tokens-reset": iso(NOW + 600),
        "anthropic-ratelimit-tokens-remaining": "0",
    }
    assert reset_hint(headers, "", NOW, 6 * HOUR) == NOW + 600


def test_anthropic_several_exhausted_limits_wait_for_the_last() -> None:
    headers = {
        "anthropic-ratelimit-input-tokens-reset": iso(NOW + 30),
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": iso(NOW + 90),
        "anthropic-ratelimit-output-tokens-remaining": " 0 ",
        "anthropic-ratelimit-requests-reset": iso(NOW + 900),
        "anthropic-ratelimit-requests-remaining": "40",
    }
    assert reset_hint(headers, "", NOW, 6 * HOUR) == NOW + 90


def test_anthropic_without_remaining_the_earliest_reset_is_taken() -> None:
    headers = {
        "anthropic-ratelimit-requests-reset": iso(NOW + 600),
        "anthropic-ratelimit-tokens-reset": iso(NOW + 45),
        "anthropic-ratelimit-output-tokens-reset": iso(NOW + 300),
    }
    assert reset_hint(headers, "", NOW, 6 * HOUR) == NOW + 45


def test_anthropic_offsets_other_than_z_are_understood() -> None:
    later = datetime.fromtimestamp(NOW + 120, timezone(timedelta(hours=2))).isoformat()
    assert later.endswith("+02:00")
    headers = {"anthropic-ratelimit-requests-reset": later}
    assert reset_hint(headers, "", NOW, 6 * HOUR) == NOW + 120


def test_openai_durations() -> None:
    headers = {
        "x-ratelimit-reset-requests": "6m0s",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-tokens": "20ms",
        "x-ratelimit-remaining-tokens": "1000",
    }
    assert reset_hint(headers, "", NOW, 6 * HOUR) == NOW + 360
    unknown = {"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "1.5s"}
    assert reset_hint(unknown, "", NOW, 6 * HOUR) == NOW + 1.5


def test_gemini_retry_delay_in_the_error_body() -> None:
    assert reset_hint({}, gemini_error("37s"), NOW, 6 * HOUR) == NOW + 37
    assert reset_hint({}, gemini_error("1.25s"), NOW, 6 * HOUR) == NOW + 1.25


@pytest.mark.parametrize(
    "body",
    [
        "",
        "retryDelay but not JSON",
        json.dumps(["retryDelay"]),
        json.dumps({"error": "retryDelay"}),
        json.dumps({"error": {"details": "retryDelay"}}),
        json.dumps({"error": {"details": [{"@type": "x.QuotaFailure", "retryDelay": "5s"}]}}),
        json.dumps({"error": {"details": [{"@type": "x.RetryInfo", "retryDelay": 5}]}}),
        gemini_error("soon"),
    ],
    ids=[
        "empty",
        "not-json",
        "a-list",
        "error-text",
        "details-text",
        "not-retry-info",
        "delay-number",
        "delay-garbage",
    ],
)
def test_bodies_without_a_usable_retry_delay(body: str) -> None:
    assert reset_hint({}, body, NOW, 6 * HOUR) is None


def test_past_resets_are_ignored() -> None:
    past = {
        "anthropic-ratelimit-requests-reset": iso(NOW - 10),
        "anthropic-ratelimit-requests-remaining": "0",
    }
    assert reset_hint(past, "", NOW, 6 * HOUR) is None
    assert reset_hint({"anthropic-ratelimit-tokens-reset": iso(NOW)}, "", NOW, 6 * HOUR) is None
    assert reset_hint({"x-ratelimit-reset-requests": "0s"}, "", NOW, 6 * HOUR) is None
    assert reset_hint({}, gemini_error("0s"), NOW, 6 * HOUR) is None


def test_unreadable_reset_headers_are_ignored() -> None:
    headers = {
        "anthropic-ratelimit-requests-reset": "tomorrow",
        "anthropic-ratelimit-requests-remaining": "0",
        "x-ratelimit-reset-tokens": "a while",
        "x-ratelimit-remaining-tokens": "0",
    }
    assert reset_hint(headers, "", NOW, 6 * HOUR) is None
    assert reset_hint({}, "", NOW, 6 * HOUR) is None


def test_a_reset_far_away_is_capped_by_max_cooldown() -> None:
    headers = {"anthropic-ratelimit-tokens-reset": iso(NOW + 10 * 86400)}
    assert reset_hint(headers, "", NOW, 6 * HOUR) == NOW + 6 * HOUR
    assert reset_hint(headers, "", NOW, 600) == NOW + 600
    assert reset_hint({}, gemini_error("86400s"), NOW, 900) == NOW + 900


def test_an_exhausted_limit_and_a_retry_delay_wait_for_the_later() -> None:
    headers = {"x-ratelimit-reset-requests": "10s", "x-ratelimit-remaining-requests": "0"}
    assert reset_hint(headers, gemini_error("40s"), NOW, 6 * HOUR) == NOW + 40


# --- classification with hints --------------------------------------------------------------------


def test_a_429_without_retry_after_cools_down_until_the_quota_resets() -> None:
    headers = {"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-remaining-requests": "0"}
    outcome = classify_response(429, headers, Body(), NOW)
    assert (outcome.effect, outcome.retry, outcome.reason) == (Effect.FAILURE, True, "429")
    assert outcome.cooldown_until == NOW + 360
    assert outcome.cooldown_reason == "quota reset"


def test_a_429_quota_cooldown_is_capped_by_max_cooldown() -> None:
    body = Body(gemini_error("86400s"))
    outcome = classify_response(429, {}, body, NOW, max_cooldown=1800)
    assert outcome.cooldown_until == NOW + 1800
    assert outcome.cooldown_reason == "quota reset"
    default = classify_response(429, {}, body, NOW)
    assert default.cooldown_until == NOW + 6 * HOUR


def test_retry_after_wins_over_reset_hints() -> None:
    headers = {
        "retry-after": "120",
        "x-ratelimit-reset-requests": "6m0s",
        "x-ratelimit-remaining-requests": "0",
    }
    outcome = classify_response(429, headers, Body(gemini_error("900s")), NOW)
    assert outcome.cooldown_until == NOW + 120
    assert outcome.cooldown_reason == "Retry-After"


def test_hints_only_count_for_a_429() -> None:
    headers = {"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-remaining-requests": "0"}
    for status in (500, 503, 529, 403):
        outcome = classify_response(status, headers, Body(gemini_error("60s")), NOW)
        assert outcome.cooldown_until is None, status
        assert outcome.cooldown_reason is None, status


def test_a_429_without_hints_has_no_cooldown() -> None:
    outcome = classify_response(429, {}, Body('{"error": "slow down"}'), NOW)
    assert (outcome.effect, outcome.retry) == (Effect.FAILURE, True)
    assert outcome.cooldown_until is None
    assert outcome.cooldown_reason is None


def test_a_503_with_retry_after_is_labelled_retry_after() -> None:
    outcome = classify_response(503, {"retry-after": "30"}, Body(), NOW)
    assert outcome.cooldown_until == NOW + 30
    assert outcome.cooldown_reason == "Retry-After"


def test_cooldown_seconds_next_to_another_action_is_refused() -> None:
    text = """\
apps:
  claude:
    queue: [a]
    rules:
      - status: 500
        action: failover
        cooldown: 60
    providers:
      a: {base_url: "https://a.example", auth: passthrough}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "p.yaml", env={})
    assert str(caught.value) == (
        "p.yaml:7: apps.claude.rules[0].cooldown: cooldown goes with action cooldown, "
        "not failover; drop one of them"
    )
