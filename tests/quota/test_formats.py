"""Quota shapes read into one normalized shape; what is not of the format is an unexpected shape."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anygate.quota.display import compact, cost_text, money, reset_text, tokens_text
from anygate.quota.formats import CostBucket, Quota, TokenBucket, UnexpectedShape, normalize

NOW = datetime(2026, 11, 21, 13, 0, tzinfo=UTC)  # a Saturday


def test_neutral_shape_of_the_contract() -> None:
    body = {
        "key": "course-comp318",
        "tokens": {"limit": 5000000, "used": 250000, "remaining": 4750000, "resets_at": "2026-12-01T00:00:00Z"},
        "cost": {"currency": "USD", "limit": 5.0, "used": 0.42, "remaining": 4.58},
    }
    assert normalize("neutral", body) == Quota(
        TokenBucket(5000000, 250000, 4750000, "2026-12-01T00:00:00Z"), CostBucket("USD", 5.0, 0.42, 4.58)
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"tokens": {"limit": None, "used": 10, "remaining": None}}, Quota(TokenBucket(None, 10, None), None)),
        ({"tokens": {"limit": 100, "used": 40}}, Quota(TokenBucket(100, 40, 60), None)),
        ({"tokens": {"limit": 100, "used": 130, "remaining": -30}}, Quota(TokenBucket(100, 130, -30), None)),
        ({"cost": {"limit": 2, "used": 0}}, Quota(None, CostBucket("USD", 2, 0, 2))),
        ({"cost": {"currency": "EUR", "limit": None, "used": 1.5}}, Quota(None, CostBucket("EUR", None, 1.5, None))),
        ({"tokens": {}, "cost": None}, Quota(TokenBucket(None, None, None), None)),
        ({"tokens": {"limit": "lots", "used": True}}, Quota(TokenBucket(None, None, None), None)),
    ],
)
def test_neutral_is_null_safe(body: dict[str, Any], expected: Quota) -> None:
    assert normalize("neutral", body) == expected


@pytest.mark.parametrize(
    ("format", "body"),
    [
        ("neutral", {}),
        ("neutral", {"tokens": 5, "cost": "x"}),
        ("neutral", []),
        ("neutral", None),
        ("openrouter", {}),
        ("openrouter", {"data": None}),
        ("openrouter", {"data": {"limit": 10}}),
        ("openrouter", {"data": {"usage": -1}}),
        ("openrouter", {"data": {"usage": "1"}}),
        ("openrouter", {"data": {"usage": math.inf}}),
        ("openrouter", {"data": {"usage": 1, "limit": -5}}),
        ("openrouter", {"data": {"usage": 1, "limit": "ten"}}),
        ("litellm", {"key": "x"}),
        ("litellm", {"info": {"spend": -2}}),
        ("litellm", [1]),
    ],
)
def test_unexpected_shapes(format: Any, body: Any) -> None:
    with pytest.raises(UnexpectedShape, match="^unexpected shape$"):
        normalize(format, body, NOW)


def openrouter(**data: Any) -> dict[str, Any]:
    base = {"usage": 7.5, "usage_daily": 0.25, "usage_weekly": 1.5, "usage_monthly": 4.0}
    return {"data": {**base, **data}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # A limit that resets is spent from its own window, not from the all-time usage (seed 000's bug).
        (
            openrouter(limit=5, limit_reset="daily", limit_remaining=4.75),
            CostBucket("USD", 5, 0.25, 4.75, "2026-11-22T00:00:00Z"),
        ),
        (openrouter(limit=5, limit_reset="weekly"), CostBucket("USD", 5, 1.5, 3.5, "2026-11-23T00:00:00Z")),
        (openrouter(limit=5, limit_reset="monthly"), CostBucket("USD", 5, 4.0, 1.0, "2026-12-01T00:00:00Z")),
        (openrouter(limit=10, limit_reset=None), CostBucket("USD", 10, 7.5, 2.5, None)),
        (openrouter(limit=10, limit_remaining=1.0), CostBucket("USD", 10, 7.5, 1.0, None)),
        (openrouter(limit=None), CostBucket("USD", None, 7.5, None, None)),
        ({"data": {"usage": 0, "limit": 0}}, CostBucket("USD", 0, 0, 0, None)),
    ],
)
def test_openrouter_mapping(body: dict[str, Any], expected: CostBucket) -> None:
    assert normalize("openrouter", body, NOW) == Quota(None, expected)


def test_openrouter_body_of_the_fake_upstream() -> None:
    from tests.support.openai_bodies import default_key_info

    quota = normalize("openrouter", default_key_info(), NOW)
    assert quota.cost == CostBucket("USD", 10.0, 0.42, 9.58, "2026-12-01T00:00:00Z")


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (
            {"spend": 1.25, "max_budget": 10.0, "budget_reset_at": "2026-12-01T00:00:00Z"},
            CostBucket("USD", 10.0, 1.25, 8.75, "2026-12-01T00:00:00Z"),
        ),
        ({"spend": 3, "max_budget": None}, CostBucket("USD", None, 3, None)),
        ({"spend": 12, "max_budget": 10}, CostBucket("USD", 10, 12, -2)),
        ({"max_budget": 10}, CostBucket("USD", 10, 0, 10)),
    ],
)
def test_litellm_mapping(info: dict[str, Any], expected: CostBucket) -> None:
    assert normalize("litellm", {"key": "hashed", "info": info}) == Quota(None, expected)


def test_normalized_result_never_carries_the_upstream_key_or_label() -> None:
    quota = normalize("neutral", {"key": "sk-secret-1234", "tokens": {"limit": 1, "used": 0}})
    assert "sk-secret" not in str(quota.as_dict())
    quota = normalize("openrouter", {"data": {"label": "sk-or-v1-abc", "usage": 0}}, NOW)
    assert "sk-or" not in str(quota.as_dict())


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0"),
        (999, "999"),
        (1500, "1.5K"),
        (45000, "45K"),
        (250000, "250K"),
        (999_999, "1M"),
        (1_200_000, "1.2M"),
        (5_000_000, "5M"),
        (2_500_000_000, "2.5B"),
        (-1500, "-1.5K"),
    ],
)
def test_compact_counts(count: float, text: str) -> None:
    assert compact(count) == text


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (0.42, "USD", "$0.42"),
        (5, "usd", "$5.00"),
        (3.5, "EUR", "€3.50"),
        (1.2, "CHF", "1.20 CHF"),
        (-0.5, "USD", "-$0.50"),
        (0.000026, "USD", "$0.000026"),
        (0.0099, "USD", "$0.0099"),
        (0.00001234, "EUR", "€0.000012"),
        (0, "USD", "$0.00"),
        (1234.5, "USD", "$1,234.50"),
    ],
)
def test_money_respects_the_currency(amount: float, currency: str, text: str) -> None:
    assert money(amount, currency) == text


def test_display_of_buckets() -> None:
    assert tokens_text(TokenBucket(5_000_000, 250_000, 4_750_000)) == "95% left (250K/5M)"
    assert tokens_text(TokenBucket(1000, 1500, -500)) == "-50% left (1.5K/1K)"
    assert tokens_text(TokenBucket(None, 45_000, None)) == "unlimited (45K used)"
    assert cost_text(CostBucket("USD", 5.0, 0.42, 4.58)) == "$0.42 / $5.00"
    assert cost_text(CostBucket("EUR", None, 1, None)) == "€1.00 / unlimited"
    assert reset_text("2026-12-01T00:00:00Z") == "2026-12-01 00:00 UTC"
    assert reset_text(None) == "never"


@given(st.floats(min_value=0, max_value=1e15, allow_nan=False))
def test_compact_never_loses_the_magnitude(count: float) -> None:
    text = compact(count)
    suffix = text[-1]
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}.get(suffix, 1)
    shown = float(text[:-1]) if suffix in "KMBT" else float(text)
    assert abs(shown * scale - count) <= max(0.05 * count, 0.5)
