"""Where a calling key stands: per unit, the budget that binds it and what that budget's window used.

A key may count against two budgets, its own and its user's. For each unit (tokens, USD) the one that
binds is the one with the least left; a unit neither budget limits is counted in the window of the
budget that binds the other unit (both units then describe the same period), or over all time when
there is no budget at all. What a budget's window used comes from the limiter (the counters the
budget is enforced by), and from the usage ledger where the limiter has no counter for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from anygate.accounting.budgets import BudgetSpec, LimitSpec, Scope
from anygate.accounting.enforcer import budget_bucket
from anygate.accounting.periods import Period
from anygate.accounting.reports import spend
from anygate.accounting.windows import ScopeKind, ledger_window, window_usage
from anygate.auth import Principal
from anygate.quota.shapes import Allowance, KeyQuota

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from anygate.accounting.ledger import Ledger
    from anygate.accounting.service import Accounting

Unit = Literal["tokens", "usd"]


@dataclass(frozen=True, slots=True)
class Binding:
    """A unit's allowance and the window it was counted in."""

    allowance: Allowance
    kind: ScopeKind
    scope_id: str


async def key_quota(
    accounting: Accounting, ledger: Ledger, principal: Principal, now: datetime | None = None
) -> KeyQuota:
    now = now or datetime.now(UTC)
    await ledger.flush()
    scopes = accounting.budget_source(principal)
    tokens = await binding(accounting, ledger.engine, scopes, "tokens", now)
    usd = await binding(accounting, ledger.engine, scopes, "usd", now)
    window = tokens or usd or Binding(Allowance(), "key", principal.key_id)
    if tokens is None:
        tokens = await unlimited(ledger.engine, window, "tokens", now)
    if usd is None:
        usd = await unlimited(ledger.engine, window, "usd", now)
    paid, byok = await spend(ledger.engine, principal.key_id, now)
    expires_at = getattr(principal, "expires_at", None)
    return KeyQuota(
        key_id=principal.key_id,
        label=principal.label,
        tokens=tokens.allowance,
        usd=usd.allowance,
        limits=tightest(scopes),
        spend=paid,
        byok=byok,
        user_id=principal.user_id,
        models=principal.models,
        expires_at=expires_at if isinstance(expires_at, int | float) else None,
        is_admin=principal.is_admin,
    )


async def binding(
    accounting: Accounting, engine: AsyncEngine, scopes: Sequence[Scope], unit: Unit, now: datetime
) -> Binding | None:
    """The budget limiting ``unit`` with the least left (the key's before its user's on a tie)."""
    found: Binding | None = None
    least = 0.0
    for scope in scopes:
        budget = scope.budget
        limit = None if budget is None else (budget.tokens if unit == "tokens" else budget.usd)
        if budget is None or limit is None:
            continue
        used = await used_in(accounting, engine, scope, budget, unit, now)
        if found is None or limit - used < least:
            found = Binding(Allowance(limit, used, budget.period, scope.kind), scope.kind, scope.id)
            least = limit - used
    return found


async def used_in(
    accounting: Accounting, engine: AsyncEngine, scope: Scope, budget: BudgetSpec, unit: Unit, now: datetime
) -> float:
    counted = await accounting.enforcer.limiter.usage(budget_bucket(scope, budget, now))
    if unit in counted:
        return counted[unit]
    return await ledger_used(engine, scope.kind, scope.id, budget.period, unit, now)


async def unlimited(engine: AsyncEngine, window: Binding, unit: Unit, now: datetime) -> Binding:
    period = window.allowance.period
    used = await ledger_used(engine, window.kind, window.scope_id, period, unit, now)
    return Binding(Allowance(None, used, period, window.kind), window.kind, window.scope_id)


async def ledger_used(
    engine: AsyncEngine, kind: ScopeKind, scope_id: str, period: Period, unit: Unit, now: datetime
) -> float:
    async with engine.connect() as connection:
        return (await window_usage(connection, ledger_window(kind, scope_id, period, now)))[unit]


def tightest(scopes: Sequence[Scope]) -> LimitSpec | None:
    """The lowest of each rate limit the key and its user have."""
    specs = [s.limits for s in scopes if s.limits is not None]
    if not specs:
        return None

    def lowest(values: list[int | None]) -> int | None:
        given = [v for v in values if v is not None]
        return min(given) if given else None

    return LimitSpec(
        lowest([s.rpm for s in specs]), lowest([s.tpm for s in specs]), lowest([s.concurrency for s in specs])
    )
