"""The pure core of accounting: periods, usage extraction, estimates, prices, budget specs, served shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anygate.accounting import reports
from anygate.accounting.budgets import Scope, StaticBudgets, budget_spec, scopes_of
from anygate.accounting.enforcer import Ask, Enforcer
from anygate.accounting.estimate import completion_text, stream_text
from anygate.accounting.limiter import MemoryLimiter
from anygate.accounting.periods import next_reset, window_id, window_start
from anygate.accounting.pricing import Price, PriceBook, discovered_price, genai_price
from anygate.accounting.usage import (
    TokenCount,
    chunk_usage,
    count_of,
    extract_usage,
    with_stream_usage,
)
from anygate.auth import Budget, Limits, Principal
from anygate.errors import QuotaExceeded, RateLimited
from anygate.quota import litellm, shapes
from tests.support.tokens import count_text, estimate_prompt

SATURDAY = datetime(2026, 11, 21, 13, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "now", "start", "reset", "name"),
    [
        ("daily", SATURDAY, "2026-11-21T00:00", "2026-11-22T00:00", "2026-11-21"),
        ("weekly", SATURDAY, "2026-11-16T00:00", "2026-11-23T00:00", "2026-W47"),
        ("monthly", SATURDAY, "2026-11-01T00:00", "2026-12-01T00:00", "2026-11"),
        ("monthly", datetime(2026, 12, 31, 23, 59, tzinfo=UTC), "2026-12-01T00:00", "2027-01-01T00:00", "2026-12"),
        ("weekly", datetime(2027, 1, 3, 12, tzinfo=UTC), "2026-12-28T00:00", "2027-01-04T00:00", "2026-W53"),
        ("daily", datetime(2026, 11, 22, 0, 0, tzinfo=UTC), "2026-11-22T00:00", "2026-11-23T00:00", "2026-11-22"),
    ],
)
def test_utc_windows(period: Any, now: datetime, start: str, reset: str, name: str) -> None:
    assert window_start(period, now) == datetime.fromisoformat(start).replace(tzinfo=UTC)
    assert next_reset(period, now) == datetime.fromisoformat(reset).replace(tzinfo=UTC)
    assert window_id(period, now) == name


def test_a_budget_without_period_never_resets() -> None:
    assert next_reset("none", SATURDAY) is None
    assert window_id("none", SATURDAY) == "all"


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_every_moment_lies_in_its_window(now: datetime) -> None:
    for period in ("daily", "weekly", "monthly"):
        start, reset = window_start(period, now), next_reset(period, now)
        assert reset is not None and start <= now < reset
        assert start.hour == start.minute == start.second == 0
    assert window_start("weekly", now).weekday() == 0
    assert window_start("monthly", now).day == 1
    assert next_reset("daily", now) - window_start("daily", now) == timedelta(days=1)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("usage", "count"),
    [
        ({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}, TokenCount(7, 3)),
        ({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, TokenCount(0, 0)),
        ({"input_tokens": 5, "output_tokens": 9}, TokenCount(5, 9)),
        ({"prompt_tokens": 4, "total_tokens": 4}, TokenCount(4, 0)),  # embeddings
        ({"total_tokens": 12}, TokenCount(12, 0)),
        ({"prompt_tokens": None, "completion_tokens": None}, None),
        ({}, None),
        (None, None),
        ({"prompt_tokens": True, "completion_tokens": -1}, None),
    ],
)
def test_token_counts_from_usage(usage: dict[str, Any] | None, count: TokenCount | None) -> None:
    assert count_of(usage) == count


def test_usage_from_responses_and_events() -> None:
    assert extract_usage(b'{"usage": {"prompt_tokens": 1}}') == {"prompt_tokens": 1}
    assert extract_usage(b'{"type":"response.completed","response":{"usage":{"input_tokens":2}}}') == {
        "input_tokens": 2
    }
    assert extract_usage(b'{"usage": null}') is None
    assert extract_usage(b"not json usage") is None
    usage_event = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
    content_event = b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
    assert chunk_usage(usage_event) == ({"prompt_tokens": 3, "completion_tokens": 1}, True)
    assert chunk_usage(content_event) == (None, False)
    with_usage = b'data: {"choices":[{"delta":{}}],"usage":{"prompt_tokens":3}}\n\n'
    assert chunk_usage(with_usage) == ({"prompt_tokens": 3}, False)  # it also carries choices: never dropped


def test_stream_usage_is_asked_without_losing_the_clients_options() -> None:
    assert with_stream_usage({"model": "m"})["stream_options"] == {"include_usage": True}
    merged = with_stream_usage({"stream_options": {"include_obfuscation": False}})
    assert merged["stream_options"] == {"include_obfuscation": False, "include_usage": True}


def test_estimates_count_prompt_and_generated_text_offline() -> None:
    payload = {"messages": [{"role": "user", "content": "hello world"}, {"role": "user", "content": [{"text": "x"}]}]}
    assert estimate_prompt(payload) == count_text("hello world") + count_text("x") + 1 + 2 * 3
    assert estimate_prompt({"prompt": "hello"}) == count_text("hello")
    assert estimate_prompt({"input": ["a", "b"]}) == count_text("a\nb")
    assert completion_text(b'{"choices":[{"message":{"content":"Hi there"}}]}') == "Hi there"
    assert completion_text(b'{"choices":[{"text":"done"}]}') == "done"
    events = [
        b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n',
        b'data: {"choices":[{"delta":{"content":"lo"}}]}\n\n',
        b'data: {"type":"response.output_text.delta","delta":"!"}\n\n',
        b"data: [DONE]\n\n",
    ]
    assert stream_text(events) == "Hello!"
    assert count_text("") == 0
    assert count_text("hello", "gpt-4o") >= 1


def test_prices_configured_then_discovered_then_genai_then_unknown() -> None:
    entries = {("or", "vendor/model"): {"pricing": {"prompt": "0.000001", "completion": "0.000002"}}}
    book = PriceBook(
        {("mine", "m"): Price(0.5, 1.0), ("mine", "*"): Price(0.1, 0.1)},
        discovered=lambda provider, model: entries.get((provider, model)),
        provider_type=lambda provider: {"oa": "openai", "local": "custom"}.get(provider),
    )
    assert book.price("mine", "m") == Price(0.5, 1.0)
    assert book.price("mine", "other") == Price(0.1, 0.1)
    assert book.price("or", "vendor/model") == Price(0.000001, 0.000002, "discovered")
    found = book.price("oa", "gpt-4o")
    assert found is not None and found.origin == "genai-prices" and found.input > 0
    assert book.price("local", "llama3") is None
    assert book.cost("local", "llama3", TokenCount(10, 10)) is None  # unknown, not zero
    assert book.cost("mine", "m", TokenCount(2, 3)) == 2 * 0.5 + 3 * 1.0
    assert book.unpriced() == [("local", "llama3")]


def test_where_every_source_prices_a_model_configured_wins_then_discovered_then_genai_prices() -> None:
    """One model that all three sources price, each differently: the order is the contract's."""
    genai = genai_price("openai", "gpt-4o")
    assert genai is not None
    discovered = {"pricing": {"prompt": "0.000003", "completion": "0.000004"}}
    configured = Price(0.5, 1.0)

    def book(prices: dict[tuple[str, str], Price], entry: dict[str, Any] | None) -> PriceBook:
        return PriceBook(prices, lambda provider, model: entry, lambda provider: "openai")

    assert book({("oa", "gpt-4o"): configured}, discovered).price("oa", "gpt-4o") == configured
    assert book({("oa", "*"): configured}, discovered).price("oa", "gpt-4o") == configured
    assert book({}, discovered).price("oa", "gpt-4o") == Price(0.000003, 0.000004, "discovered")
    assert book({}, None).price("oa", "gpt-4o") == genai
    assert genai not in (configured, Price(0.000003, 0.000004, "discovered"))


