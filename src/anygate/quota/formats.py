"""Read a quota endpoint's JSON (neutral, OpenRouter or LiteLLM) into one normalized shape.

    neutral     {"tokens": {limit, used, remaining, resets_at}, "cost": {currency, limit, used, remaining}}
    openrouter  {"data": {limit, limit_remaining, limit_reset, usage, usage_daily|weekly|monthly, ...}}
    litellm     {"info": {max_budget, spend, budget_reset_at, ...}}

The normalized result never carries the upstream's ``key`` or ``label`` fields (they may hold a key), and
the strings it does carry are checked: ``currency`` is a three-letter code, ``resets_at`` a date-time.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from anygate.accounting.periods import iso_utc, next_reset

QuotaFormat = Literal["neutral", "openrouter", "litellm"]
UNEXPECTED_SHAPE = "unexpected shape"
WINDOWED_USAGE = {"daily": "usage_daily", "weekly": "usage_weekly", "monthly": "usage_monthly"}
CURRENCY_CODE = re.compile(r"[A-Za-z]{3}")
NO_CURRENCY = "XXX"  # ISO 4217's code for "no currency": what a source gave that is not a currency code


class UnexpectedShape(ValueError):
    def __init__(self) -> None:
        super().__init__(UNEXPECTED_SHAPE)


@dataclass(frozen=True, slots=True)
class TokenBucket:
    limit: float | None
    used: float | None
    remaining: float | None
    resets_at: str | None = None


@dataclass(frozen=True, slots=True)
class CostBucket:
    currency: str
    limit: float | None
    used: float | None
    remaining: float | None
    resets_at: str | None = None


@dataclass(frozen=True, slots=True)
class Quota:
    tokens: TokenBucket | None
    cost: CostBucket | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalize(format: QuotaFormat, body: Any, now: datetime | None = None) -> Quota:
    """The normalized quota of a parsed body; raise UnexpectedShape when it is not of ``format``."""
    if format == "openrouter":
        return from_openrouter(body, now or datetime.now(UTC))
    if format == "litellm":
        return from_litellm(body)
    return from_neutral(body)


def number(value: Any) -> float | None:
    """A finite number, else None (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def currency(value: Any) -> str:
    """A three-letter currency code (upper-cased); ``USD`` when absent, ``XXX`` when not a code."""
    if value is None:
        return "USD"
    if isinstance(value, str) and CURRENCY_CODE.fullmatch(value):
        return value.upper()
    return NO_CURRENCY


def moment(value: Any) -> str | None:
    """An ISO 8601 date-time as ``2026-12-01T00:00:00Z`` (UTC; a naive time is taken as UTC); else None."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return iso_utc(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


def remaining_of(limit: float | None, used: float | None, given: Any) -> float | None:
    explicit = number(given)
    if explicit is not None:
        return explicit
    return limit - used if limit is not None and used is not None else None


def from_neutral(body: Any) -> Quota:
    if not isinstance(body, dict):
        raise UnexpectedShape
    tokens, cost = body.get("tokens"), body.get("cost")
    if not isinstance(tokens, dict) and not isinstance(cost, dict):
        raise UnexpectedShape
    bucket = None
    if isinstance(tokens, dict):
        limit, used = number(tokens.get("limit")), number(tokens.get("used"))
        bucket = TokenBucket(
            limit, used, remaining_of(limit, used, tokens.get("remaining")), moment(tokens.get("resets_at"))
        )
    money = None
    if isinstance(cost, dict):
        limit, used = number(cost.get("limit")), number(cost.get("used"))
        money = CostBucket(
            currency(cost.get("currency")),
            limit,
            used,
            remaining_of(limit, used, cost.get("remaining")),
            moment(cost.get("resets_at")),
        )
    return Quota(bucket, money)


def from_openrouter(body: Any, now: datetime) -> Quota:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise UnexpectedShape
    usage = number(data.get("usage"))
    if usage is None or usage < 0:
        raise UnexpectedShape
    limit = number(data.get("limit"))
    if data.get("limit") is not None and (limit is None or limit < 0):
        raise UnexpectedShape
    reset = data.get("limit_reset")
    window = WINDOWED_USAGE.get(reset) if isinstance(reset, str) else None
    # A limit that resets is spent from the current window, never from the all-time total (seed 000's bug).
    used = number(data.get(window)) if window is not None else usage
    resets_at = iso_utc(next_reset(reset, now)) if window is not None else None  # type: ignore[arg-type]
    remaining = remaining_of(limit, used, data.get("limit_remaining")) if limit is not None else None
    return Quota(None, CostBucket("USD", limit, used, remaining, resets_at))


def from_litellm(body: Any) -> Quota:
    info = body.get("info") if isinstance(body, dict) else None
    if not isinstance(info, dict):
        raise UnexpectedShape
    spend = number(info.get("spend"))
    if info.get("spend") is not None and (spend is None or spend < 0):
        raise UnexpectedShape
    spend = spend or 0.0
    limit = number(info.get("max_budget"))
    remaining = limit - spend if limit is not None else None
    return Quota(None, CostBucket("USD", limit, spend, remaining, moment(info.get("budget_reset_at"))))
