"""Routing and failover through a real mitmdump with real TLS interception (the addon issue)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .fakes import (
    FakeProvider,
    closed_port,
    error,
    ok_json,
    ok_sse,
    slow_first_byte,
)
from .proxy import Proxy, concurrent, h2_request, request, reverse_request, wait_until

pytestmark = pytest.mark.e2e

MESSAGES = "https://api.anthropic.com/v1/messages"
BACKUP_KEY = "sk-backup-e2e-0123456789"
BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}
CLIENT_HEADERS = {"x-api-key": "client-own-key", "anthropic-version": "2023-06-01"}


def claude_config(
    primary: str,
    backup: str,
    *,
    failure_threshold: int = 3,
    open_seconds: float = 60,
    success_threshold: int = 1,
    extra: str = "",
    failover: bool = True,
) -> str:
    return f"""\
apps:
  claude:
    queue: [primary, backup]
    failover: {str(failover).lower()}
    breaker:
      failure_threshold: {failure_threshold}
      open_seconds: {open_seconds}
      success_threshold: {success_threshold}
{extra}
    providers:
      primary:
        base_url: {primary}
        auth: passthrough
      backup:
        base_url: {backup}/v1
        auth: x-api-key
        api_key: ${{BACKUP_KEY}}
        models: {{"claude-sonnet-4-5": "backup-sonnet"}}
        headers: {{X-Title: ccswitch-e2e}}