def test_a_discovery_refresh_drops_the_providers_cached_prices() -> None:
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    book = PriceBook({}, discovered=lambda provider, model: entries.get((provider, model)))
    assert book.price("or", "m") is None
    entries[("or", "m")] = {"pricing": {"prompt": "0.000001", "completion": "0.000002"}}
    assert book.price("or", "m") is None  # cached until the provider's models are discovered again
    book.forget_discovered("other")
    assert book.price("or", "m") is None
    book.forget_discovered("or")
    assert book.price("or", "m") == Price(0.000001, 0.000002, "discovered")


@pytest.mark.parametrize(
    "pricing", [None, {}, {"prompt": "abc", "completion": "1"}, {"prompt": "-1", "completion": "1"}, "free"]
)
def test_malformed_discovered_prices_are_no_price(pricing: Any) -> None:
    assert discovered_price({"pricing": pricing}) is None


def test_budget_specs_from_the_store_or_json() -> None:
    assert budget_spec({"tokens": 100, "period": "daily"}) == Budget(100, None, "daily", "hard")
    assert budget_spec({"usd": 5, "mode": "soft"}) == Budget(None, 5.0, "none", "soft")
    assert budget_spec({"period": "daily"}) is None
    with pytest.raises(ValueError, match="invalid budget"):
        budget_spec({"tokens": 1, "period": "hourly"})
    assert scopes_of(Principal(key_id="k", is_admin=False)) == ()
    source = StaticBudgets({"k": Budget(tokens=5)})
    assert source(Principal(key_id="k", is_admin=False)) == (Scope("key", "k", Budget(tokens=5), None),)


