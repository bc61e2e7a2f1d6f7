"""The quota of a calling key in the three shapes anygate serves: neutral, OpenRouter and LiteLLM.

Pure functions of a ``KeyQuota`` (the key's budget, what its window used, spend from the ledger).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from anygate.accounting.budgets import BudgetSpec, LimitSpec
from anygate.accounting.periods import iso_utc, next_reset

BUDGET_DURATIONS = {"daily": "1d", "weekly": "7d", "monthly": "1mo"}


@dataclass(frozen=True, slots=True)
class Spend:
    """USD from the ledger: all time and in the current UTC day, ISO week and calendar month."""

    total: float = 0.0
    daily: float = 0.0
    weekly: float = 0.0
    monthly: float = 0.0


@dataclass(frozen=True, slots=True)
class KeyQuota:
    key_id: str
    label: str
    budget: BudgetSpec | None
    limits: LimitSpec | None
    window_tokens: float  # used in the budget's current window (all time when no budget)
    window_usd: float
    spend: Spend = field(default_factory=Spend)
    byok: Spend = field(default_factory=Spend)
    user_id: str | None = None
    models: tuple[str, ...] | None = None
    expires_at: float | None = None
    is_admin: bool = False


def remaining(limit: float | None, used: float) -> float | None:
    return None if limit is None else limit - used


def resets_at(quota: KeyQuota, now: datetime) -> str | None:
    return iso_utc(next_reset(quota.budget.period, now)) if quota.budget is not None else None


def neutral(quota: KeyQuota, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    budget = quota.budget or BudgetSpec()
    tokens_used = round(quota.window_tokens)
    return {
        "key": quota.label or quota.key_id,
        "tokens": {
            "limit": budget.tokens,
            "used": tokens_used,
            "remaining": None if budget.tokens is None else budget.tokens - tokens_used,
            "resets_at": resets_at(quota, now),
        },
        "cost": {
            "currency": "USD",
            "limit": budget.usd,
            "used": round(quota.window_usd, 6),
            "remaining": None if budget.usd is None else round(budget.usd - quota.window_usd, 6),
        },
    }


def openrouter(quota: KeyQuota, now: datetime | None = None) -> dict[str, Any]:
    budget = quota.budget or BudgetSpec()
    period = budget.period if budget.period != "none" else None
    rpm = quota.limits.rpm if quota.limits is not None else None
    data: dict[str, Any] = {
        "label": quota.label or quota.key_id,
        "limit": budget.usd,
        "limit_remaining": None if budget.usd is None else round(budget.usd - quota.window_usd, 6),
        "limit_reset": period,
        "usage": round(quota.spend.total, 6),
        "usage_daily": round(quota.spend.daily, 6),
        "usage_weekly": round(quota.spend.weekly, 6),
        "usage_monthly": round(quota.spend.monthly, 6),
        "byok_usage": round(quota.byok.total, 6),
        "byok_usage_daily": round(quota.byok.daily, 6),
        "byok_usage_weekly": round(quota.byok.weekly, 6),
        "byok_usage_monthly": round(quota.byok.monthly, 6),
        "include_byok_in_limit": False,
        "is_free_tier": False,
        "is_management_key": quota.is_admin,
        "is_provisioning_key": False,
        "creator_user_id": quota.user_id,
        "expires_at": iso_from_unix(quota.expires_at),
        "rate_limit": {
            "requests": rpm if rpm is not None else -1,
            "interval": "1m",
            "note": "requests per minute for this key; -1 is unlimited",
        },
    }
    return {"data": data}


def litellm(quota: KeyQuota, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    budget = quota.budget or BudgetSpec()
    limits = quota.limits or LimitSpec()
    info = {
        "key_alias": quota.label or None,
        "key_name": quota.label or quota.key_id,
        "spend": round(quota.window_usd if quota.budget is not None else quota.spend.total, 6),
        "max_budget": budget.usd,
        "budget_duration": BUDGET_DURATIONS.get(budget.period),
        "budget_reset_at": resets_at(quota, now),
        "tpm_limit": limits.tpm,
        "rpm_limit": limits.rpm,
        "models": list(quota.models or ()),
        "expires": iso_from_unix(quota.expires_at),
        "blocked": False,
    }
    return {"key": quota.key_id, "info": info}


def iso_from_unix(moment: float | None) -> str | None:
    return None if moment is None else iso_utc(datetime.fromtimestamp(moment, UTC))
