"""Cost, budgets, subscription windows and /metrics through a real mitmdump."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .fakes import FakeHandler, FakeProvider, Received, ok_json
from .proxy import Proxy, request, wait_until
from .test_dashboard import CHROMIUM, render
from .test_routing import BODY, CLIENT_HEADERS, send, start, status

pytestmark = pytest.mark.e2e

UNIFIED = "anthropic-ratelimit-unified-"


@dataclass
class PricedReply:
    """An Anthropic answer with cache usage and optional unified rate-limit headers."""

    usage: Mapping[str, int]
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200

    def run(self, h: FakeHandler, received: Received) -> None:
        body = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-opus-4-1",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "usage": dict(self.usage),
        }
        if self.status >= 400:
            body = {"type": "error", "error": {"type": "rate_limit_error", "message": "limit"}}
        h.send_full(
            self.status,
            json.dumps(body).encode(),
            {"Content-Type": "application/json", **self.headers},
        )


def config(primary: str, backup: str, primary_extra: str = "") -> str:
    return f"""\
apps:
  claude:
    queue: [primary, backup]
    providers:
      primary:
        base_url: {primary}
        auth: passthrough
{primary_extra}      backup:
        base_url: {backup}
        auth: passthrough
"""


def entry(proxy: Proxy, pid: str) -> dict[str, Any]:
    queue = status(proxy)["apps"]["claude"]["queue"]
    found: dict[str, Any] = next(e for e in queue if e["id"] == pid)
    return found


def test_cost_of_a_known_model_with_no_configuration_and_metrics(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    usage = {
        "input_tokens": 1000,
        "cache_read_input_tokens": 10000,
        "cache_creation_input_tokens": 2000,
        "output_tokens": 500,
    }
    primary.default = PricedReply(usage)
    proxy = start(make_proxy, config(primary.url, backup.url))
    reply = send(proxy, body={**BODY, "model": "claude-opus-4-1"})
    assert reply.status == 200, reply
    # a relay on loopback: Anthropic's list price for claude-opus-4-1 (15 / 75 / 1.5 / 18.75)
    expected = (1000 * 15 + 500 * 75 + 10000 * 1.5 + 2000 * 18.75) / 1e6
    rows = wait_until(
        lambda: request(proxy, "GET", "http://ccswitch.local/requests").json()["rows"],
        10,
        "the request in the log",
    )
    assert rows[0]["cost_usd"] == pytest.approx(expected)
    metrics = request(proxy, "GET", "http://ccswitch.local/metrics")
    assert metrics.status == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(metrics.text()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    served = (("app", "claude"), ("outcome", "success"), ("provider", "primary"))
    assert values[("ccswitch_requests_total", served)] == 1
    cost = values[("ccswitch_cost_usd_total", (("app", "claude"), ("provider", "primary")))]
    assert cost == pytest.approx(expected)
    state = (("app", "claude"), ("provider", "backup"))
    assert values[("ccswitch_breaker_state", state)] == 0
    assert request(proxy, "GET", f"{proxy.url}/__ccswitch/metrics").status == 200
    refused = request(
        proxy, "GET", "http://ccswitch.local/metrics", headers={"Origin": "https://evil.example"}
    )
    assert refused.status == 403


def test_a_daily_budget_is_enforced(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = PricedReply({"input_tokens": 1_000_000, "output_tokens": 0})  # $2
    backup.default = ok_json()
    extra = "        price: {input: 2, output: 10}\n        budget: {daily_usd: 5}\n"
    proxy = start(make_proxy, config(primary.url, backup.url, extra))
    served = [send(proxy).headers["x-ccswitch-provider"] for _ in range(4)]
    assert served == ["primary", "primary", "primary", "backup"]  # the third crosses $5
    shown = entry(proxy, "primary")
    assert shown["state"] == "budget"
    assert shown["budget_reason"] == "daily budget $5.00 spent"
    assert shown["spent_usd"]["day"] == pytest.approx(6.0)
    events = status(proxy)["events"]
    assert [e["reason"] for e in events].count("daily budget $5.00 spent") == 1
    proxy.stop()
    proxy.start()  # the spend is in the state file
    assert send(proxy).headers["x-ccswitch-provider"] == "backup"
    assert len(primary.requests) == 3


def test_unified_headers_windows_threshold_and_rejected(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    backup.default = ok_json()
    usage = {"input_tokens": 10, "output_tokens": 5}

    def windows(state: str, five: float) -> dict[str, str]:
        return {
            UNIFIED + "status": state,
            UNIFIED + "reset": "4102444800",
            UNIFIED + "5h-utilization": str(five),
            UNIFIED + "5h-reset": "4102444800",
            UNIFIED + "7d-utilization": "0.3",
            UNIFIED + "7d-reset": "4102444800",
        }

    extra = "        switch_at_utilization: 0.95\n"
    proxy = start(make_proxy, config(primary.url, backup.url, extra))
    old = {**CLIENT_HEADERS, "x-claude-code-session-id": "old"}
    new = {**CLIENT_HEADERS, "x-claude-code-session-id": "new"}
    primary.default = PricedReply(usage, windows("allowed_warning", 0.96))
    assert send(proxy, headers=old).headers["x-ccswitch-provider"] == "primary"
    shown = entry(proxy, "primary")["windows"]
    assert shown["status"] == "allowed_warning"
    assert shown["5h"] == {"utilization": 0.96, "reset": 4102444800}
    assert shown["7d"]["utilization"] == 0.3
    # past the threshold: a new conversation goes to the backup, the old one stays
    assert send(proxy, headers=new).headers["x-ccswitch-provider"] == "backup"
    assert send(proxy, headers=old).headers["x-ccswitch-provider"] == "primary"
    # just under it (hysteresis): still moved away
    primary.default = PricedReply(usage, windows("allowed", 0.93))
    assert send(proxy, headers=old).headers["x-ccswitch-provider"] == "primary"
    assert send(proxy, headers=new).headers["x-ccswitch-provider"] == "backup"
    # rejected: the provider cools down until the reset, old conversations move too
    primary.default = PricedReply(usage, windows("rejected", 1.0), status=429)
    assert send(proxy, headers=old).headers["x-ccswitch-provider"] == "backup"
    shown = entry(proxy, "primary")
    assert shown["state"] == "cooldown"
    assert shown["windows"]["status"] == "rejected"


def test_dashboard_shows_cost_hit_ratio_budget_and_windows(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    primary, backup = fakes("primary"), fakes("backup")
    usage = {"input_tokens": 1_000_000, "cache_read_input_tokens": 1_000_000, "output_tokens": 0}
    unified = {
        UNIFIED + "status": "allowed_warning",
        UNIFIED + "5h-utilization": "0.5",
        UNIFIED + "5h-reset": "4102444800",
    }
    primary.default = PricedReply(usage, unified)  # $2 + $0.2 at this price
    backup.default = ok_json()
    extra = (
        "        price: {input: 2, output: 10, cache_read: 0.2}\n        budget: {daily_usd: 2}\n"
    )
    proxy = start(make_proxy, config(primary.url, backup.url, extra))
    assert send(proxy).headers["x-ccswitch-provider"] == "primary"
    wait_until(
        lambda: request(proxy, "GET", "http://ccswitch.local/tokens").json()["rows"],
        10,
        "the request in the state file",
    )
    page = render(proxy)
    dom = page.dom
    assert page.states["primary"] == "budget"
    assert "daily budget $2.00 spent" in dom
    assert re.search(r'data-cost-today="primary"[^>]*>\$2\.20<', dom), dom[-3000:]
    assert re.search(r'data-cost-month="primary"[^>]*>\$2\.20<', dom)
    assert re.search(r'data-hit="primary"[^>]*>50\.0%<', dom)  # 1M read of 2M input
    assert "subscription allowed_warning: 5h 50.0%" in dom
