"""What a request cost: configured prices win (the top-level ``prices:``, then the provider's own), then
prices the upstream publishes, then genai-prices.

An unknown price is ``None``, never zero: the ledger records the cost as unknown and the admin sees
which models lack a price. Prices are USD per token; each (provider, model) is looked up once per model
list: a discovery refresh of the provider drops its cached lookups.

A price may have its own price for a token class (cache reads and writes, audio and image input and
output: ``usage.TokenCount``); a class it has none for is priced as plain input or output. Reasoning
tokens are output. Where a cost comes from (``CostSource``): ``configured``, or ``catalog`` (a price list:
the upstream's model list or genai-prices); the accounting marks a cost the upstream reported ``upstream``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

from anygate.accounting.usage import TokenCount

if TYPE_CHECKING:
    from genai_prices.types import TieredPrices

log = logging.getLogger("anygate.pricing")
PriceOrigin = Literal["configured", "discovered", "genai-prices"]
CostSource = Literal["upstream", "configured", "catalog"]
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
    "anthropic": "anthropic",
}
MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token; a class price None is the plain input (or output) price."""

    input: float
    output: float
    origin: PriceOrigin = "configured"
    cached_input: float | None = None
    cache_write: float | None = None
    audio_input: float | None = None
    audio_output: float | None = None
    image_input: float | None = None
    image_output: float | None = None

    @property
    def source(self) -> CostSource:
        return "configured" if self.origin == "configured" else "catalog"

    def cost(self, count: TokenCount) -> float:
        if not count.has_priced_classes:
            return count.input * self.input + count.output * self.output
        plain_in = count.input - count.cached_input - count.cache_write - count.audio_input - count.image_input
        plain_out = count.output - count.audio_output - count.image_output
        return (
            plain_in * self.input
            + count.cached_input * _or(self.cached_input, self.input)
            + count.cache_write * _or(self.cache_write, self.input)
            + count.audio_input * _or(self.audio_input, self.input)
            + count.image_input * _or(self.image_input, self.input)
            + plain_out * self.output
            + count.audio_output * _or(self.audio_output, self.output)
            + count.image_output * _or(self.image_output, self.output)
        )


def _or(price: float | None, plain: float) -> float:
    return plain if price is None else price


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
    cache_read = per_token(pricing["input_cache_read"]) if "input_cache_read" in pricing else None
    cache_write = per_token(pricing["input_cache_write"]) if "input_cache_write" in pricing else None
    return Price(prompt, completion, "discovered", cached_input=cache_read, cache_write=cache_write)


def genai_price(provider_type: str | None, model: str) -> Price | None:
    """genai-prices' current price of the model, its classes included; a price in tiers by prompt size
    is taken at its first tier (what a prompt under the first threshold pays)."""
    provider = GENAI_PROVIDERS.get(provider_type or "")
    if provider is None:
        return None
    # Imported here: genai-prices (its client included) and its catalogue hold ~12 MiB, which a gateway
    # whose providers have no public price never needs.
    import genai_prices

    try:
        found = genai_prices.calc_price(genai_prices.Usage(input_tokens=1), model, provider_id=provider)
    except LookupError:
        return None
    table = found.model_price
    return Price(
        per_million(table.input_mtok) or 0.0,
        per_million(table.output_mtok) or 0.0,
        "genai-prices",
        cached_input=per_million(table.cache_read_mtok),
        cache_write=per_million(table.cache_write_mtok),
        audio_input=per_million(table.input_audio_mtok),
        audio_output=per_million(table.output_audio_mtok),
        image_input=per_million(table.input_image_mtok),
        image_output=per_million(table.output_image_mtok),
    )


def per_million(value: Decimal | TieredPrices | None) -> float | None:
    """A genai-prices price per million tokens as USD per token (a tiered one at its base)."""
    if value is None:
        return None
    from genai_prices import types

    base = value.base if isinstance(value, types.TieredPrices) else value
    return float(base) / MILLION


def usd_text(cost: float) -> str:
    """A cost as a plain decimal string (``0.000123``): never an exponent, to the nearest 1e-12 USD."""
    if -1000 < cost < 1000:  # 15 digits at most: the fixed-point form is exact, and a request's cost is here
        return f"{cost:.12f}".rstrip("0").rstrip(".")
    return format(Decimal(repr(round(cost, 12))).normalize(), "f")


def has_catalogue_price(provider_type: str | None) -> bool:
    """Whether genai-prices may price a provider of this type (self-hosted ones have no public price)."""
    return (provider_type or "") in GENAI_PROVIDERS


def warm_up() -> None:
    """Load genai-prices' catalogue (half a second), so the first priced request does not wait for it.

    Run in a thread, once a provider genai-prices may price is configured (``has_catalogue_price``).
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

    def charge(self, provider_id: str, model: str, count: TokenCount) -> tuple[float | None, CostSource | None]:
        """The cost of ``count`` and where its price came from; (None, None) when the price is unknown."""
        price = self.price(provider_id, model)
        return (None, None) if price is None else (price.cost(count), price.source)

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
