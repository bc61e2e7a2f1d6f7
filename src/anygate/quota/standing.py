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

from anygate.accounting.budgets import Scope, budget_specs, limit_spec
from anygate.accounting.enforcer import budget_bucket
from anygate.accounting.periods import Period, rolling_reset, slot_width
from anygate.accounting.reports import UsageFilter, free_model_requests, last_request_at, spend, spend_by_model
from anygate.accounting.windows import ScopeKind, ledger_window, window_usage
from anygate.auth import Budget, Limits, Principal
from anygate.quota.litellm import KeyFacts, UserFacts
from anygate.quota.shapes import Allowance, BudgetEntry, BudgetLayer, KeyQuota, resets_at
from anygate.store.families import Lineage
from anygate.store.keys import ROTATION_GRACE
from anygate.store.records import UserRecord

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from anygate.accounting.ledger import Ledger
    from anygate.accounting.service import Accounting

Unit = Literal["tokens", "usd"]
LAYER_ORDER = {"user": 0, "team": 1, "key": 2}


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
    tokens = least_left(await budgets_of(accounting, ledger.engine, scopes, "tokens", now))
    usd_budgets = await budgets_of(accounting, ledger.engine, scopes, "usd", now)
    usd = least_left(usd_budgets)
    window = tokens or usd or Binding(Allowance(), "key", principal.key_id)
    if tokens is None:
        tokens = await unlimited(ledger.engine, window, "tokens", now)
    if usd is None:
        usd = await unlimited(ledger.engine, window, "usd", now)
    paid, byok = await spend(ledger.engine, principal.key_id, now)
    free_requests = await free_model_requests(ledger.engine, principal.key_id, now)
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
        usd_budgets=tuple(openrouter_order(usd_budgets)),
        free_model_requests_today=free_requests,
        budgets=await every_budget(accounting, ledger.engine, scopes, now),
    )


async def budgets_of(
    accounting: Accounting, engine: AsyncEngine, scopes: Sequence[Scope], unit: Unit, now: datetime
) -> list[Binding]:
    """Each budget limiting ``unit`` (the key's, then its user's), with what its window used."""
    found: list[Binding] = []
    for scope in scopes:
        for budget in scope.all_budgets:
            limit = budget.tokens if unit == "tokens" else budget.usd
            if limit is None:
                continue
            used = await used_in(accounting, engine, scope, budget, unit, now)
            reset = await rolling_reset_of(accounting, scope, budget, now)
            allowance = Allowance(limit, used, budget.period, scope.kind, reset)
            found.append(Binding(allowance, scope.kind, scope.id))
    return found


async def every_budget(
    accounting: Accounting, engine: AsyncEngine, scopes: Sequence[Scope], now: datetime
) -> tuple[BudgetEntry, ...]:
    """Every budget the key counts against (its own, its ancestors', its user's, its team's), with use."""
    entries = []
    for scope in scopes:
        for budget in scope.all_budgets:
            counted = await accounting.enforcer.limiter.usage(budget_bucket(scope, budget, now))
            units = {"tokens": budget.tokens, "usd": budget.usd, "requests": budget.requests}
            used: dict[str, float] = {}
            for unit, limit in units.items():
                if limit is not None:
                    used[unit] = (
                        counted[unit] if unit in counted else await window_used(engine, scope, budget, unit, now)
                    )
            reset = await rolling_reset_of(accounting, scope, budget, now)
            entries.append(BudgetEntry(scope.kind, scope.id, budget.period, budget.mode, units, used, reset))
    return tuple(entries)


async def rolling_reset_of(accounting: Accounting, scope: Scope, budget: Budget, now: datetime) -> float | None:
    """When a rolling window's oldest counted usage leaves it, its headroom growing (None: not rolling, or
    nothing counted: its period's next slot boundary stands)."""
    width = slot_width(budget.period)
    if width is None:
        return None
    oldest = await accounting.enforcer.limiter.oldest_slot(budget_bucket(scope, budget, now))
    return None if oldest is None else rolling_reset(width, oldest)


async def window_used(engine: AsyncEngine, scope: Scope, budget: Budget, unit: str, now: datetime) -> float:
    async with engine.connect() as connection:
        return (await window_usage(connection, ledger_window(scope.kind, scope.id, budget.period, now)))[unit]


def least_left(budgets: Sequence[Binding]) -> Binding | None:
    """The budget with the least left: the one that binds (the key's before its user's on a tie)."""
    return min(budgets, key=lambda budget: (budget.allowance.limit or 0.0) - budget.allowance.used, default=None)


