"""The quiet console's line per routed request (core/requestline.py)."""

from __future__ import annotations

from ccswitch_addon.core.record import Attempt, Finished
from ccswitch_addon.core.requestline import request_line
from ccswitch_addon.wire.usage import Usage


def finished(**extra: object) -> Finished:
    done = Finished(
        app="claude",
        served="relay",
        attempts=[
            Attempt(provider="official", status=529, error=None, ms=5.0, failed=True),
            Attempt(provider="relay", status=200, error=None, ms=9.0, failed=False),
        ],
        total_ms=14.4,
    )
    for name, value in extra.items():
        setattr(done, name, value)
    return done


def test_the_line_names_route_chain_status_time_tokens_and_cost() -> None:
    done = finished(route="small", cost_usd=0.01234, usage=Usage(input_tokens=12, output_tokens=3))
    assert request_line(done, 200) == (
        "claude  route small  official 529 → relay 200  → 200  14 ms  12+3 tok  $0.0123"
    )


def test_parts_with_nothing_to_say_are_left_out() -> None:
    assert request_line(finished(), None) == (
        "claude  official 529 → relay 200  → client gone  14 ms"
    )
