"""Failure detection beyond status codes, each with a provider that misbehaves that way."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .fakes import (
    FakeProvider,
    closed_port,
    error,
    hang,
    ok_json,
    ok_sse,
    slow_first_byte,
    sse_error_midstream,
    sse_truncated,
)
from .proxy import Proxy, request, wait_until
from .test_routing import BODY, claude_config, provider_status, send, start, status

pytestmark = pytest.mark.e2e

STREAM = {**BODY, "stream": True}


def breaker_of(proxy: Proxy, pid: str = "primary") -> dict[str, Any]:
    return provider_status(proxy, pid)


@pytest.mark.parametrize(
    ("behaviour", "why"),
    [
        (sse_error_midstream(after=0), "error"),
        (sse_truncated(after=0), "closed the connection mid-answer"),
        (ok_sse(events=0, output_tokens=0), "empty completion"),
    ],
    ids=["error-event", "early-eof", "empty-completion"],
)
def test_a_bad_200_stream_fails_the_provider(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    behaviour: Any,
    why: str,
) -> None:
    # Sent at once, the whole bad stream is in before anything reached the client: the
    # provider has failed and the backup serves the same request.
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = behaviour
    backup.default = ok_sse(events=3)
    proxy = start(make_proxy, claude_config(primary.url, backup.url, failure_threshold=2))

    first = send(proxy, body=STREAM)
    assert first.status == 200
    assert first.headers["x-ccswitch-provider"] == "backup"
    assert first.headers["x-ccswitch-attempts"] == "2"
    assert [e.event for e in first.sse()].count("message_start") == 1
    assert [e.event for e in first.sse()][-1] == "message_stop"
    assert "error" not in [e.event for e in first.sse()]
    entry = wait_until(
        lambda: (e := breaker_of(proxy))["failures"] == 1 and e, 5, "the failure to be recorded"
    )
    assert entry["consecutive_failures"] == 1
    (event,) = status(proxy)["events"]
    assert event["to"] == "backup"
    assert "primary: broken" in event["reason"], event
    assert why.split()[0] in event["reason"], event
    send(proxy, body=STREAM)
    assert breaker_of(proxy)["state"] == "open"
    assert len(backup.requests) == 2
    assert "Traceback" not in proxy.output()


def test_a_good_stream_is_byte_for_byte_what_the_provider_sent(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = ok_sse(events=20)
    direct = request(None, "POST", f"{primary.url}/v1/messages", json=STREAM)
    proxy = start(make_proxy, claude_config(primary.url, backup.url))
    through = send(proxy, body=STREAM)

    def without_ids(reply: Any) -> list[tuple[str | None, Any]]:
        events = [(e.event, json.loads(e.data)) for e in reply.sse()]
        for _, data in events:
            data.get("message", {}).pop("id", None)
        return events

    assert without_ids(through) == without_ids(direct)
    assert through.body.count(b"\n\n") == direct.body.count(b"\n\n")
    assert breaker_of(proxy)["failures"] == 0


RULES = """\
    rules:
      - status: 400
        body: "(?i)overloaded"
        action: failover
      - status: 402
        cooldown: 3600
"""


def test_rule_400_overloaded_fails_over(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(
        error(
            400,
            body={
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "Upstream overloaded, try later",
                },
            },
        )
    )
    primary.queue(
        error(
            400,
            body={
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "max_tokens too large"},
            },
        )
    )
    proxy = start(make_proxy, claude_config(primary.url, backup.url, extra=RULES))
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"
    assert breaker_of(proxy)["consecutive_failures"] == 1
    plain = send(proxy)  # no rule matches: the built-in table returns a 400 as it is
    assert plain.status == 400
    assert len(backup.requests) == 1


def test_rule_402_cools_down_for_an_hour(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(402, body={"error": {"message": "insufficient balance"}}))
    proxy = start(make_proxy, claude_config(primary.url, backup.url, extra=RULES))
    before = time.time()
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"
    entry = breaker_of(proxy)
    assert entry["state"] == "cooldown"
    assert before + 3590 <= entry["reopens_at"] <= time.time() + 3601
    assert entry["cooldown_reason"].startswith("rule ")
    assert entry["consecutive_failures"] == 0  # a cooldown rule is breaker-neutral
    send(proxy)
    assert len(primary.requests) == 1


def rfc3339(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("headers", "body", "seconds"),
    [
        (
            {
                "anthropic-ratelimit-requests-reset": "{in_300s}",
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-tokens-reset": "{in_20s}",
            },
            None,
            300,
        ),
        ({"anthropic-ratelimit-output-tokens-reset": "{in_120s}"}, None, 120),
        (
            {
                "x-ratelimit-reset-requests": "6m0s",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-tokens": "20ms",
            },
            None,
            360,
        ),
        (
            {},
            {
                "error": {
                    "code": 429,
                    "message": "quota",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "45s"}
                    ],
                }
            },
            45,
        ),
    ],
    ids=["anthropic-requests", "anthropic-output-tokens", "openai-duration", "gemini-retryinfo"],
)
def test_quota_reset_hints_cool_the_provider_down(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    headers: dict[str, str],
    body: Any,
    seconds: float,
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    now = time.time()
    filled = {
        k: v.format(
            in_300s=rfc3339(now + 300), in_20s=rfc3339(now + 20), in_120s=rfc3339(now + 120)
        )
        for k, v in headers.items()
    }
    primary.queue(error(429, headers=filled, body=body))
    proxy = start(make_proxy, claude_config(primary.url, backup.url, failure_threshold=5))
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"
    entry = breaker_of(proxy)
    assert entry["state"] == "cooldown"
    assert entry["cooldown_reason"] == "quota reset"
    # A relative hint counts from the answer, which came after the proxy started.
    assert now + seconds - 3 <= entry["reopens_at"] <= time.time() + seconds + 3


def test_slow_calls_open_the_breaker(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = slow_first_byte(0.4, ok_json())
    extra = "      slow_ms: 200\n      slow_rate_threshold: 0.5\n      min_requests: 2\n"
    config = claude_config(primary.url, backup.url).replace(
        "      success_threshold: 1\n", "      success_threshold: 1\n" + extra
    )
    proxy = start(make_proxy, config)
    for _ in range(2):
        reply = send(proxy)
        assert reply.status == 200
        assert reply.headers["x-ccswitch-provider"] == "primary"
    entry = breaker_of(proxy)
    assert entry["state"] == "open"
    assert entry["failures"] == 0  # slow, not failed
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"


def test_no_first_byte_in_time_fails_over_within_the_request(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(hang(30))
    config = claude_config(primary.url, backup.url, failure_threshold=1).replace(
        "      success_threshold: 1\n", "      success_threshold: 1\n      first_byte_seconds: 1\n"
    )
    proxy = start(make_proxy, config)

    reply = send(proxy)
    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "backup"
    assert reply.first_byte is not None
    assert reply.first_byte - reply.started < 5  # one second at the primary, then the backup
    entry = breaker_of(proxy)
    assert entry["state"] == "open"
    assert "primary: timeout: no first byte in 1s" in status(proxy)["events"][0]["reason"]
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"
    assert len(primary.requests) == 1


PROBED = """\
      primary:
        base_url: {primary}
        auth: x-api-key
        api_key: ${{BACKUP_KEY}}
        probe: true
