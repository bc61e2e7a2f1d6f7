"""Start-up: every service of one app built in order into one ``AppState``, then its background work started.

Building opens the store (migrating it), fills the caches from it (keys, callers' keys, stored
providers) and wires the request path: planner, dispatch loop, accounting. Starting begins the owned
background work: model discovery (waited for briefly, so the first requests see most lists), health
checks, the store's revision poll (and Redis notices), the ledger writer, retries of unsettled
reservations, the limiter's purge, the telemetry export, upstream quota polls and the price catalogue's
warm-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from anygate.accounting.budgets import BudgetSource, scopes_of
from anygate.accounting.export import Exporter, build_exporter
from anygate.accounting.limiter_sql import SqlLimiter
from anygate.accounting.pricing import has_catalogue_price, warm_up
from anygate.accounting.setup import build_accounting
from anygate.api.state import AppState
from anygate.app.store_sync import StoreSync
from anygate.auth import KeyRing, hash_key, stored_admin_digest
from anygate.background import Background
from anygate.caller_keys import CallerKeys
from anygate.config_checks import routing_warnings
from anygate.dispatch import Dispatcher, DispatchPolicy
from anygate.health_checks import HealthChecks
from anygate.planning import Planner
from anygate.quota.poller import QuotaPoller
from anygate.readiness import Readiness
from anygate.registry import ProviderRegistry
from anygate.routing import Deployment, HealthBook
from anygate.settings import Settings
from anygate.signin.issuer import IssuerClient
from anygate.signin.service import SignIn
from anygate.store.store import Store, open_store
from anygate.telemetry import Metrics
from anygate.tracing import Tracing
from anygate.transport import Transport

if TYPE_CHECKING:
    from anygate.store.notify import ChangeNotifier

log = logging.getLogger("anygate.startup")


async def build_state(
    settings: Settings, transport: Transport, budget_source: BudgetSource | None
) -> tuple[AppState, StoreSync]:
    """Every service of the app, the store open and the caches filled from it, and what keeps those caches
    fresh. ``budget_source`` maps a caller to its budgets (default: the budgets the store puts on keys)."""
    admin_digest = hash_key(settings.admin_key.get_secret_value()) if settings.admin_key else None
    keyring = KeyRing(admin_digest or stored_admin_digest(settings.data_dir), no_auth=settings.no_auth)
    metrics = Metrics()
    registry = ProviderRegistry(settings, transport)
    registry.listen_to_membership(metrics.track_providers)
    caller_keys = CallerKeys()
    background = Background()
    readiness = Readiness()
    store = await open_store(settings)
    notifier = change_notifier(settings)
    store_sync = StoreSync(store, keyring, caller_keys, registry, background, notifier)
    exporter = telemetry_export(settings, transport, metrics)
    accounting = build_accounting(
        settings,
        registry,
        store.db.engine,
        budget_source or scopes_of,
        caller_keys.has_key,
        exporter,
        transport,
        budget_observer=metrics.observe_budget_left,
    )
    store_sync.alerts = accounting.alerts
    await store_sync.refresh()
    readiness.add("store", store.db.ping)
    readiness.add("secrets", store_sync.check_secrets)
    if settings.limiter_backend == "redis":
        from anygate.accounting.limiter_redis import RedisLimiter  # imported with the limiter already

        if isinstance(accounting.enforcer.limiter, RedisLimiter):
            readiness.add("redis", accounting.enforcer.limiter.ping)
    health = HealthBook()

    def rounds_of(deployment: Deployment) -> int:
        return 1 + registry.get(deployment.provider_id).config.max_retries

    policy = DispatchPolicy.from_settings(settings.routing)
    state = AppState(
        settings=settings,
        transport=transport,
        registry=registry,
        keyring=keyring,
        caller_keys=caller_keys,
        metrics=metrics,
        health=health,
        health_checks=HealthChecks(registry, health, metrics, settings.routing.health_check_interval),
        planner=Planner(registry, settings.fallbacks, caller_keys),
        dispatcher=Dispatcher(health, policy, rounds_of, on_failure=metrics.count_upstream_failure),
        accounting=accounting,
        store=store,
        store_watch=store_sync,
        readiness=readiness,
        background=background,
        tracing=Tracing.start(settings.otel) if settings.otel.enabled else None,
        signin=sign_in(settings, transport, store),
    )
    return state, store_sync


def sign_in(settings: Settings, transport: Transport, store: Store) -> SignIn | None:
    """Console sign-in with the configured OpenID issuer (None: not configured)."""
    if settings.oidc is None:
        return None
    return SignIn(settings.oidc, IssuerClient(settings.oidc, transport), store.signins, store.box)


async def start_background(state: AppState, store_sync: StoreSync) -> None:
    """Start the app's owned background work (see the module's docstring)."""
    settings, background, accounting = state.settings, state.background, state.accounting
    discovery = await state.registry.discover_at_start()
    background.adopt(discovery)
    background.spawn(warn_after_discovery(state, discovery), "configuration-checks")
    background.spawn(state.registry.refresh_forever(settings.discovery_interval), "model-discovery")
    if settings.routing.health_check_interval > 0:
        background.spawn(state.health_checks.run(settings.routing.health_check_interval), "health-checks")
    background.spawn(store_sync.poll_forever(settings.store_poll_interval), "store-sync")
    if store_sync.notifier is not None:
        background.spawn(store_sync.notifier.listen_forever(store_sync.refresh_safely), "store-notify")
    if isinstance(accounting.enforcer.limiter, SqlLimiter):
        background.spawn(purge_forever(accounting.enforcer.limiter), "limiter-purge")
    background.spawn(accounting.ledger.run(), "usage-ledger")
    if accounting.export is not None:
        background.spawn(accounting.export.run(), "telemetry-export")
    background.spawn(accounting.retry_unsettled_forever(), "unsettled-retries")
    if accounting.alerts is not None:
        background.spawn(accounting.alerts.run(), "budget-alerts")
    poller = QuotaPoller(settings, state.registry, state.transport, state.metrics, state.store.db.engine)
    background.spawn(poller.run(), "upstream-quota")
    state.registry.listen_to_membership(price_catalogue_warm_up(state))


def price_catalogue_warm_up(state: AppState) -> Callable[[Iterable[str]], None]:
    """A membership listener that loads genai-prices' catalogue in a thread the first time a provider it may
    price is there (at start-up, or added at runtime); a gateway of self-hosted upstreams never loads it."""
    started = False

    def on_membership(provider_ids: Iterable[str]) -> None:
        nonlocal started
        if started:
            return
        types = (runtime.config.type for runtime in map(state.registry.find, provider_ids) if runtime is not None)
        if any(map(has_catalogue_price, types)):
            started = True
            state.background.spawn(asyncio.to_thread(warm_up), "price-catalogue")

    return on_membership


async def warn_after_discovery(state: AppState, discovery: asyncio.Task[None]) -> None:
    """Once the first discovery is done, warn once about each alias or fallback naming a model no provider
    lists (``config_checks``)."""
    await asyncio.wait({discovery})
    settings = state.settings
    for warning in routing_warnings(state.registry.index, settings.aliases, settings.fallbacks):
        log.warning("configuration: %s", warning)


def telemetry_export(settings: Settings, transport: Transport, metrics: Metrics) -> Exporter | None:
    """The per-generation export the settings ask for (None: none); its HTTP sink goes through the
    environment's proxy for its URL, like the other outgoing requests."""
    if settings.export is None:
        return None
    environment = settings.proxy_environment()
    http = settings.export.http
    proxy = environment.for_url(http.url) if environment is not None and http is not None else None
    return build_exporter(settings.export, transport, metrics.count_export, proxy)


def change_notifier(settings: Settings) -> ChangeNotifier | None:
    """With Redis, the other workers hear of a store change at once; without, Redis's client is not imported."""
    if not settings.redis_url:
        return None
    from anygate.store.notify import ChangeNotifier

    return ChangeNotifier(settings.redis_url, settings.resolved_database_url)


async def purge_forever(limiter: SqlLimiter, interval: float = 3600.0) -> None:
    """Drop the SQL limiter's counters of windows that have ended, once an hour."""
    while True:
        try:
            await limiter.purge_expired()
        except SQLAlchemyError:
            log.exception("could not purge expired limiter counters")
        await asyncio.sleep(interval)