"""


def start(make_proxy: Callable[..., Proxy], config: str, **kwargs: Any) -> Proxy:
    kwargs["env"] = {"BACKUP_KEY": BACKUP_KEY, **kwargs.get("env", {})}
    return make_proxy(config, **kwargs)


def status(proxy: Proxy) -> dict[str, Any]:
    reply = request(proxy, "GET", "http://ccswitch.local/status")
    assert reply.status == 200, reply
    document: dict[str, Any] = reply.json()
    return document


def control(proxy: Proxy, action: str, app: str, provider: str) -> Any:
    """POST /switch or /reset as the CLI sends it: with the token from GET /token."""
    token = request(proxy, "GET", "http://ccswitch.local/token").json()["token"]
    return request(
        proxy,
        "POST",
        f"http://ccswitch.local/{action}",
        json={"app": app, "provider": provider},
        headers={"content-type": "application/json", "x-ccswitch-token": token},
    )


def provider_status(proxy: Proxy, pid: str, app: str = "claude") -> dict[str, Any]:
    entries = status(proxy)["apps"][app]["queue"]
    entry: dict[str, Any] = next(e for e in entries if e["id"] == pid)
    return entry


def send(
    proxy: Proxy, url: str = MESSAGES, body: Any = None, headers: dict[str, str] | None = None
) -> Any:
    return request(
        proxy,
        "POST",
        url,
        json=BODY if body is None else body,
        headers=CLIENT_HEADERS if headers is None else headers,
    )


def test_failover_within_one_request(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529))
    backup.default = ok_json()
    flows = tmp_path / "flows.mitm"
    proxy = start(make_proxy, claude_config(primary.url, backup.url), extra=["-w", str(flows)])

    reply = send(proxy)

    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "backup"
    assert reply.headers["x-ccswitch-attempts"] == "2"
    assert reply.json()["model"] == "backup-sonnet"
    (first,) = primary.requests
    assert first.headers["x-api-key"] == "client-own-key"  # passthrough keeps the tool's key
    (second,) = backup.requests
    assert second.path == "/v1/messages"  # /v1 of the base URL is not doubled
    assert second.headers["x-api-key"] == BACKUP_KEY
    assert "client-own-key" not in str(second.header_list)
    assert "authorization" not in second.headers
    assert second.headers["x-title"] == "ccswitch-e2e"
    assert second.json()["model"] == "backup-sonnet"
    assert second.json()["messages"] == BODY["messages"]
    events = status(proxy)["events"]
    assert [(e["from"], e["to"]) for e in events] == [("primary", "backup")]
    proxy.wait_for_output("ccswitch switch: claude: primary → backup")
    assert BACKUP_KEY not in proxy.output()
    proxy.stop()  # the saved flows, as mitmweb would show them, hold only a masked key
    saved = flows.read_bytes()
    assert b"backup-sonnet" in saved
    assert BACKUP_KEY.encode() not in saved
    assert b"sk-b\xe2\x80\xa66789" in saved


def test_breaker_opens_and_later_requests_skip_the_dead_provider(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(500, body={"type": "error", "error": {"type": "api_error"}})
    proxy = start(make_proxy, claude_config(primary.url, backup.url, failure_threshold=2))

    for _ in range(2):
        assert send(proxy).status == 200
    assert provider_status(proxy, "primary")["state"] == "open"
    for _ in range(3):
        reply = send(proxy)
        assert reply.status == 200
        assert reply.headers["x-ccswitch-attempts"] == "1"
    assert len(primary.requests) == 2
    assert len(backup.requests) == 5


def test_recovery_through_one_half_open_probe(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529))
    proxy = start(
        make_proxy, claude_config(primary.url, backup.url, failure_threshold=1, open_seconds=1)
    )
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"
    assert provider_status(proxy, "primary")["state"] == "open"
    wait_until(
        lambda: provider_status(proxy, "primary")["state"] == "half_open",
        10,
        "the breaker to become half_open",
    )

    reply = send(proxy)

    assert reply.headers["x-ccswitch-provider"] == "primary"
    assert provider_status(proxy, "primary")["state"] == "closed"
    assert len(primary.requests) == 2
    document = status(proxy)
    assert document["apps"]["claude"]["active"] == "primary"
    # The way back came within the switch manager's 5 s flap guard: not announced yet.
    assert [(e["from"], e["to"]) for e in document["events"]] == [("primary", "backup")]


def test_half_open_sends_exactly_one_of_fifty_concurrent_requests(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529))
    proxy = start(
        make_proxy, claude_config(primary.url, backup.url, failure_threshold=1, open_seconds=1)
    )
    send(proxy)
    wait_until(lambda: provider_status(proxy, "primary")["state"] == "half_open", 10, "half_open")
    primary.default = slow_first_byte(1.5, ok_json())  # the probe is in flight meanwhile

    replies = concurrent(lambda _: send(proxy), 50)

    assert all(r.status == 200 for r in replies)
    served = [r.headers["x-ccswitch-provider"] for r in replies]
    assert served.count("primary") == 1
    assert served.count("backup") == 49
    assert len(primary.requests) == 2  # the 529 and the single probe


def test_a_burst_at_a_dead_fresh_primary_reaches_it_failure_threshold_times(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = slow_first_byte(0.3, error(529))  # the whole burst arrives first
    proxy = start(make_proxy, claude_config(primary.url, backup.url, failure_threshold=3))

    replies = concurrent(lambda _: send(proxy), 20)

    assert [r.status for r in replies] == [200] * 20
    assert len(primary.requests) == 3  # the other 17 waited for those answers, then moved on
    assert len(backup.requests) == 20
    assert provider_status(proxy, "primary")["state"] == "open"


def test_a_burst_at_a_healthy_fresh_primary_is_all_served_there(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = slow_first_byte(0.3, ok_json())
    proxy = start(make_proxy, claude_config(primary.url, backup.url, failure_threshold=3))

    replies = concurrent(lambda _: send(proxy), 12)

    assert [r.headers["x-ccswitch-provider"] for r in replies] == ["primary"] * 12
    assert backup.requests == []
    assert status(proxy)["events"] == []


def test_retry_after_puts_the_provider_in_cooldown(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(429, headers={"Retry-After": "30"}))
    proxy = start(make_proxy, claude_config(primary.url, backup.url, failure_threshold=5))

    before = time.time()
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"
    entry = provider_status(proxy, "primary")
    assert entry["state"] == "cooldown"
    assert before + 28 <= entry["reopens_at"] <= time.time() + 31
    assert entry["cooldown_reason"] == "Retry-After"
    assert send(proxy).headers["x-ccswitch-attempts"] == "1"
    assert len(primary.requests) == 1


def test_a_bad_request_is_returned_as_it_is(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    bad = {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens"}}
    primary.queue(error(400, body=bad))
    proxy = start(make_proxy, claude_config(primary.url, backup.url))

    reply = send(proxy)

    assert reply.status == 400
    assert reply.json() == bad
    assert backup.requests == []
    entry = provider_status(proxy, "primary")
    assert (entry["state"], entry["consecutive_failures"], entry["failures"]) == ("closed", 0, 0)


def test_unreachable_primary_host_still_served_by_the_backup(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    """The primary is the real api.anthropic.com, which cannot be reached here. With the
    default eager strategy the CONNECT would fail before any hook; lazy lets us reroute."""
    backup = fakes("backup")
    config = claude_config("https://api.anthropic.com", backup.url).replace(
        "auth: passthrough", "auth: passthrough\n        # the real host, unreachable here"
    )
    proxy = start(make_proxy, config, extra=["--set", "connection_strategy=eager"])

    first = send(proxy)  # the primary fails to connect: the backup serves the same request
    assert first.status == 200
    assert first.headers["x-ccswitch-provider"] == "backup"
    assert first.headers["x-ccswitch-attempts"] == "2"
    entry = provider_status(proxy, "primary")
    assert entry["state"] == "open"
    assert entry["failures"] == 1

    second = send(proxy)
    assert second.status == 200
    assert second.headers["x-ccswitch-provider"] == "backup"
    assert second.headers["x-ccswitch-attempts"] == "1"


def test_refused_connection_opens_at_once(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    backup = fakes("backup")
    proxy = start(
        make_proxy,
        claude_config(f"http://127.0.0.1:{closed_port()}", backup.url, failure_threshold=8),
    )
    first = send(proxy)  # refused: the client never sees a proxy's 502 while a backup is left
    assert first.status == 200
    assert first.headers["x-ccswitch-provider"] == "backup"
    assert provider_status(proxy, "primary")["state"] == "open"
    assert send(proxy).headers["x-ccswitch-attempts"] == "1"


def test_streaming_arrives_incrementally(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = ok_sse(events=5, interval=0.25)
    proxy = start(make_proxy, claude_config(primary.url, backup.url))

    reply = send(proxy, body={**BODY, "stream": True})

    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "primary"
    assert [e.event for e in reply.sse()][-1] == "message_stop"
    arrivals = [t for t, _ in reply.chunks]
    assert len(arrivals) >= 4, reply.chunks
    assert arrivals[-1] - arrivals[0] >= 1.0  # relayed as sent, not buffered to the end
    assert reply.first_byte is not None
    # Held only until the first text delta (the commit point), then relayed as it comes.
    assert arrivals[-1] - reply.first_byte >= 0.75


def test_unrelated_hosts_and_paths_pass_untouched(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup, other = fakes("primary"), fakes("backup"), fakes("other")
    proxy = start(make_proxy, claude_config(primary.url, backup.url))

    on_other_host = request(
        proxy, "POST", f"{other.url}/v1/messages", json=BODY, headers=CLIENT_HEADERS
    )
    assert on_other_host.status == 200
    assert "x-ccswitch-provider" not in on_other_host.headers
    (seen,) = other.requests
    assert seen.headers["x-api-key"] == "client-own-key"

    # A non-model path on the routed host is not routed: it goes to the real host (which
    # cannot be reached here, so mitmproxy answers 502), and no provider sees it.
    claude_code_call = request(
        proxy,
        "POST",
        "https://api.anthropic.com/api/claude_code/metrics",
        json={},
        headers=CLIENT_HEADERS,
    )
    assert claude_code_call.status == 502
    websocket_probe = request(proxy, "GET", "https://api.openai.com/v1/responses")
    assert websocket_probe.status == 502
    assert primary.requests == []
    assert backup.requests == []
    entry = provider_status(proxy, "primary")
    assert (entry["requests"], entry["failures"], entry["state"]) == (0, 0, "closed")


def test_an_http2_request_fails_over_like_any_other(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    """Codex CLI sends POST /v1/responses over HTTP/2; the providers speak HTTP/1.1."""
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529, api="openai"))
    backup.default = ok_json("openai")
    config = f"""\
