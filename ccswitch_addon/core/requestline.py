"""One console line per routed request.

``claude  official 529 → openrouter 200  200  812 ms  1200+56 tok`` — the app, the chain of
attempts, what the client got, the time, the tokens, and why there was no failover when
there was none. Each part is a small function in ``FIELDS``, in the order shown; a part
that has nothing to say (a route, a cost not known) is left out, so new parts are one
function each.
"""

from __future__ import annotations

from collections.abc import Callable

from ccswitch_addon.core.record import Finished

__all__ = ["FIELDS", "request_line"]

Field = Callable[[Finished, int | None], str | None]


def _app(done: Finished, status: int | None) -> str:
    return done.app


def _route(done: Finished, status: int | None) -> str | None:
    return f"route {done.route}" if done.route else None


def _chain(done: Finished, status: int | None) -> str:
    return done.chain() or "no provider tried"


def _status(done: Finished, status: int | None) -> str:
    return f"→ {status}" if status is not None else "→ client gone"


def _time(done: Finished, status: int | None) -> str:
    return f"{done.total_ms:.0f} ms"


def _tokens(done: Finished, status: int | None) -> str | None:
    usage = done.usage
    if usage.input_tokens is None and usage.output_tokens is None:
        return None
    return f"{usage.input_tokens or 0}+{usage.output_tokens or 0} tok"


def _cost(done: Finished, status: int | None) -> str | None:
    return f"${done.cost_usd:.4f}" if done.cost_usd is not None else None


def _note(done: Finished, status: int | None) -> str | None:
    return done.note


FIELDS: list[Field] = [_app, _route, _chain, _status, _time, _tokens, _cost, _note]


def request_line(done: Finished, status: int | None) -> str:
    parts = (field(done, status) for field in FIELDS)
    return "  ".join(part for part in parts if part)
