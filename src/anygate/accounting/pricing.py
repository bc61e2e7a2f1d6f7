"""What a request cost: configured prices win (the top-level ``prices:``, then the provider's own), then
prices the upstream publishes, then genai-prices.

An unknown price is ``None``, never zero: the ledger records the cost as unknown and the admin sees
which models lack a price. Prices are USD per token; each (provider, model) is looked up once per model
list: a discovery refresh of the provider drops its cached lookups.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import genai_prices

from anygate.accounting.usage import TokenCount

log = logging.getLogger("anygate.pricing")
PriceOrigin = Literal["configured", "discovered", "genai-prices"]
# Providers anygate knows by preset whose ids genai-prices shares; self-hosted ones have no public price.
GENAI_PROVIDERS = {
    "openai": "openai",
    "openrouter": "openrouter",
    "groq": "groq",
    "deepseek": "deepseek",
    "mistral": "mistral",
    "together": "together",
    "xai": "x-ai",
    "fireworks": "fireworks",
    "perplexity": "perplexity",
    "cohere": "cohere",
    "azure": "azure",
    "moonshot": "moonshotai",
}
MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token."""

    input: float
    output: float
    origin: PriceOrigin = "configured"

    def cost(self, count: TokenCount) -> float:
        return count.input * self.input + count.output * self.output


def per_token(value: Any) -> float | None:
    """An OpenRouter-style price (``"0.000001"`` USD per token as a string or number)."""
    if isinstance(value, bool):
        return None
    try:
        parsed = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return float(parsed) if parsed.is_finite() and parsed >= 0 else None


def discovered_price(entry: Mapping[str, Any] | None) -> Price | None:
    """The price in a model-list entry that carries OpenRouter's ``pricing`` object."""
    pricing = entry.get("pricing") if entry else None
    if not isinstance(pricing, Mapping):
        return None
    prompt, completion = per_token(pricing.get("prompt")), per_token(pricing.get("completion"))
    if prompt is None or completion is None:
        return None
    return Price(prompt, completion, "discovered")


def genai_price(provider_type: str | None, model: str) -> Price | None:
    provider = GENAI_PROVIDERS.get(provider_type or "")
    if provider is None:
        return None
    try:
        per_million_in = genai_prices.calc_price(genai_prices.Usage(input_tokens=MILLION), model, provider_id=provider)
        per_million_out = genai_prices.calc_price(
            genai_prices.Usage(output_tokens=MILLION), model, provider_id=provider
        )
    except LookupError:
        return None
    return Price(
        float(per_million_in.total_price) / MILLION, float(per_million_out.total_price) / MILLION, "genai-prices"
    )


def warm_up() -> None:
    """Load genai-prices' catalogue (half a second), so the first priced request does not wait for it.

    Run in a thread at startup.
    """
    genai_price("openai", "gpt-4o-mini")


class PriceBook:
    """Prices by (provider, model), from the three sources in order, cached."""

    def __init__(
        self,
        configured: Mapping[tuple[str, str], Price],
        discovered: Callable[[str, str], Mapping[str, Any] | None] = lambda provider, model: None,
        provider_type: Callable[[str], str | None] = lambda provider: None,
        provider_prices: Callable[[str], Mapping[str, Price]] = lambda provider: {},
    ) -> None:
        self._configured = dict(configured)
        self._discovered = discovered
        self._provider_type = provider_type
        self._provider_prices = provider_prices
        self._cache: dict[tuple[str, str], Price | None] = {}

    def price(self, provider_id: str, model: str) -> Price | None:
        key = (provider_id, model)
        if key in self._cache:
            return self._cache[key]
        own = self._provider_prices(provider_id)
        found = (
            self._configured.get(key)
            or self._configured.get((provider_id, "*"))
            or own.get(model)
            or own.get("*")
            or discovered_price(self._discovered(provider_id, model))
            or genai_price(self._provider_type(provider_id), model)
        )
        if found is not None or len(self._cache) < 10_000:
            self._cache[key] = found
        return found

    def cost(self, provider_id: str, model: str, count: TokenCount) -> float | None:
        price = self.price(provider_id, model)
        return None if price is None else price.cost(count)

    def forget_discovered(self, provider_id: str | None = None) -> None:
        """Drop cached lookups after a model list refresh: the provider's, or all (configured prices stay).

        The registry calls this after every discovery, so a price an upstream publishes (or stops
        publishing) is used from the next request on, and one looked up before discovery is not kept.
        """
        if provider_id is None:
            self._cache.clear()
            return
        for key in [key for key in self._cache if key[0] == provider_id]:
            del self._cache[key]

    def unpriced(self) -> list[tuple[str, str]]:
        """The (provider, model) pairs seen so far that have no price."""
        return sorted(key for key, price in self._cache.items() if price is None)
