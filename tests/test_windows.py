"""Subscription windows from the unified headers: status, windows, threshold with hysteresis."""

from __future__ import annotations

from ccswitch_addon.core.windows import HYSTERESIS, PREFIX, Windows, session_of

NOW = 1_800_000_000.0


def headers(status: str, five: float, seven: float = 0.1, reset: float = NOW + 3600) -> dict:  # type: ignore[type-arg]
    return {
        PREFIX + "status": status,
        PREFIX + "reset": str(int(reset)),
        PREFIX + "5h-utilization": str(five),
        PREFIX + "5h-reset": str(int(reset)),
        PREFIX + "7d-utilization": str(seven),
        PREFIX + "7d-reset": str(int(NOW + 86400 * 3)),
    }


def test_status_shows_each_window() -> None:
    windows = Windows(lambda: NOW)
    assert windows.observe("claude", "max", {"content-type": "x"}) is None
    observed = windows.observe("claude", "max", headers("allowed_warning", 0.8))
    assert observed is not None
    assert observed.status == "allowed_warning"
    shown = windows.status("claude", "max")
    assert shown is not None
    assert shown["status"] == "allowed_warning"
    assert shown["5h"] == {"utilization": 0.8, "reset": NOW + 3600}
    assert shown["7d"]["utilization"] == 0.1


def test_rejected_names_the_reset() -> None:
    windows = Windows(lambda: NOW)
    observed = windows.observe("claude", "max", headers("rejected", 1.0))
    assert observed is not None
    assert (observed.status, observed.reset) == ("rejected", NOW + 3600)


def test_threshold_moves_new_conversations_with_hysteresis() -> None:
    windows = Windows(lambda: NOW)
    windows.served("claude", "old-session", "max")
    windows.observe("claude", "max", headers("allowed", 0.94))
    assert windows.moves_away("claude", "max", 0.95, "new") is None
    windows.observe("claude", "max", headers("allowed_warning", 0.95))
    assert windows.moves_away("claude", "max", 0.95, "new") == NOW + 3600
    assert windows.moves_away("claude", "max", 0.95, None) == NOW + 3600
    assert windows.moves_away("claude", "max", 0.95, "old-session") is None  # stays
    # hovering just under the threshold does not bring new conversations back
    windows.observe("claude", "max", headers("allowed", 0.95 - HYSTERESIS / 2))
    assert windows.moves_away("claude", "max", 0.95, "new") is not None
    windows.observe("claude", "max", headers("allowed", 0.95 - HYSTERESIS * 1.5))
    assert windows.moves_away("claude", "max", 0.95, "new") is None
    assert windows.moves_away("claude", "max", None, "new") is None


def test_a_window_that_has_reset_no_longer_counts() -> None:
    clock = [NOW]
    windows = Windows(lambda: clock[0])
    windows.observe("claude", "max", headers("allowed", 0.99, reset=NOW + 10))
    assert windows.moves_away("claude", "max", 0.95, None) is not None
    clock[0] = NOW + 11
    assert windows.moves_away("claude", "max", 0.95, None) is None


def test_session_from_the_tools_headers() -> None:
    assert session_of([(b"X-Claude-Code-Session-Id", b"abc")]) == "abc"
    assert session_of([(b"session_id", b"s1")]) == "s1"
    assert session_of([(b"x-other", b"v")]) is None


def test_rejected_cools_the_provider_until_the_reset_capped() -> None:
    from ccswitch_addon.core.config import parse_config
    from ccswitch_addon.engine import Engine

    config = parse_config(
        """\
apps:
  claude:
    queue: [max, backup]
    breaker: {max_cooldown_seconds: 7200}
    providers:
      max: {base_url: "http://127.0.0.1:9", auth: passthrough}
      backup: {base_url: "http://127.0.0.1:10", auth: passthrough}
""",
        "providers.yaml",
    )
    engine = Engine(config, lambda: NOW)
    engine.accounts.headers_seen("claude", "max", headers("allowed", 0.5))
    assert engine.router.breaker("claude", "max").label() == "closed"
    # a 200 that says rejected cools it too; the reset is an hour away, within the cap
    engine.accounts.headers_seen("claude", "max", headers("rejected", 1.0))
    entry = engine.status()["apps"]["claude"]["queue"][0]
    assert (entry["state"], entry["reopens_at"]) == ("cooldown", NOW + 3600)
    assert entry["cooldown_reason"] == "subscription window rejected"
    assert entry["windows"]["status"] == "rejected"
    # a reset days away is capped by max_cooldown_seconds
    engine.accounts.headers_seen("claude", "backup", headers("rejected", 1.0, reset=NOW + 86400))
    assert engine.router.breaker("claude", "backup").reopens_at() == NOW + 7200
