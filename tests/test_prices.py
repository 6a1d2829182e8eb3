"""Price arithmetic and lookup: cache reads and writes, tiers, multiplier, unknown models."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from ccswitch_addon.core.config import parse_config
from ccswitch_addon.core.cost import Pricer
from ccswitch_addon.core.prices import Price, PriceTable, Tiered, TokenCounts, price_table
from ccswitch_addon.core.yamlnodes import ConfigError
from ccswitch_addon.wire.api import Api
from ccswitch_addon.wire.usage import BodyWatch, Usage

DATA = Path(__file__).resolve().parents[1] / "ccswitch_addon" / "core" / "prices_data.json"

# A small list in the shipped format: one first-party maker, one relay-like provider.
TABLE = PriceTable(
    {
        "source": "test",
        "providers": [
            {
                "id": "maker",
                "name": "Maker",
                "api_pattern": r"https://api\.maker\.test",
                "fallback": [],
                "model_match": {"starts_with": "mk-"},
                "models": [
                    {
                        "id": "mk-1",
                        "match": {"or": [{"equals": "mk-1"}, {"starts_with": "mk-1-"}]},
                        "prices": [
                            {"from": None, "input": 2.0, "output": 8.0, "cache_read": 0.2},
                            {"from": "2030-01-01", "input": 1.0, "output": 4.0},
                        ],
                    },
                    {
                        "id": "mk-big",
                        "match": {"equals": "mk-big"},
                        "prices": [
                            {
                                "from": None,
                                "input": {"base": 3.0, "tiers": [[200000, 6.0]]},
                                "output": {"base": 15.0, "tiers": [[200000, 22.5]]},
                                "cache_read": {"base": 0.3, "tiers": [[200000, 0.6]]},
                                "cache_write": {"base": 3.75, "tiers": [[200000, 7.5]]},
                            }
                        ],
                    },
                ],
            },
            {
                "id": "seller",
                "name": "Seller",
                "api_pattern": r"https://seller\.test",
                "fallback": [],
                "model_match": None,
                "models": [
                    {
                        "id": "mk-1",
                        "match": {"equals": "mk-1"},
                        "prices": [{"from": None, "input": 5.0, "output": 5.0}],
                    }
                ],
            },
        ],
    }
)
DAY = datetime.date(2026, 12, 6)


def test_cache_reads_and_writes_have_their_own_rates() -> None:
    price = Price(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)
    tokens = TokenCounts(input=1000, output=500, cache_read=10000, cache_write=2000)
    expected = (1000 * 3 + 500 * 15 + 10000 * 0.3 + 2000 * 3.75) / 1e6
    assert price.cost(tokens) == pytest.approx(expected)


def test_cache_tokens_without_a_rate_pay_the_input_price() -> None:
    price = Price(input=2.0, output=8.0)
    assert price.cost(TokenCounts(cache_read=1_000_000, cache_write=1_000_000)) == 4.0


def test_a_tier_applies_to_all_tokens_once_the_prompt_passes_it() -> None:
    price = TABLE.price("maker", "mk-big", DAY)
    assert price is not None
    under = TokenCounts(input=100_000, cache_read=100_000, output=1000)  # 200,000: not past
    over = TokenCounts(input=100_001, cache_read=100_000, output=1000)
    assert price.cost(under) == pytest.approx((100_000 * 3 + 100_000 * 0.3 + 1000 * 15) / 1e6)
    assert price.cost(over) == pytest.approx((100_001 * 6 + 100_000 * 0.6 + 1000 * 22.5) / 1e6)
    assert Tiered(1.0, ((10, 2.0), (20, 3.0))).at(21) == 3.0


def test_multiplier_scales_the_whole_cost() -> None:
    price = Price(input=2.0, output=8.0, cache_read=0.2)
    tokens = TokenCounts(input=1000, output=1000, cache_read=1000)
    assert price.cost(tokens, 0.5) == pytest.approx(price.cost(tokens) / 2)


def test_base_url_picks_the_provider_else_the_model_maker() -> None:
    assert TABLE.provider_for_url("https://seller.test/v1") == "seller"
    assert TABLE.provider_for_url("http://127.0.0.1:9000") is None
    assert TABLE.price("seller", "mk-1", DAY) == Price(5.0, 5.0)
    # a relay (unknown URL) or a seller without the model: the maker's list price
    assert TABLE.price(None, "mk-1", DAY) == Price(2.0, 8.0, 0.2)
    assert TABLE.price("seller", "mk-big", DAY) is not None
    assert TABLE.price(None, "vendor/MK-1-2025", DAY) == Price(2.0, 8.0, 0.2)


def test_unknown_model_has_no_price() -> None:
    assert TABLE.price(None, "nobody-knows-me", DAY) is None
    assert TABLE.price("seller", "nobody-knows-me", DAY) is None


def test_a_dated_price_change_applies_from_its_day() -> None:
    assert TABLE.price(None, "mk-1", DAY) == Price(2.0, 8.0, 0.2)
    assert TABLE.price(None, "mk-1", datetime.date(2030, 1, 1)) == Price(1.0, 4.0)


def test_the_shipped_list_names_its_source_and_prices_claude_and_gpt() -> None:
    document = json.loads(DATA.read_text())
    assert document["source"].startswith("genai-prices ")
    table = price_table()
    assert table.provider_for_url("https://api.anthropic.com") == "anthropic"
    assert table.provider_for_url("https://api.openai.com/v1") == "openai"
    sonnet = table.price("anthropic", "claude-sonnet-4-5-20250929", DAY)
    assert sonnet is not None
    assert isinstance(sonnet.input, Tiered)
    assert sonnet.input.base == 3.0
    assert table.first_party("claude-opus-4-1") == "anthropic"
    assert table.first_party("gpt-5") == "openai"
    assert table.price(None, "gpt-5", DAY) is not None


def config_with(provider_extra: str, base_url: str = "http://127.0.0.1:9") -> str:
    return f"""\