def openrouter_order(budgets: Sequence[Binding]) -> list[BudgetLayer]:
    """USD budgets as OpenRouter lists them: a member's (the user's) before the key's own."""
    layers = [
        BudgetLayer(
            b.kind, b.scope_id, b.allowance.limit or 0.0, b.allowance.used, b.allowance.period, b.allowance.reset
        )
        for b in budgets
    ]
    return sorted(layers, key=lambda layer: LAYER_ORDER.get(layer.kind, len(LAYER_ORDER)))


async def used_in(
    accounting: Accounting, engine: AsyncEngine, scope: Scope, budget: Budget, unit: Unit, now: datetime
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


def tightest(scopes: Sequence[Scope]) -> Limits | None:
    """The lowest of each rate limit the key and its user have."""
    specs = [s.limits for s in scopes if s.limits is not None]
    if not specs:
        return None

    def lowest(values: list[int | None]) -> int | None:
        given = [v for v in values if v is not None]
        return min(given) if given else None

    return Limits(
        lowest([s.rpm for s in specs]), lowest([s.tpm for s in specs]), lowest([s.concurrency for s in specs])
    )


async def user_facts(
    accounting: Accounting, ledger: Ledger, user: UserRecord, now: datetime | None = None
) -> UserFacts:
    """A user's USD allowance (its budget's window, else all time), limits and spend per model."""
    now = now or datetime.now(UTC)
    await ledger.flush()
    scope = Scope("user", user.id, budget_specs(user.budget), limit_spec(user.limits))
    usd = least_left(await budgets_of(accounting, ledger.engine, [scope], "usd", now))
    if usd is None:
        period = scope.budget.period if scope.budget is not None else "none"
        usd = await unlimited(ledger.engine, Binding(Allowance(period=period), "user", user.id), "usd", now)
    by_model = await spend_by_model(ledger.engine, UsageFilter(user_id=user.id))
    return UserFacts(
        id=user.id,
        name=user.name,
        usd=usd.allowance,
        total_spend=sum(by_model.values()),
        limits=scope.limits,
        created_at=user.created_at,
        model_spend=by_model,
    )


async def key_facts(ledger: Ledger, key_id: str, lineage: Lineage | None, now: datetime | None = None) -> KeyFacts:
    """What the store and the ledger know of a key beyond its quota (``lineage``, the key and the keys above
    it, None: a key the store does not hold, such as the admin key)."""
    by_model = await spend_by_model(ledger.engine, UsageFilter(key_id=key_id))
    last_active = await last_request_at(ledger.engine, key_id)
    if lineage is None:
        return KeyFacts(last_active=last_active, model_spend=by_model)
    record = lineage.key
    rotated_at = None
    if record.previous_valid_until is not None:
        rotated_at = record.previous_valid_until - ROTATION_GRACE
    return KeyFacts(
        key_prefix=record.key_prefix,
        status=lineage.status(now or datetime.now(UTC)),
        created_at=record.created_at,
        created_by=record.created_by,
        rotated_at=rotated_at,
        last_active=last_active,
        model_spend=by_model,
    )


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """One budget of a holder and what its current window used, in each unit it limits."""

    budget: Budget
    used: dict[str, float]
    reset: float | None = None  # a rolling window's: when its oldest usage leaves it

    def resets_at(self, now: datetime) -> str | None:
        return resets_at(self.budget.period, self.reset, now)


async def holder_budgets(
    accounting: Accounting, ledger: Ledger, scope: Scope, now: datetime | None = None
) -> list[BudgetUse]:
    """Each of a holder's budgets with what its current window used (the limiter's count, else the ledger's)."""
    now = now or datetime.now(UTC)
    await ledger.flush()
    found = []
    for budget in scope.all_budgets:
        counted = await accounting.enforcer.limiter.usage(budget_bucket(scope, budget, now))
        async with ledger.engine.connect() as connection:
            recorded = await window_usage(connection, ledger_window(scope.kind, scope.id, budget.period, now))
        # The limiter counts only the units the budget limits (a seeded bucket holds the others' start).
        limited = {"tokens": budget.tokens, "usd": budget.usd, "requests": budget.requests}
        used = {u: counted[u] if limited.get(u) is not None and u in counted else recorded[u] for u in recorded}
        found.append(BudgetUse(budget, used, await rolling_reset_of(accounting, scope, budget, now)))
    return found


async def all_time_use(ledger: Ledger, kind: ScopeKind, scope_id: str) -> dict[str, float]:
    """What a holder used since the ledger began (tokens, USD, answered requests)."""
    await ledger.flush()
    async with ledger.engine.connect() as connection:
        return await window_usage(connection, ledger_window(kind, scope_id, "none", datetime.now(UTC)))
