"""A provider's money keys in providers.yaml: price, price_multiplier, budget,
switch_at_utilization. Parsed here so that core/config.py only hands the entries over."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

from ccswitch_addon.core.prices import Price
from ccswitch_addon.core.yamlnodes import Mistakes, Node

__all__ = ["COST_KEYS", "PRICE_KEYS", "Budget", "CostConfig", "parse_cost"]

COST_KEYS = ("price", "price_multiplier", "budget", "switch_at_utilization")
PRICE_KEYS = ("input", "output", "cache_read", "cache_write")
BUDGET_KEYS = ("daily_usd", "monthly_usd")


@dataclass(frozen=True)
class Budget:
    """USD a provider may spend per local day and per local month (None: no limit)."""

    daily_usd: float | None = None
    monthly_usd: float | None = None


@dataclass(frozen=True)
class CostConfig:
    price: Price | None = None  # replaces the list's price for every model of the provider
    price_multiplier: float | None = None  # a relay selling at a fraction of list price
    budget: Budget | None = None
    # a subscription window this full moves new conversations elsewhere
    switch_at_utilization: float | None = None


def parse_cost(entries: Mapping[str, Node]) -> CostConfig:
    """The money keys among a provider's entries (the others are config.py's); every mistake
    in them is raised together."""
    found = Mistakes()
    price = (
        found.attempt(lambda: _parse_price(entries["price"]), None) if "price" in entries else None
    )
    multiplier = (
        found.attempt(lambda: entries["price_multiplier"].number(0, 100), None)
        if "price_multiplier" in entries
        else None
    )
    budget = (
        found.attempt(lambda: _parse_budget(entries["budget"]), None)
        if "budget" in entries
        else None
    )
    switch_at = (
        found.attempt(lambda: entries["switch_at_utilization"].number(0.01, 1), None)
        if "switch_at_utilization" in entries
        else None
    )
    found.check()
    return CostConfig(price, multiplier, budget, switch_at)


def _parse_price(node: Node) -> Price:
    found = Mistakes()
    entries = node.mapping(PRICE_KEYS, found)
    for key in ("input", "output"):
        if key not in entries:
            found.record(node.error(f"{key} is required (USD per million tokens)"))
    values = {key: found.attempt(partial(entries[key].number, 0, 100000), 0.0) for key in entries}
    found.check()
    return Price(
        input=values["input"],
        output=values["output"],
        cache_read=values.get("cache_read"),
        cache_write=values.get("cache_write"),
    )


def _parse_budget(node: Node) -> Budget:
    found = Mistakes()
    entries = node.mapping(BUDGET_KEYS, found)
    if not entries:
        found.record(node.error("give daily_usd, monthly_usd or both"))
    values = {
        key: found.attempt(partial(entries[key].number, 0, 1_000_000), 0.0) for key in entries
    }
    found.check()
    return Budget(values.get("daily_usd"), values.get("monthly_usd"))
