"""Build the accounting of one app from its Settings: limiter backend, ledger, price book."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from anygate.accounting.alerts import Alerts
from anygate.accounting.budgets import BudgetSource, scopes_of
from anygate.accounting.enforcer import Enforcer
from anygate.accounting.estimate import Tokenizer
from anygate.accounting.export import Exporter
from anygate.accounting.ledger import Ledger
from anygate.accounting.limiter import Limiter, MemoryLimiter
from anygate.accounting.limiter_sql import SqlLimiter
from anygate.accounting.pricing import MILLION, Price, PriceBook
from anygate.accounting.service import Accounting, BudgetObserver, ByokCheck, never_byok
from anygate.accounting.stream_usage import StreamUsagePolicy
from anygate.accounting.windows import LedgerWindow, Seeder, WindowCount, engine_seeder
from anygate.registry import ProviderRegistry
from anygate.settings import Settings
from anygate.transport import Transport


def configured_prices(settings: Settings) -> dict[tuple[str, str], Price]:
    prices: dict[tuple[str, str], Price] = {}
    for name, price in settings.prices.items():
        provider, _, model = name.partition("/")
        prices[(provider, model or "*")] = Price(
            price.input / MILLION,
            price.output / MILLION,
            "configured",
            cached_input=per_token(price.cached_input),
            cache_write=per_token(price.cache_write),
            audio_input=per_token(price.audio_input),
            audio_output=per_token(price.audio_output),
            image_input=per_token(price.image_input),
            image_output=per_token(price.image_output),
        )
    return prices


def per_token(per_million: float | None) -> float | None:
    return None if per_million is None else per_million / MILLION


def price_book(settings: Settings, registry: ProviderRegistry) -> PriceBook:
    def discovered(provider_id: str, model: str) -> dict[str, object] | None:
        runtime = registry.find(provider_id)
        return runtime.model_entries.get(model) if runtime is not None else None

    def provider_type(provider_id: str) -> str | None:
        runtime = registry.find(provider_id)
        return runtime.config.type if runtime is not None else None

    def provider_prices(provider_id: str) -> dict[str, Price]:
        runtime = registry.find(provider_id)
        prices = runtime.config.prices if runtime is not None else {}
        return {model: Price(p.input / MILLION, p.output / MILLION) for model, p in prices.items()}

    book = PriceBook(configured_prices(settings), discovered, provider_type, provider_prices)
    registry.discovery_listeners.append(book.forget_discovered)
    return book


def make_limiter(settings: Settings, engine: AsyncEngine, ledger: Ledger) -> Limiter:
    backend = settings.limiter_backend
    if backend == "redis":
        if not settings.redis_url:
            raise ValueError("limiter 'redis' needs ANYGATE_REDIS_URL")
        from anygate.accounting.limiter_redis import RedisLimiter  # imports Redis's client (~16 MB): only here

        return RedisLimiter.from_url(settings.redis_url, seeder=flushed_ledger_seeder(engine, ledger))
    if backend == "sql":
        return SqlLimiter(engine)
    return MemoryLimiter(seeder=flushed_ledger_seeder(engine, ledger))


def flushed_ledger_seeder(engine: AsyncEngine, ledger: Ledger) -> Seeder:
    """The ledger's buffer is written first, so the count holds every request of this process until now
    (those whose settlement failed included: their rows are recorded before they settle)."""
    read = engine_seeder(engine)

    async def seed(window: LedgerWindow) -> WindowCount:
        await ledger.flush()
        return await read(window)

    return seed


def build_accounting(
    settings: Settings,
    registry: ProviderRegistry,
    engine: AsyncEngine,
    budget_source: BudgetSource = scopes_of,
    is_byok: ByokCheck = never_byok,
    export: Exporter | None = None,
    transport: Transport | None = None,
    budget_observer: BudgetObserver | None = None,
) -> Accounting:
    """Accounting on the store's engine: its tables come from the store's migrations (0002_accounting);
    ``export``: where each settled request's record goes besides the ledger; ``transport``: what budget
    alerts are sent through (None: no alerts); ``budget_observer``: told what each budget has left when a
    request settles (the metrics' gauges)."""
    ledger = Ledger(engine, interval=settings.ledger_interval)
    limiter = make_limiter(settings, engine, ledger)
    enforcer = Enforcer(limiter)
    if settings.limiter_backend == "redis":
        from anygate.accounting.limiter_redis import RedisLimiter  # imported by make_limiter already

        if isinstance(limiter, RedisLimiter):  # a bucket rebuilt from the ledger counts what waits to settle
            limiter.seeded_listeners.append(enforcer.unsettled.forget_bucket)
            limiter.unreleased_listeners.append(enforcer.unsettled.release_later)
    return Accounting(
        enforcer,
        ledger,
        price_book(settings, registry),
        budget_source,
        is_byok,
        refuse_unpriced=not settings.allow_unpriced_under_usd_budget,
        stream_usage=StreamUsagePolicy(registry.find),
        tokenizer=Tokenizer(remembered_bytes=settings.remembered_prompt_bytes),
        export=export,
        budget_observer=budget_observer,
        alerts=None if transport is None else Alerts(transport, engine, limiter, settings.alerts),
    )