apps:
  codex:
    queue: [primary, backup]
    providers:
      primary: {{base_url: "{primary.url}", auth: passthrough}}
      backup:
        base_url: "{backup.url}/v1"
        auth: bearer
        api_key: ${{BACKUP_KEY}}
        models: {{gpt-5: backup-gpt}}
"""
    proxy = start(make_proxy, config)

    status, headers, body = h2_request(
        proxy,
        "https://api.openai.com/v1/responses?stream=false",
        json={"model": "gpt-5", "input": "hi"},
        headers={"authorization": "Bearer client-own-key"},
    )

    assert status == 200, body
    assert (headers["x-ccswitch-provider"], headers["x-ccswitch-attempts"]) == ("backup", "2")
    (first,) = primary.requests
    assert first.headers["host"] == primary.url.split("//")[1]
    assert first.headers["authorization"] == "Bearer client-own-key"  # passthrough
    (served,) = backup.requests
    assert served.target == "/v1/responses?stream=false"
    assert served.headers["host"] == backup.url.split("//")[1]
    assert served.headers["authorization"] == f"Bearer {BACKUP_KEY}"
    assert b'"backup-gpt"' in served.body


def test_failover_off_returns_the_error(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    proxy = start(
        make_proxy, claude_config(primary.url, backup.url, failover=False, failure_threshold=1)
    )
    for _ in range(2):  # the breaker opens, but failover off does not consult it
        reply = send(proxy)
        assert reply.status == 529
        assert reply.headers["x-ccswitch-provider"] == "primary"
    assert len(primary.requests) == 2
    assert backup.requests == []


def test_all_providers_open_gives_the_apis_own_error(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(500)
    backup.default = error(503)
    proxy = start(make_proxy, claude_config(primary.url, backup.url, failure_threshold=1))

    assert send(proxy).status == 503  # the last provider's error
    hits = len(primary.requests) + len(backup.requests)
    reply = send(proxy)

    assert reply.status == 529
    assert 1 <= int(reply.headers["retry-after"]) <= 60
    document = reply.json()
    assert document["type"] == "error"
    assert document["error"]["type"] == "overloaded_error"
    assert "open or cooling" in document["error"]["message"]
    assert len(primary.requests) + len(backup.requests) == hits  # nobody was contacted


def test_reverse_proxy_mode(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529))
    proxy = start(
        make_proxy, claude_config(primary.url, backup.url), mode="reverse:https://api.anthropic.com"
    )

    reply = reverse_request(proxy, "POST", "/v1/messages", json=BODY, headers=CLIENT_HEADERS)

    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "backup"
    assert len(primary.requests) == 1
    assert backup.requests[0].headers["x-api-key"] == BACKUP_KEY


def test_gemini_model_path_and_key_query(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    backup = fakes("backup")
    backup.default = ok_json("gemini")
    config = f"""\
