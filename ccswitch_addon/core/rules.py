"""Error rules from providers.yaml, and the reset hints providers send with their limits.

Rules run before the built-in classification: a 400 whose body says "overloaded" can fail
over, a 402 can cool a provider down for an hour. Hints say when a limit resets; the
provider is then skipped until that time instead of being retried into the wall.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from ccswitch_addon.core.outcome import Effect, Outcome, classify_status
from ccswitch_addon.core.yamlnodes import Node

__all__ = [
    "BODY_LIMIT",
    "Action",
    "Rule",
    "apply_rules",
    "classify_response",
    "parse_duration",
    "parse_rules",
    "reset_hint",
]

BODY_LIMIT = 64 * 1024  # rules look at the first 64 KiB of a body


class Action(enum.StrEnum):
    FAILOVER = "failover"  # try the next provider, count a failure
    RETURN = "return"  # give the client this response, breaker neutral
    NEUTRAL = "neutral"  # try the next provider, breaker neutral
    COOLDOWN = "cooldown"  # skip this provider for a while, try the next


@dataclass(frozen=True)
class Rule:
    statuses: tuple[tuple[int, int], ...] = ()  # inclusive ranges; empty matches any status
    body: re.Pattern[str] | None = None
    headers: tuple[tuple[str, re.Pattern[str] | None], ...] = ()  # None: present at all
    action: Action = Action.FAILOVER
    cooldown_seconds: float = 0.0
    where: str = ""  # FILE:LINE of the rule, for logs

    def describe(self) -> str:
        parts = []
        if self.statuses:
            parts.append(
                "status "
                + ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.statuses)
            )
        if self.body is not None:
            parts.append(f"body /{self.body.pattern}/")
        parts += [f"header {name}" + (f" /{p.pattern}/" if p else "") for name, p in self.headers]
        action = (
            f"cooldown {self.cooldown_seconds:g}s"
            if self.action is Action.COOLDOWN
            else self.action.value
        )
        return f"{' and '.join(parts)} → {action}"

    def matches(self, status: int, headers: Mapping[str, str], body: Callable[[], str]) -> bool:
        """Status and headers first: the body is read only when they already match."""
        if self.statuses and not any(lo <= status <= hi for lo, hi in self.statuses):
            return False
        for name, pattern in self.headers:
            value = headers.get(name)
            if value is None or (pattern is not None and not pattern.search(value)):
                return False
        return self.body is None or bool(self.body.search(body()))


def apply_rules(
    rules: tuple[Rule, ...],
    status: int,
    headers: Mapping[str, str],
    body: Callable[[], str],
    now: float,
    max_cooldown: float,
) -> Outcome | None:
    """The outcome the first matching rule decides, or None to use the built-in table."""
    body = functools.cache(body)  # read and decoded at most once, however many rules look
    for rule in rules:
        if not rule.matches(status, headers, body):
            continue
        reason = f"{status} (rule {rule.where})" if rule.where else str(status)
        if rule.action is Action.RETURN:
            return Outcome(Effect.NEUTRAL, retry=False, reason=reason)
        if rule.action is Action.NEUTRAL:
            return Outcome(Effect.NEUTRAL, retry=True, reason=reason)
        if rule.action is Action.COOLDOWN:
            hinted = reset_hint(headers, body(), now, max_cooldown)
            until = hinted if hinted is not None else now + min(rule.cooldown_seconds, max_cooldown)
            return Outcome(
                Effect.NEUTRAL,
                retry=True,
                reason=reason,
                cooldown_until=until,
                cooldown_reason=f"rule {rule.where}".strip(),
            )
        return Outcome(Effect.FAILURE, retry=True, reason=reason)
    return None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
# A bare number of seconds; float() alone would also take "nan", "inf", "1_000" or "١٢".
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float | None:
    """Go-style durations as OpenAI sends them (``6m0s``, ``20ms``, ``1h2m3.5s``), in seconds."""
    text = text.strip()
    if not text:
        return None
    position, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text):
        return float(text) if _SECONDS.fullmatch(text) else None
    return total


def _rfc3339(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


_ANTHROPIC = ("requests", "tokens", "input-tokens", "output-tokens")
_OPENAI = ("requests", "tokens")


def reset_hint(
    headers: Mapping[str, str], body: str, now: float, max_cooldown: float
) -> float | None:
    """When the provider says its exhausted limit resets (epoch seconds, capped), if it does.

    A limit whose ``-remaining`` header says 0 is the one that binds; without that
    information the earliest announced reset is taken, so the provider is tried again soon.
    """
    exhausted: list[float] = []
    announced: list[float] = []
    for kind in _ANTHROPIC:
        value = headers.get(f"anthropic-ratelimit-{kind}-reset")
        when = _rfc3339(value) if value else None
        if when is not None:
            announced.append(when)
            if headers.get(f"anthropic-ratelimit-{kind}-remaining", "").strip() == "0":
                exhausted.append(when)
    for kind in _OPENAI:
        value = headers.get(f"x-ratelimit-reset-{kind}")
        delay = parse_duration(value) if value else None
        if delay is not None:
            announced.append(now + delay)
            if headers.get(f"x-ratelimit-remaining-{kind}", "").strip() == "0":
                exhausted.append(now + delay)
    delay = _gemini_retry_delay(body)
    if delay is not None:
        exhausted.append(now + delay)
    when = max(exhausted) if exhausted else min(announced) if announced else None
    if when is None or when <= now:
        return None
    return min(when, now + max_cooldown)


def _gemini_retry_delay(body: str) -> float | None:
    if "retryDelay" not in body:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # a provider's body nested past the limit too
        return None
    error = document.get("error") if isinstance(document, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str):
                return parse_duration(delay)
    return None


def classify_response(
    status: int,
    headers: Mapping[str, str],
    body: Callable[[], str],
    now: float,
    rules: tuple[Rule, ...] = (),
    max_cooldown: float = 6 * 3600.0,
) -> Outcome:
    """A provider's answer: the user's rules first, then the built-in table and reset hints."""
    if rules:
        decided = apply_rules(rules, status, headers, body, now, max_cooldown)
        if decided is not None:
            return decided
    outcome = classify_status(status, headers.get("retry-after"), now)
    if status == 429 and outcome.cooldown_until is None:
        until = reset_hint(headers, body(), now, max_cooldown)
        if until is not None:
            return Outcome(
                outcome.effect,
                outcome.retry,
                outcome.reason,
                outcome.opens_now,
                until,
                "quota reset",
            )
    return outcome


RULE_KEYS = ("status", "body", "headers", "action", "cooldown")
_RANGE = re.compile(r"^\s*(\d{3})\s*-\s*(\d{3})\s*$")


def _status_ranges(node: Node) -> tuple[tuple[int, int], ...]:
    items = list(node.sequence()) if node.is_sequence() else [node]
    if not items:  # no statuses would otherwise mean any status
        raise node.error("the list is empty; give a status like 429 or a range like 500-599")
    ranges = []
    for item in items:
        value = item.scalar()
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            ranges.append((value, value))
            continue
        match = _RANGE.match(str(value))
        if not match or not 100 <= int(match.group(1)) <= int(match.group(2)) <= 599:
            raise item.error(f"expected a status like 429 or a range like 500-599, got {value!r}")
        ranges.append((int(match.group(1)), int(match.group(2))))
    return tuple(ranges)


def _regex(node: Node) -> re.Pattern[str]:
    text = node.text()
    try:
        return re.compile(text)
    except re.error as e:
        raise node.error(f"bad regular expression {text!r}: {e}") from None


def parse_rules(node: Node) -> tuple[Rule, ...]:
    """An ordered ``rules:`` list; every mistake names its FILE:LINE: key.path."""
    rules = []
    for item in node.sequence():
        entries = item.mapping(RULE_KEYS)
        if not entries.keys() & {"status", "body", "headers"}:
            raise item.error("a rule needs at least one of status, body, headers to match")
        statuses = _status_ranges(entries["status"]) if "status" in entries else ()
        body = _regex(entries["body"]) if "body" in entries else None
        headers: list[tuple[str, re.Pattern[str] | None]] = []
        if "headers" in entries:
            named = entries["headers"].mapping()
            if not named:  # no headers would otherwise match any response
                raise entries["headers"].error("the mapping is empty; give name: regex or true")
            for name, value in named.items():
                raw = value.scalar()
                headers.append((name.lower(), None if raw is True else _regex(value)))
        cooldown = entries["cooldown"].number(0, 604800) if "cooldown" in entries else 0.0
        if "action" in entries:
            action = entries["action"].choice(Action, "action")
            if action is Action.COOLDOWN and "cooldown" not in entries:
                raise entries["action"].error("action cooldown needs cooldown: SECONDS")
            if action is not Action.COOLDOWN and "cooldown" in entries:
                raise entries["cooldown"].error(
                    f"cooldown goes with action cooldown, not {action.value}; drop one of them"
                )
        elif "cooldown" in entries:
            action = Action.COOLDOWN
        else:
            raise item.error(
                "a rule needs an action (failover, return, neutral) or cooldown: SECONDS"
            )
        rules.append(
            Rule(statuses, body, tuple(headers), action, cooldown, f"{item.source}:{item.line}")
        )
    return tuple(rules)