async def test_enforcer_checks_every_scope_and_gives_back_on_refusal() -> None:
    limiter = MemoryLimiter()
    enforcer = Enforcer(limiter)
    key = Scope("key", "k", Budget(tokens=1000, period="daily"))
    user = Scope("user", "u", Budget(tokens=150, period="daily"))
    first = await enforcer.admit([key, user], Ask(10, 100))
    await enforcer.settle(first, 110, None)
    with pytest.raises(QuotaExceeded) as refused:
        await enforcer.admit([key, user], Ask(50, 100))
    assert refused.value.retry_after is not None and refused.value.headers["retry-after"]
    clamped = await enforcer.admit([key, user], Ask(20, 100))
    assert clamped.max_tokens == 150 - 110 - 20  # the user's budget clamps it
    await enforcer.release(clamped)
    rate = Scope("key", "r", limits=Limits(rpm=1, concurrency=1))
    held = await enforcer.admit([rate], Ask(0, 0))
    with pytest.raises(RateLimited, match="concurrent"):
        await enforcer.admit([rate], Ask(0, 0))
    await enforcer.settle(held, 0, None)
    with pytest.raises(RateLimited, match="1 requests per minute"):
        await enforcer.admit([rate], Ask(0, 0))


def test_served_quota_shapes() -> None:
    quota = shapes.KeyQuota(
        key_id="k1",
        label="course-comp318",
        tokens=shapes.Allowance(5_000_000, 250_000, "monthly"),
        usd=shapes.Allowance(5.0, 0.42, "monthly"),
        limits=Limits(rpm=60, tpm=1000),
        spend=reports.Spend(1.5, 0.1, 0.2, 0.42),
        byok=reports.Spend(0.3, 0.0, 0.3, 0.3),
        expires_at=datetime(2027, 1, 1, tzinfo=UTC).timestamp(),
    )
    assert shapes.neutral(quota, SATURDAY) == {
        "key": "course-comp318",
        "tokens": {"limit": 5000000, "used": 250000, "remaining": 4750000, "resets_at": "2026-12-01T00:00:00Z"},
        "cost": {"currency": "USD", "limit": 5.0, "used": 0.42, "remaining": 4.58},
        "budgets": [],
    }
    data = shapes.openrouter(quota, SATURDAY)["data"]
    assert (data["limit"], data["limit_remaining"], data["limit_reset"]) == (5.0, 4.58, "monthly")
    assert (data["usage"], data["usage_monthly"], data["byok_usage_weekly"]) == (1.5, 0.42, 0.3)
    assert data["expires_at"] == "2027-01-01T00:00:00Z"
    assert data["rate_limit"]["requests"] == 60
    info = litellm.key_info(quota, litellm.KeyFacts(), SATURDAY)
    assert (info["spend"], info["max_budget"], info["budget_duration"]) == (0.42, 5.0, "1mo")
    assert info["budget_reset_at"] == "2026-12-01T00:00:00Z"
    unlimited = shapes.KeyQuota("k2", "", shapes.Allowance(None, 10))
    assert shapes.neutral(unlimited, SATURDAY)["tokens"] == {"limit": None, "used": 10, "remaining": None,
                                                              "resets_at": None}  # fmt: skip
    assert shapes.openrouter(unlimited)["data"]["limit_reset"] is None
    # A daily token budget, no USD limit: cost counted in the same day, and no USD limit anywhere.
    tokens_only = shapes.KeyQuota(
        "k3", "", shapes.Allowance(100, 10, "daily"), shapes.Allowance(None, 0.000026, "daily")
    )
    assert shapes.neutral(tokens_only, SATURDAY)["cost"] == {"currency": "USD", "limit": None, "used": 0.000026,
                                                              "remaining": None}  # fmt: skip
    assert shapes.neutral(tokens_only, SATURDAY)["tokens"]["resets_at"] == "2026-11-22T00:00:00Z"
    info = litellm.key_info(tokens_only, litellm.KeyFacts(), SATURDAY)
    # No USD budget: LiteLLM's ``spend`` is everything the key spent (here no ledger spend was given).
    assert (info["spend"], info["max_budget"], info["budget_duration"], info["budget_reset_at"]) == (
        0.0,
        None,
        None,
        None,
    )
    data = shapes.openrouter(tokens_only, SATURDAY)["data"]
    assert (data["limit"], data["limit_remaining"], data["limit_reset"]) == (None, None, None)


