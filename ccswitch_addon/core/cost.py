"""A request's cost at the provider that served it: the list price (or the provider's own
``price:``) applied to its usage, times ``price_multiplier``."""

from __future__ import annotations

from collections.abc import Callable

from ccswitch_addon.core.config import Config, ProviderConfig
from ccswitch_addon.core.prices import Price, PriceTable, TokenCounts, cost_at, price_table
from ccswitch_addon.wire.usage import Usage

__all__ = ["Pricer", "describe_cost", "tokens_of", "unpriced"]


def unpriced(config: Config, pricer: Pricer | None = None) -> list[tuple[str, str, list[str]]]:
    """(app, provider, models) whose mapped models have no price: their cost will be null."""
    pricer = pricer or Pricer()
    found = []
    for app in config.apps.values():
        for provider in app.providers.values():
            if provider.cost.price is not None:
                continue
            models = sorted({m for m in provider.models.values() if m and m != "*"})
            missing = [m for m in models if pricer.price(provider, m) is None]
            if missing:
                found.append((app.name, provider.id, missing))
    return found


def describe_cost(provider: ProviderConfig) -> str:
    """How ``ccswitch check`` says a provider is priced and limited."""
    cost = provider.cost
    if cost.price is not None:
        text = f"  price ${cost.price.input:g}/${cost.price.output:g} per Mtok"
    else:
        listed = price_table().provider_for_url(provider.base_url)
        text = f"  priced as {listed}" if listed else "  priced at the model maker's list"
        if cost.price_multiplier is not None:
            text += f" ×{cost.price_multiplier:g}"
    budget = cost.budget
    if budget is not None:
        limits = [
            f"${value:.2f}/{unit}"
            for value, unit in ((budget.daily_usd, "day"), (budget.monthly_usd, "month"))
            if value is not None
        ]
        text += "  budget " + ", ".join(limits)
    if cost.switch_at_utilization is not None:
        text += f"  new conversations elsewhere at {cost.switch_at_utilization:.0%} of a window"
    return text


def tokens_of(usage: Usage) -> TokenCounts:
    return TokenCounts(
        usage.uncached_input(),
        usage.output_tokens or 0,
        usage.cache_read_tokens or 0,
        usage.cache_write_tokens or 0,
    )


class Pricer:
    """Looks prices up once per (base URL, model); the list has some 2,000 models."""

    def __init__(self, table: Callable[[], PriceTable] = price_table) -> None:
        self._table = table
        self._found: dict[tuple[str, str], Price | None] = {}

    def price(self, provider: ProviderConfig, model: str | None) -> Price | None:
        """The price per million tokens this provider charges for the model, if known."""
        if provider.cost.price is not None:
            return provider.cost.price
        if not model:
            return None
        key = (provider.base_url, model)
        try:
            return self._found[key]
        except KeyError:
            pass
        table = self._table()
        found = table.price(table.provider_for_url(provider.base_url), model)
        if len(self._found) > 4096:  # models are few; a client sending junk names is not
            self._found.clear()
        self._found[key] = found
        return found

    def cost(
        self,
        provider: ProviderConfig,
        model: str | None,
        usage: Usage,
        tokens: TokenCounts | None = None,
    ) -> float | None:
        """USD, or None when the model's price is unknown or the answer had no usage."""
        if usage.input_tokens is None and usage.output_tokens is None:
            return None
        price = self.price(provider, model)
        if price is None:
            return None
        multiplier = provider.cost.price_multiplier
        if provider.cost.price is not None or multiplier is None:
            multiplier = 1.0
        tokens = tokens or tokens_of(usage)
        return cost_at(price.flat or price.rates(tokens.total_input), tokens, multiplier)
