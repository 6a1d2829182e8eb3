"""A provider's money keys in providers.yaml: price, price_multiplier, budget,
switch_at_utilization. Parsed here so that core/config.py only hands the entries over."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ccswitch_addon.core.prices import Price
from ccswitch_addon.core.yamlnodes import Node

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
    """The money keys among a provider's entries (the others are config.py's)."""
    price = _parse_price(entries["price"]) if "price" in entries else None
    multiplier = (
        entries["price_multiplier"].number(0, 100) if "price_multiplier" in entries else None
    )
    budget = _parse_budget(entries["budget"]) if "budget" in entries else None
    switch_at = (
        entries["switch_at_utilization"].number(0.01, 1)
        if "switch_at_utilization" in entries
        else None
    )
    return CostConfig(price, multiplier, budget, switch_at)


def _parse_price(node: Node) -> Price:
    entries = node.mapping(PRICE_KEYS)
    for key in ("input", "output"):
        if key not in entries:
            raise node.error(f"{key} is required (USD per million tokens)")
    values = {key: entries[key].number(0, 100000) for key in entries}
    return Price(
        input=values["input"],
        output=values["output"],
        cache_read=values.get("cache_read"),
        cache_write=values.get("cache_write"),
    )


def _parse_budget(node: Node) -> Budget:
    entries = node.mapping(BUDGET_KEYS)
    if not entries:
        raise node.error("give daily_usd, monthly_usd or both")
    values = {key: entries[key].number(0, 1_000_000) for key in entries}
    return Budget(values.get("daily_usd"), values.get("monthly_usd"))
