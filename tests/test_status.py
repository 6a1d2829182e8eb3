"""The status document: its shape, the state of every provider, and no secrets."""

from __future__ import annotations

import json

from conftest import FakeClock

from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.outcome import ErrorKind, classify_error, classify_status
from ccswitch_addon.core.router import Router
from ccswitch_addon.core.status import build_status
from ccswitch_addon.core.switch import SwitchManager

SECRETS = {
    "ENV_KEY": "sk-env-key-aaaaaaaaaaaa1111",
    "HEADER_KEY": "sk-header-bbbbbbbbbbb2222",
}
LITERAL = "sk-literal-cccccccccc3333"

CONFIG = f"""\
apps:
  claude:
    queue: [a, b, c]
    breaker: {{failure_threshold: 2, open_seconds: 30}}
    providers:
      a: {{name: Anthropic, base_url: "https://api.anthropic.com", auth: passthrough}}
      b:
        name: Backup
        base_url: https://b.example/api
        auth: bearer
        api_key: ${{ENV_KEY}}
        headers: {{X-Extra-Key: "${{HEADER_KEY}}"}}
      c: {{base_url: "https://c.example", api_key: "${{MISSING}}"}}
      d: {{base_url: "https://d.example", api_key: "{LITERAL}"}}
  codex:
    failover: false
    queue: [x]
    providers:
      x: {{base_url: "https://x.example", auth: passthrough}}
"""

ENTRY_KEYS = {"id", "name", "state", "consecutive_failures", "reopens_at"}


def setup(clock: FakeClock) -> tuple[Router, SwitchManager]:
    router = Router(parse_config(CONFIG, "p.yaml", env=SECRETS), clock)
    return router, SwitchManager(clock)


def test_status_shape(clock: FakeClock) -> None:
    router, switches = setup(clock)
    status = build_status(router, switches)
    assert set(status["apps"]) == {"claude", "codex"}
    claude = status["apps"]["claude"]
    assert claude["failover"] is True
    assert claude["current"] == "a"
    assert claude["active"] is None
    assert [entry["id"] for entry in claude["queue"]] == ["a", "b", "c", "d"]
    for entry in claude["queue"]:
        assert set(entry) >= ENTRY_KEYS
    a, b, c, d = claude["queue"]
    assert (a["name"], a["state"], a["consecutive_failures"], a["reopens_at"]) == (
        "Anthropic",
        "closed",
        0,
        None,
    )
    assert b["name"] == "Backup"
    assert c["state"] == "disabled"
    assert c["disabled_reason"].startswith(
        "${MISSING} is not set (apps.claude.providers.c.api_key); add MISSING to "
    )
    assert d["in_queue"] is False
    assert status["apps"]["codex"]["failover"] is False
    assert status["events"] == []
    json.dumps(status)  # JSON-ready as it is


def test_status_follows_the_breakers_and_switches(clock: FakeClock) -> None:
    router, switches = setup(clock)
    permit = router.acquire("claude", "a")
    router.record_result("claude", "a", classify_error(ErrorKind.CONNECT), permit)
    permit = router.acquire("claude", "b")
    router.record_result("claude", "b", classify_status(429, "60", clock.now), permit)
    event = switches.served("claude", "b", "a: connect", baseline="a")
    assert event is not None
    router.switch("claude", "d")

    claude = build_status(router, switches)["apps"]["claude"]
    assert claude["current"] == "d"
    assert claude["active"] == "b"
    entries = {entry["id"]: entry for entry in claude["queue"]}
    assert [entry["id"] for entry in claude["queue"]] == ["d", "a", "b", "c"]
    assert entries["a"]["state"] == "open"
    assert entries["a"]["reopens_at"] == clock.now + 30
    assert entries["b"]["state"] == "cooldown"
    assert entries["b"]["reopens_at"] == clock.now + 60
    assert entries["b"]["consecutive_failures"] == 1
    assert entries["b"]["cooldown_reason"] == "Retry-After"
    assert build_status(router, switches)["events"] == [event.to_json()]


def test_no_key_appears_anywhere_in_the_status(clock: FakeClock) -> None:
    router, switches = setup(clock)
    switches.served("claude", "b", "a: 529", baseline="a")
    text = json.dumps(build_status(router, switches))
    assert router.config.apps["claude"].providers["b"].api_key == SECRETS["ENV_KEY"]
    for secret in [*SECRETS.values(), LITERAL]:
        assert secret not in text
        assert secret[-8:] not in text


def test_an_open_provider_says_which_failure_opened_it_and_when(clock: FakeClock) -> None:
    router, switches = setup(clock)
    for _ in range(2):
        permit = router.acquire("claude", "a", hold=False)
        router.record_result("claude", "a", classify_status(529, {}, clock()), permit)
    opened = clock()
    entry = build_status(router, switches)["apps"]["claude"]["queue"][0]
    assert entry["state"] == "open"
    assert (entry["opened_by"], entry["opened_at"]) == ("529", opened)
    assert entry["reopens_at"] == opened + 30
    closed = build_status(router, switches)["apps"]["claude"]["queue"][1]
    assert "opened_by" not in closed