"""


def probed_config(primary: FakeProvider, backup: FakeProvider) -> str:
    config = claude_config(primary.url, backup.url, failure_threshold=1, open_seconds=600)
    return config.replace(
        f"""\
      primary:
        base_url: {primary.url}
        auth: passthrough
""",
        PROBED.format(primary=primary.url),
    )


def test_probe_success_moves_open_to_half_open(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529))
    proxy = start(make_proxy, probed_config(primary, backup))
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"
    wait_until(lambda: breaker_of(proxy)["state"] == "half_open", 10, "the probe to succeed")
    probe = primary.requests[1]
    assert (probe.method, probe.path) == ("POST", "/v1/messages/count_tokens")
    assert probe.headers["x-api-key"]
    assert send(proxy).headers["x-ccswitch-provider"] == "primary"
    assert breaker_of(proxy)["state"] == "closed"
    assert "ccswitch probe claude:primary ok" in proxy.output()


def test_failed_probe_keeps_it_open_and_is_not_repeated_soon(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    proxy = start(make_proxy, probed_config(primary, backup))
    send(proxy)
    proxy.wait_for_output("ccswitch probe claude:primary failed", timeout=10)
    probes = len(primary.requests) - 1
    assert probes == 1
    assert breaker_of(proxy)["state"] == "open"
    # The probe loop ticks every second; within open_seconds (600) there is no second probe.
    proxy.wait_for_output("GET http://ccswitch.local/status", timeout=5)
    assert len(primary.requests) - 1 == 1


def test_preflight_test_command(fakes: Callable[[str], FakeProvider], tmp_path: Path) -> None:
    good, bad_key = fakes("good"), fakes("badkey")
    good.default = ok_sse()
    bad_key.default = error(401)
    config = tmp_path / "providers.yaml"
    config.write_text(f"""\
apps:
  claude:
    queue: [good, badkey, gone]
    providers:
      good: {{base_url: "{good.url}", api_key: "${{K}}", models: {{"*": "mapped-model"}}}}
      badkey: {{base_url: "{bad_key.url}", api_key: "${{K}}"}}
      gone: {{base_url: "http://127.0.0.1:{closed_port()}", api_key: "${{K}}"}}
""")
    ccswitch = str(Path(sys.executable).parent / "ccswitch")
    env = {"PATH": "/usr/bin:/bin", "K": "sk-test-000000000000"}
    result = subprocess.run(
        [ccswitch, "test", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    lines = {line.split()[1]: line for line in result.stdout.splitlines()[1:]}
    assert lines["good"].split()[2:8] == ["ok", "n/a", "ok", "ok", lines["good"].split()[6], "ok"]
    assert "FAIL" in lines["badkey"].split()[4]
    assert lines["gone"].split()[2] == "FAIL"
    assert good.requests[0].json()["model"] == "mapped-model"
    assert good.requests[0].headers["x-api-key"] == "sk-test-000000000000"
    only_good = subprocess.run(
        [ccswitch, "test", "claude", "--provider", "good", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert only_good.returncode == 0, only_good.stdout
    unknown = subprocess.run(
        [ccswitch, "test", "nope", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert unknown.returncode == 2
    assert "unknown app 'nope'" in unknown.stderr


def test_provider_pointing_at_the_proxy_is_refused(make_proxy: Callable[..., Proxy]) -> None:
    port = closed_port()
    config = f"""\
apps:
  claude:
    queue: [loop]
    providers:
      loop: {{base_url: "http://127.0.0.1:{port}", auth: passthrough}}
"""
    proxy = make_proxy(config, start=False, extra=["--listen-port", str(port)])
    proxy.start(expect_exit=True)
    assert proxy.wait_exit() != 0
    assert (
        "apps.claude.providers.loop.base_url: points at this proxy's own address" in proxy.output()
    )


def test_status_events_shape(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529))
    proxy = start(make_proxy, claude_config(primary.url, backup.url))
    send(proxy)
    (event,) = status(proxy)["events"]
    assert set(event) == {"time", "app", "from", "to", "reason"}
