"""The quota of a calling key in the three shapes anygate serves: neutral, OpenRouter and LiteLLM.

Pure functions of a ``KeyQuota``: per unit (tokens, USD) the budget that binds the key, and what that
budget's window used; spend windows from the ledger. The three shapes agree: a unit's ``limit``,
``remaining`` and reset time are the same wherever they appear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from anygate.accounting.budgets import LimitSpec
from anygate.accounting.periods import Period, iso_utc, next_reset
from anygate.accounting.reports import Spend

BUDGET_DURATIONS = {"daily": "1d", "weekly": "7d", "monthly": "1mo"}


@dataclass(frozen=True, slots=True)
class Allowance:
    """One unit of a key's quota: the limit of the budget that binds it (None: unlimited), and what was
    used in that budget's window. A unit without a limit is counted in the other unit's window."""

    limit: float | None = None
    used: float = 0.0
    period: Period = "none"
    binds: str = "key"  # whose budget it is: "key" or "user"

    @property
    def remaining(self) -> float | None:
        return None if self.limit is None else self.limit - self.used

    def resets_at(self, now: datetime) -> str | None:
        return iso_utc(next_reset(self.period, now))


@dataclass(frozen=True, slots=True)
class KeyQuota:
    key_id: str
    label: str
    tokens: Allowance = field(default_factory=Allowance)
    usd: Allowance = field(default_factory=Allowance)
    limits: LimitSpec | None = None  # the tightest of the key's and its user's rate limits
    spend: Spend = field(default_factory=Spend)
    byok: Spend = field(default_factory=Spend)
    user_id: str | None = None
    models: tuple[str, ...] | None = None
    expires_at: float | None = None
    is_admin: bool = False


def usd_amount(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def neutral(quota: KeyQuota, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    tokens, usd = quota.tokens, quota.usd
    tokens_used = round(tokens.used)
    return {
        "key": quota.label or quota.key_id,
        "tokens": {
            "limit": None if tokens.limit is None else round(tokens.limit),
            "used": tokens_used,
            "remaining": None if tokens.limit is None else round(tokens.limit) - tokens_used,
            "resets_at": tokens.resets_at(now),
        },
        "cost": {
            "currency": "USD",
            "limit": usd.limit,
            "used": round(usd.used, 6),
            "remaining": usd_amount(usd.remaining),
        },
    }


def openrouter(quota: KeyQuota, now: datetime | None = None) -> dict[str, Any]:
    usd = quota.usd
    rpm = quota.limits.rpm if quota.limits is not None else None
    data: dict[str, Any] = {
        "label": quota.label or quota.key_id,
        "limit": usd.limit,
        "limit_remaining": usd_amount(usd.remaining),
        "limit_reset": usd.period if usd.limit is not None and usd.period != "none" else None,
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
    usd = quota.usd
    limits = quota.limits or LimitSpec()
    budgeted = usd.limit is not None
    info = {
        "key_alias": quota.label or None,
        "key_name": quota.label or quota.key_id,
        "spend": round(usd.used, 6),
        "max_budget": usd.limit,
        "budget_duration": BUDGET_DURATIONS.get(usd.period) if budgeted else None,
        "budget_reset_at": usd.resets_at(now) if budgeted else None,
        "tpm_limit": limits.tpm,
        "rpm_limit": limits.rpm,
        "models": list(quota.models or ()),
        "expires": iso_from_unix(quota.expires_at),
        "blocked": False,
    }
    return {"key": quota.key_id, "info": info}


def iso_from_unix(moment: float | None) -> str | None:
    return None if moment is None else iso_utc(datetime.fromtimestamp(moment, UTC))
