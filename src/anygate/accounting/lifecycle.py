"""Accounting in the app's lifespan: built at startup with its owned background work, settled per request."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from redis import RedisError
from sqlalchemy.exc import SQLAlchemyError

from anygate.accounting.budgets import BudgetSource, scopes_of
from anygate.accounting.limiter_redis import RedisLimiter
from anygate.accounting.limiter_sql import SqlLimiter
from anygate.accounting.pricing import warm_up
from anygate.accounting.service import Accounting
from anygate.accounting.setup import build_accounting
from anygate.auth import Principal

if TYPE_CHECKING:
    from anygate.api.relay import Exchange
    from anygate.api.state import AppState

log = logging.getLogger("anygate.accounting")


async def start_accounting(state: AppState, budget_source: BudgetSource | None = None) -> None:
    """Build the accounting and start its owned background work: the ledger writer, the quota poller.

    ``budget_source`` maps a caller to its budgets; by default the budgets the store puts on Principals.
    """
    from anygate.quota.poller import poll_upstream_quotas

    engine = state.require_store().db.engine

    def is_byok(principal: Principal, provider_id: str) -> bool:
        return state.caller_key(principal, provider_id) is not None

    state.accounting = build_accounting(state.settings, state.registry, engine, budget_source or scopes_of, is_byok)
    # The tokenizer's vocabularies load in a thread; the process is not ready until they have.
    state.readiness_probes["tokenizer"] = state.accounting.tokenizer.check_ready
    state.spawn(state.accounting.tokenizer.load(), "tokenizer")
    limiter = state.accounting.enforcer.limiter
    if isinstance(limiter, RedisLimiter):
        state.readiness_probes.setdefault("redis", limiter.ping)
    if isinstance(limiter, SqlLimiter):
        state.spawn(purge_forever(limiter), "limiter-purge")
    if state.accounting.ledger is not None:
        state.spawn(state.accounting.ledger.run(), "usage-ledger")
    state.spawn(state.accounting.retry_unsettled_forever(), "unsettled-retries")
    state.spawn(poll_upstream_quotas(state), "upstream-quota")
    state.spawn(asyncio.to_thread(warm_up), "price-catalogue")


async def purge_forever(limiter: SqlLimiter, interval: float = 3600.0) -> None:
    """Drop the SQL limiter's counters of windows that have ended, once an hour."""
    while True:
        try:
            await limiter.purge_expired()
        except SQLAlchemyError:
            log.exception("could not purge expired limiter counters")
        await asyncio.sleep(interval)


async def settle_exchange(accounting: Accounting, exchange: Exchange) -> None:
    """Record and settle a finished request; a failing backend is logged, never the client's problem
    (its row is recorded first, and a settlement the limiter refuses is retried in the background)."""
    try:
        await accounting.after(exchange)
    except (SQLAlchemyError, RedisError, OSError):
        log.exception("accounting failed for a request", extra={"fields": {"request_id": exchange.request_id}})
