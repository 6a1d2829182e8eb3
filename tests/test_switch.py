"""Switch events: one per change of the serving provider, flapping held back."""

from __future__ import annotations

import logging

import pytest
from conftest import FakeClock

from ccswitch_addon.core.switch import SwitchEvent, SwitchManager


@pytest.fixture
def switches(clock: FakeClock) -> SwitchManager:
    return SwitchManager(clock, min_interval=5.0)


def test_serving_by_the_usual_provider_is_no_event(switches: SwitchManager) -> None:
    for _ in range(10):
        assert switches.served("claude", "primary", "ok", baseline="primary") is None
    assert switches.active("claude") == "primary"
    assert list(switches.events) == []


def test_an_event_when_another_provider_serves(switches: SwitchManager, clock: FakeClock) -> None:
    event = switches.served("claude", "backup", "primary: 529", baseline="primary")
    assert event == SwitchEvent(clock.now, "claude", "primary", "backup", "primary: 529")
    assert event.to_json() == {
        "time": clock.now,
        "app": "claude",
        "from": "primary",
        "to": "backup",
        "reason": "primary: 529",
    }
    assert event.describe() == "claude: primary → backup (primary: 529)"
    assert switches.active("claude") == "backup"
    assert list(switches.events) == [event]


def test_fifty_servings_by_the_backup_make_one_event(
    switches: SwitchManager, clock: FakeClock
) -> None:
    heard: list[SwitchEvent] = []
    switches.add_listener(heard.append)
    for _ in range(50):
        switches.served("claude", "backup", "primary: connect", baseline="primary")
        clock.advance(1)
    assert len(switches.events) == 1
    assert heard == list(switches.events)


def test_flapping_is_held_back_and_announced_once_later(
    switches: SwitchManager, clock: FakeClock
) -> None:
    heard: list[SwitchEvent] = []
    switches.add_listener(heard.append)
    first = switches.served("claude", "backup", "primary: 529", baseline="primary")
    assert first is not None
    clock.advance(1)
    assert switches.served("claude", "primary", "recovered", baseline="primary") is None
    assert switches.active("claude") == "primary"  # active moves at once, the event waits
    clock.advance(1)
    assert switches.served("claude", "primary", "still", baseline="primary") is None
    clock.advance(3)  # min_interval since the first event has passed
    later = switches.served("claude", "primary", "still", baseline="primary")
    assert later == SwitchEvent(clock.now, "claude", "backup", "primary", "recovered")
    clock.advance(10)
    assert switches.served("claude", "primary", "ok", baseline="primary") is None
    assert heard == [first, later]


def test_a_flap_back_within_the_interval_is_never_announced(
    switches: SwitchManager, clock: FakeClock
) -> None:
    first = switches.served("claude", "backup", "primary: 529", baseline="primary")
    clock.advance(1)
    assert switches.served("claude", "primary", "recovered", baseline="primary") is None
    clock.advance(1)
    assert switches.served("claude", "backup", "primary: 529", baseline="primary") is None
    for _ in range(5):
        clock.advance(10)
        assert switches.served("claude", "backup", "primary: 529", baseline="primary") is None
    assert list(switches.events) == [first]


def test_the_held_back_event_keeps_the_latest_target(
    switches: SwitchManager, clock: FakeClock
) -> None:
    switches.served("claude", "b", "a: 529", baseline="a")
    clock.advance(1)
    switches.served("claude", "c", "b: 529", baseline="a")
    clock.advance(5)
    event = switches.served("claude", "c", "ok", baseline="a")
    assert event is not None
    assert (event.from_, event.to, event.reason) == ("b", "c", "b: 529")


def test_apps_are_independent(switches: SwitchManager) -> None:
    assert switches.served("claude", "backup", "r", baseline="primary") is not None
    assert switches.served("codex", "backup", "r", baseline="primary") is not None
    assert [e.app for e in switches.events] == ["claude", "codex"]


def test_listeners_called_once_per_event_even_if_one_raises(
    switches: SwitchManager, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def broken(event: SwitchEvent) -> None:
        calls.append("broken")
        raise RuntimeError("listener bug")

    switches.add_listener(broken)
    switches.add_listener(lambda event: calls.append(event.to))
    with caplog.at_level(logging.ERROR, logger="ccswitch_addon.core.switch"):
        event = switches.served("claude", "backup", "r", baseline="primary")
        clock.advance(10)
        again = switches.served("claude", "primary", "r", baseline="primary")
    assert event is not None
    assert again is not None
    assert calls == ["broken", "backup", "broken", "primary"]
    assert len(switches.events) == 2
    assert "listener bug" in caplog.text


def test_only_the_last_fifty_events_are_kept(switches: SwitchManager, clock: FakeClock) -> None:
    for index in range(60):
        switches.served("claude", f"p{index}", "r", baseline="p-start")
        clock.advance(10)
    assert len(switches.events) == 50
    assert switches.events[0].to == "p10"
    assert switches.events[-1].to == "p59"


def test_restore_and_forget(switches: SwitchManager, clock: FakeClock) -> None:
    old = SwitchEvent(clock.now - 100, "claude", "a", "b", "a: 529")
    switches.restore({"claude": "b"}, [old])
    assert switches.active("claude") == "b"
    assert list(switches.events) == [old]
    assert switches.served("claude", "b", "ok", baseline="a") is None  # b was announced already
    switches.forget(["claude"])
    assert switches.active("claude") is None
