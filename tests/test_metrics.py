"""/metrics, parsed with prometheus-client's own text parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.record import Attempt, Finished
from ccswitch_addon.engine import Engine
from ccswitch_addon.wire.usage import Usage

CONFIG = """\
apps:
  claude:
    queue: [primary, backup, gone]
    providers:
      primary:
        base_url: http://127.0.0.1:9
        auth: passthrough
      backup:
        base_url: http://127.0.0.1:10
        auth: passthrough
        price: {input: 2, output: 10, cache_read: 0.2}
      gone:
        base_url: http://127.0.0.1:11
        auth: x-api-key
        api_key: ${UNSET_FOR_METRICS_TEST}
"""


def samples(engine: Engine) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = engine.accounts.metrics.render().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def test_metrics_count_requests_attempts_failovers_tokens_cost_and_states() -> None:
    engine = Engine(parse_config(CONFIG, "providers.yaml", env={}))
    done = Finished(
        "claude",
        "backup",
        [Attempt("primary", 5.0, True, 529), Attempt("backup", 20.0, False, 200)],
        model_sent="x",
        ttfb_ms=300.0,
        usage=Usage(1_000_000, 100_000, 500_000, None),
    )
    engine.request_done(done)
    engine.request_done(Finished("claude", None, [Attempt("primary", 5.0, True, 500)]))
    found = samples(engine)
    assert (
        found[
            ("ccswitch_requests_total", labels(app="claude", provider="backup", outcome="failover"))
        ]
        == 1
    )
    assert (
        found[
            ("ccswitch_requests_total", labels(app="claude", provider="primary", outcome="failure"))
        ]
        == 1
    )
    assert (
        found[
            ("ccswitch_attempts_total", labels(app="claude", provider="primary", result="failure"))
        ]
        == 2
    )
    assert (
        found[
            ("ccswitch_attempts_total", labels(app="claude", provider="backup", result="success"))
        ]
        == 1
    )
    assert found[("ccswitch_failovers_total", labels(app="claude"))] == 1
    tokens = {
        kind: found[("ccswitch_tokens_total", labels(app="claude", provider="backup", kind=kind))]
        for kind in ("input", "output", "cache_read")
    }
    assert tokens == {"input": 1_000_000, "output": 100_000, "cache_read": 500_000}
    cost = found[("ccswitch_cost_usd_total", labels(app="claude", provider="backup"))]
    assert abs(cost - (2 + 1 + 0.1)) < 1e-9
    assert (
        found[("ccswitch_first_byte_seconds_count", labels(app="claude", provider="backup"))] == 1
    )
    bucket = labels(app="claude", provider="backup", le="0.5")
    assert found[("ccswitch_first_byte_seconds_bucket", bucket)] == 1
    states = {
        pid: found[("ccswitch_breaker_state", labels(app="claude", provider=pid))]
        for pid in ("primary", "backup", "gone")
    }
    assert states == {"primary": 0, "backup": 0, "gone": 5}
    assert not any("model" in dict(key[1]) for key in found)


def test_a_request_error_passed_on_is_its_own_outcome() -> None:
    engine = Engine(parse_config(CONFIG, "providers.yaml", env={}))
    engine.request_done(Finished("claude", "primary", [Attempt("primary", 5.0, False, 400)]))
    engine.request_done(Finished("claude", None, []))
    found = samples(engine)
    assert (
        found[
            ("ccswitch_requests_total", labels(app="claude", provider="primary", outcome="error"))
        ]
        == 1
    )
    assert (
        found[
            (
                "ccswitch_requests_total",
                labels(app="claude", provider="none", outcome="unavailable"),
            )
        ]
        == 1
    )