apps:
  gemini:
    queue: [backup]
    providers:
      backup:
        base_url: {backup.url}
        api_key: ${{BACKUP_KEY}}
        models: {{gemini-2.5-pro: gemini-2.5-flash}}
"""
    proxy = start(make_proxy, config)
    url = (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:"
        "generateContent?key=client-key"
    )
    reply = request(
        proxy,
        "POST",
        url,
        json={"contents": [{"parts": [{"text": "hi"}]}]},
        headers={"x-goog-api-key": "client-key"},
    )
    assert reply.status == 200
    (seen,) = backup.requests
    assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert "key" not in seen.query
    assert seen.headers["x-goog-api-key"] == BACKUP_KEY


def test_status_json(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    proxy = start(make_proxy, claude_config(primary.url, backup.url))
    document = status(proxy)
    claude = document["apps"]["claude"]
    assert claude["failover"] is True
    assert claude["current"] == "primary"
    assert claude["active"] is None
    assert [q["id"] for q in claude["queue"]] == ["primary", "backup"]
    for entry in claude["queue"]:
        assert {"id", "name", "state", "consecutive_failures", "reopens_at"} <= set(entry)
    assert BACKUP_KEY not in str(document)


def test_config_error_at_start_is_one_clear_line(make_proxy: Callable[..., Proxy]) -> None:
    broken = (
        "apps:\n  claude:\n    queue: [a]\n    breaker:\n      failure_treshold: 3\n"
        "    providers:\n      a: {base_url: 'http://127.0.0.1:9', auth: passthrough}\n"
    )
    proxy = make_proxy(broken, start=False).start(expect_exit=True)
    assert proxy.wait_exit() != 0
    output = proxy.output()
    assert (
        "providers.yaml:5: apps.claude.breaker.failure_treshold: unknown key "
        "(did you mean 'failure_threshold'?)" in output
    )
    assert "Traceback" not in output


def test_retries_of_different_requests_run_concurrently_and_never_via_https_proxy(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    """Ten requests fail over at once to a slow backup: the backup sees all ten before it
    answers any, so the retries were in flight together. HTTPS_PROXY in mitmdump's own
    environment points at a dead port: the retries must not go through it."""
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    backup.default = slow_first_byte(1.0, ok_json())
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    proxy = start(
        make_proxy,
        claude_config(primary.url, backup.url, failure_threshold=50),
        env={"HTTPS_PROXY": dead_proxy, "HTTP_PROXY": dead_proxy, "https_proxy": dead_proxy},
    )

    replies = concurrent(lambda _: send(proxy), 10)

    assert [r.status for r in replies] == [200] * 10
    assert {r.headers["x-ccswitch-attempts"] for r in replies} == {"2"}
    arrivals = sorted(r.at for r in backup.requests)
    assert len(arrivals) == 10
    assert arrivals[-1] - arrivals[0] < 1.0  # all arrived within the first answer's delay
