"""Routes, conversation affinity and key pools through a real mitmdump (issue 22)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .fakes import FakeProvider, error, ok_json
from .proxy import Proxy, request, wait_until
from .test_dashboard import CHROMIUM, render
from .test_routing import BODY, CLIENT_HEADERS, provider_status, send, status

pytestmark = pytest.mark.e2e

KEY_1 = "sk-pool-one-0123456789"
KEY_2 = "sk-pool-two-9876543210"


def config(primary: str, backup: str, extra: str = "", backup_key: str = "") -> str:
    return f"""\
apps:
  claude:
    queue: [primary, backup]
    breaker: {{failure_threshold: 1, success_threshold: 1, open_seconds: 1}}
{extra}
    providers:
      primary:
        base_url: {primary}
        auth: passthrough
      backup:
        base_url: {backup}
        {backup_key or "auth: passthrough"}
"""


def in_conversation(proxy: Proxy, conversation: str | None, model: str = "") -> Any:
    headers = dict(CLIENT_HEADERS)
    if conversation is not None:
        headers["x-claude-code-session-id"] = conversation
    return send(proxy, body={**BODY, "model": model or BODY["model"]}, headers=headers)


def log_rows(proxy: Proxy) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = request(proxy, "GET", "http://ccswitch.local/requests").json()[
        "rows"
    ]
    return rows


def test_a_route_by_model(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    routes = """\
    routes:
      - name: small
        when: {model: "*haiku*"}
        queue: [backup]"""
    flows = tmp_path / "flows.mitm"
    proxy = make_proxy(config(primary.url, backup.url, routes), extra=["-w", str(flows)])

    small = in_conversation(proxy, "c-1", "claude-haiku-4-5")
    main = in_conversation(proxy, "c-1")

    assert small.status == 200
    assert small.headers["x-ccswitch-provider"] == "backup"
    assert small.headers["x-ccswitch-route"] == "small"
    assert main.headers["x-ccswitch-provider"] == "primary"
    assert "x-ccswitch-route" not in main.headers
    assert [r.json()["model"] for r in backup.requests] == ["claude-haiku-4-5"]
    app = status(proxy)["apps"]["claude"]
    (route,) = app["routes"]
    assert route["name"] == "small"
    assert route["queue"] == ["backup"]
    assert route["when"] == {"model": ["*haiku*"]}
    assert route["active"] == "backup"
    assert app["conversations"] == {"backup": 1, "primary": 1}  # one per route and queue
    rows = log_rows(proxy)
    assert {r["route"] for r in rows} == {"small", None}
    proxy.stop()  # mitmweb's comment, as saved with the flow
    assert "claude → backup [route small]".encode() in flows.read_bytes()


@pytest.mark.parametrize(("failback", "after_heal"), [("idle", "backup"), ("at_once", "primary")])
def test_affinity_after_the_primary_heals(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    failback: str,
    after_heal: str,
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.queue(error(529))
    proxy = make_proxy(config(primary.url, backup.url, f"    failback: {failback}"))

    failed_over = in_conversation(proxy, "conv-4f2a")
    assert failed_over.headers["x-ccswitch-provider"] == "backup"
    wait_until(lambda: provider_status(proxy, "primary")["state"] == "half_open", 10, "half_open")
    probe = in_conversation(proxy, None)  # no conversation: the queue, which heals primary
    assert probe.headers["x-ccswitch-provider"] == "primary"
    assert provider_status(proxy, "primary")["state"] == "closed"

    again = in_conversation(proxy, "conv-4f2a")

    assert again.status == 200
    assert again.headers["x-ccswitch-provider"] == after_heal
    why = log_rows(proxy)[0]["why"]
    if failback == "idle":
        assert why == "affinity: conversation conv… stays on backup"
        assert in_conversation(proxy, "other").headers["x-ccswitch-provider"] == "primary"
    else:
        assert why == "failback: conversation conv… returns to primary"
    conversations = status(proxy)["apps"]["claude"]["conversations"]
    assert conversations.get("backup", 0) == (1 if failback == "idle" else 0)


def test_a_key_pool_with_one_key_answering_429(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(500)
    backup.default = ok_json()
    keys = 'api_keys: ["${KEY_1}", "${KEY_2}"]'
    proxy = make_proxy(
        config(primary.url, backup.url, backup_key=keys), env={"KEY_1": KEY_1, "KEY_2": KEY_2}
    )
    assert (
        in_conversation(proxy, "warm").headers["x-ccswitch-provider"] == "backup"
    )  # opens primary
    backup.reset()
    backup.queue(error(429, headers={"retry-after": "120"}))

    reply = in_conversation(proxy, "c-pool")

    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "backup"
    assert reply.headers["x-ccswitch-attempts"] == "1"  # the refused key is not an attempt
    used = [r.headers["x-api-key"] for r in backup.requests]
    assert len(used) == 2
    assert set(used) == {KEY_1, KEY_2}
    entry = provider_status(proxy, "backup")
    assert entry["state"] == "closed"
    assert entry["consecutive_failures"] == 0  # not counted against the provider
    keys_shown = status(proxy)["apps"]["claude"]["keys"]["backup"]
    assert sorted(k["state"] for k in keys_shown) == ["cooldown", "ready"]
    cooling = next(k for k in keys_shown if k["state"] == "cooldown")
    assert cooling["key"] in ("sk-p…6789", "sk-p…3210")
    text = request(proxy, "GET", "http://ccswitch.local/status").text()
    assert KEY_1 not in text
    assert KEY_2 not in text
    # the conversation keeps the key that served it
    backup.reset()
    assert in_conversation(proxy, "c-pool").status == 200
    assert backup.requests[0].headers["x-api-key"] == used[1]
    assert KEY_1 not in proxy.output()


def test_the_dashboard_shows_routes_conversations_and_keys(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    primary, backup = fakes("primary"), fakes("backup")
    routes = """\
    routes:
      - name: small
        when: {model: "*haiku*"}
        queue: [backup]"""
    keys = 'api_keys: ["${KEY_1}", "${KEY_2}"]'
    proxy = make_proxy(
        config(primary.url, backup.url, routes, backup_key=keys),
        env={"KEY_1": KEY_1, "KEY_2": KEY_2},
    )
    assert in_conversation(proxy, "c-1", "claude-haiku-4-5").status == 200
    assert in_conversation(proxy, "c-2").status == 200

    dom = render(proxy).dom

    assert "route small (model: *haiku*): backup · current backup · active backup" in dom
    assert "live conversations: primary 1, backup 1" in dom
    assert "keys of backup: sk-p…6789 ready" in dom
    assert "[route small]" in dom  # the request log says why
    assert KEY_1 not in dom