apps:
  claude:
    queue: [p]
    providers:
      p:
        base_url: {base_url}
        auth: passthrough
{provider_extra}"""


def provider(extra: str, base_url: str = "http://127.0.0.1:9"):  # type: ignore[no-untyped-def]
    return (
        parse_config(config_with(extra, base_url), "providers.yaml").apps["claude"].providers["p"]
    )


def usage(input_tokens: int, output_tokens: int, read: int = 0, write: int = 0) -> Usage:
    return Usage(input_tokens, output_tokens, read, write)


def test_a_relay_pays_the_first_party_price_times_its_multiplier() -> None:
    pricer = Pricer()
    plain = pricer.cost(provider(""), "claude-opus-4-1", usage(1_000_000, 0))
    assert plain == pytest.approx(15.0)  # Anthropic's list price, with no configuration
    half = pricer.cost(
        provider("        price_multiplier: 0.5\n"), "claude-opus-4-1", usage(1_000_000, 0)
    )
    assert half == pytest.approx(7.5)


def test_a_price_override_replaces_the_list() -> None:
    extra = "        price: {input: 1, output: 2, cache_read: 0.1, cache_write: 1.25}\n"
    cost = Pricer().cost(
        provider(extra), "anything-at-all", usage(1_000_000, 1_000_000, 1_000_000, 1_000_000)
    )
    assert cost == pytest.approx(1 + 2 + 0.1 + 1.25)


def test_unknown_model_costs_null_and_no_usage_costs_null() -> None:
    pricer = Pricer()
    assert pricer.cost(provider(""), "my-local-llama", usage(100, 100)) is None
    assert pricer.cost(provider(""), "claude-opus-4-1", Usage()) is None


def test_openai_cached_tokens_are_inside_the_prompt_count() -> None:
    watch = BodyWatch(Api.OPENAI, "application/json")
    body = {
        "choices": [{"message": {"content": "hi"}}],
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 800},
        },
    }
    watch.complete(json.dumps(body).encode())
    assert watch.usage.uncached_input() == 200
    assert watch.usage.cache_read_tokens == 800


def test_anthropic_cache_fields_are_read_from_message_start() -> None:
    watch = BodyWatch(Api.ANTHROPIC, "text/event-stream")
    start = {
        "type": "message_start",
        "message": {
            "usage": {
                "input_tokens": 5,
                "cache_read_input_tokens": 900,
                "cache_creation_input_tokens": 100,
                "output_tokens": 1,
            }
        },
    }
    watch(f"event: message_start\ndata: {json.dumps(start)}\n\n".encode())
    assert (watch.usage.uncached_input(), watch.usage.cache_read_tokens) == (5, 900)
    assert watch.usage.cache_write_tokens == 100


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("        price: {input: 1}\n", "output is required"),
        ("        price: {input: 1, output: 2, cache: 3}\n", "cache"),
        ("        price_multiplier: -1\n", "out of range"),
        ("        budget: {}\n", "daily_usd"),
        ("        switch_at_utilization: 2\n", "out of range"),
    ],
)
def test_bad_money_keys_name_file_line_and_key(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        provider(extra)
    text = str(caught.value)
    assert text.startswith("providers.yaml:8: ") or text.startswith("providers.yaml:9: ")
    assert message in text