async def test_a_usd_budget_clamps_max_tokens_to_what_it_can_still_pay() -> None:
    enforcer = Enforcer(MemoryLimiter())
    scope = Scope("key", "k", Budget(usd=1.0, period="daily"))
    # prompt 10 tokens at $0.01, output at $0.01 per token: 100 tokens would cost $1.10
    admission = await enforcer.admit([scope], Ask(10, 100, usd=1.10, usd_per_output_token=0.01))
    assert admission.max_tokens == 90
    with pytest.raises(QuotaExceeded, match="USD budget"):
        await enforcer.admit([scope], Ask(10, 100, usd=1.10, usd_per_output_token=0.01))


def test_scopes_come_from_principals_shaped_like_the_stores() -> None:
    """The store puts ``budget``/``limits`` and ``user_budget``/``user_limits`` objects on Principals."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class StoreBudget:
        tokens: int | None = None
        usd: float | None = None
        period: str = "none"
        mode: str = "hard"

    @dataclass(frozen=True)
    class StoreLimits:
        rpm: int | None = None
        tpm: int | None = None
        concurrency: int | None = None

    @dataclass(frozen=True)
    class StorePrincipal(Principal):
        budget: StoreBudget | None = None
        limits: StoreLimits | None = None
        user_budget: StoreBudget | None = None
        user_limits: StoreLimits | None = None

    principal = StorePrincipal(
        key_id="k1",
        is_admin=False,
        user_id="u1",
        budget=StoreBudget(tokens=100, period="daily"),
        limits=StoreLimits(rpm=5),
        user_budget=StoreBudget(usd=2.0, period="monthly", mode="soft"),
    )
    assert scopes_of(principal) == (
        Scope("key", "k1", Budget(100, None, "daily", "hard"), Limits(rpm=5)),
        Scope("user", "u1", Budget(None, 2.0, "monthly", "soft"), None),
    )
