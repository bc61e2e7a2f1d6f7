"""The quota of a calling key in the shapes anygate serves: neutral and OpenRouter (LiteLLM's is in
``quota.litellm``).

Pure functions of a ``KeyQuota``: per unit (tokens, USD) the budget that binds the key, and what that
budget's window used; spend windows from the ledger. The shapes agree: a unit's ``limit``, ``remaining``
and reset time are the same wherever they appear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from anygate.accounting.periods import Period, iso_utc, next_reset
from anygate.accounting.reports import Spend
from anygate.auth import Limits

# OpenRouter's name for each layer of budget a key counts against, in the order its enforcement checks
# them: a member's guardrail (anygate: the key's user), a workspace budget (a team), the key's own limit.
OPENROUTER_SCOPES = {"user": "member", "team": "workspace", "key": "key_limit"}
# OpenRouter's free-model request counts; anygate sets no such ceiling: -1, as OpenRouter's rate_limit does.
UNLIMITED = -1
# anygate does not restrict where a request may be served: OpenRouter's name for no regional restriction.
DATA_REGIONS = ("global",)


@dataclass(frozen=True, slots=True)
class Allowance:
    """One unit of a key's quota: the limit of the budget that binds it (None: unlimited), and what was
    used in that budget's window. A unit without a limit is counted in the other unit's window."""

    limit: float | None = None
    used: float = 0.0
    period: Period = "none"
    binds: str = "key"  # whose budget it is: "key" or "user"
    reset: float | None = None  # a rolling window's: when its oldest usage leaves it (UNIX time)

    @property
    def remaining(self) -> float | None:
        return None if self.limit is None else self.limit - self.used

    def resets_at(self, now: datetime) -> str | None:
        return resets_at(self.period, self.reset, now)


def resets_at(period: Period, reset: float | None, now: datetime) -> str | None:
    """When a window's headroom next grows: ``reset`` when known (a rolling window's oldest usage
    leaving it), else when its period says."""
    if reset is not None:
        return iso_utc(datetime.fromtimestamp(reset, UTC))
    return iso_utc(next_reset(period, now))


@dataclass(frozen=True, slots=True)
class BudgetLayer:
    """One USD budget a key counts against (its own, its user's), with what its current window used."""

    kind: str  # "key" | "user"
    owner_id: str
    limit: float
    used: float
    period: Period = "none"
    reset: float | None = None

    @property
    def remaining(self) -> float:
        return self.limit - self.used


@dataclass(frozen=True, slots=True)
class BudgetEntry:
    """One budget a key counts against, for the neutral shape's ``budgets``: whose, its window, its limit
    in each unit (None: not limited) and what the window used in each limited unit."""

    kind: str  # "key" | "user" | "team"
    owner_id: str
    window: Period
    mode: str
    limits: dict[str, float | None]
    used: dict[str, float]
    reset: float | None = None

    def view(self, now: datetime) -> dict[str, Any]:
        def unit(name: str) -> dict[str, Any] | None:
            limit = self.limits.get(name)
            if limit is None:
                return None
            used = self.used.get(name, 0.0)
            if name == "usd":
                return {"limit": limit, "used": round(used, 6), "remaining": round(limit - used, 6)}
            return {"limit": round(limit), "used": round(used), "remaining": round(limit) - round(used)}

        return {
            "scope": self.kind,
            "id": self.owner_id,
            "window": self.window,
            "mode": self.mode,
            "resets_at": resets_at(self.window, self.reset, now),
            "tokens": unit("tokens"),
            "cost": unit("usd"),
            "requests": unit("requests"),
        }


@dataclass(frozen=True, slots=True)
class KeyQuota:
    key_id: str
    label: str
    tokens: Allowance = field(default_factory=Allowance)
    usd: Allowance = field(default_factory=Allowance)
    limits: Limits | None = None  # the tightest of the key's and its user's rate limits
    spend: Spend = field(default_factory=Spend)
    byok: Spend = field(default_factory=Spend)
    user_id: str | None = None
    models: tuple[str, ...] | None = None
    expires_at: float | None = None
    is_admin: bool = False
    # Every USD budget the key counts against, in OpenRouter's order (see ``OPENROUTER_SCOPES``).
    usd_budgets: tuple[BudgetLayer, ...] = ()
    free_model_requests_today: int = 0  # requests to ``:free`` model variants this UTC day
    budgets: tuple[BudgetEntry, ...] = ()  # every budget, for the neutral shape's ``budgets``


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
        # Additive (readers of the two members above are unaffected): every budget the key counts against.
        "budgets": [entry.view(now) for entry in quota.budgets],
    }


def openrouter(quota: KeyQuota, now: datetime | None = None) -> dict[str, Any]:
    """OpenRouter's ``/key``. ``limit``, ``limit_remaining`` and ``limit_reset`` describe the budget that binds
    the key (OpenRouter: the key's own limit), so tools that read only these see what is left."""
    now = now or datetime.now(UTC)
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
            "requests": rpm if rpm is not None else UNLIMITED,
            "interval": "1m",
            "note": "requests per minute for this key; -1 is unlimited",
        },
        "allowed_data_regions": list(DATA_REGIONS),
        "budgets": [openrouter_budget(layer, now) for layer in quota.usd_budgets],
        "effective_budget": effective_budget(quota.usd_budgets, now),
        "free_model_daily_requests": {
            "limit": UNLIMITED,
            "remaining": UNLIMITED,
            "used": quota.free_model_requests_today,
        },
        "organization_id": None,
        "workspace_id": None,
    }
    return {"data": data}


def openrouter_budget(layer: BudgetLayer, now: datetime) -> dict[str, Any]:
    """One entry of OpenRouter's ``budgets``: a USD budget and its current window."""
    return {
        "scope": OPENROUTER_SCOPES.get(layer.kind, layer.kind),
        "budget_id": None,
        "guardrail_id": None,
        "include_byok": False,  # spend with the caller's own provider key never counts against a budget
        "limit_usd": layer.limit,
        "spend_usd": round(layer.used, 6),
        "remaining_usd": round(layer.remaining, 6),
        "reset_interval": None if layer.period == "none" else layer.period,
        "resets_at": resets_at(layer.period, layer.reset, now),
    }


def effective_budget(layers: tuple[BudgetLayer, ...], now: datetime) -> dict[str, Any] | None:
    """The budget that refuses requests first: the least left (the first in order on a tie)."""
    if not layers:
        return None
    tightest = min(layers, key=lambda layer: layer.remaining)
    return openrouter_budget(tightest, now)


def credits(quota: KeyQuota) -> dict[str, Any] | None:
    """OpenRouter's ``/credits``: the binding USD budget as the credits, and what its window used (so
    ``total_credits - total_usage`` is ``limit_remaining``). None for a key without a USD budget."""
    usd = quota.usd
    if usd.limit is None:
        return None
    return {"data": {"total_credits": usd.limit, "total_usage": round(usd.used, 6)}}


def iso_from_unix(moment: float | None) -> str | None:
    return None if moment is None else iso_utc(datetime.fromtimestamp(moment, UTC))
