"""Budgets on keys and users made through the management API (``POST /v1/users``, ``POST /v1/keys``),
enforced end to end: the gateway on a real port, the fake upstream, the openai SDK as client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from tests.accounting.gateway import ADMIN_KEY, fake_provider_settings, running_gateway
from tests.support.fake_upstream import FakeUpstream, Usage

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
MODEL = "fake/fake-model"
PRICES = {"fake/fake-model": {"input": 1_000_000, "output": 1_000_000}}  # $1 a token: easy sums


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread(usage=Usage(7, 3)) as up:
        yield up


def admin(base: str, method: str, path: str, body: Any = None, key: str = ADMIN_KEY) -> Any:
    reply = httpx.request(method, base + path, json=body, headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code in (200, 201), reply.text
    return reply.json()


def new_key(base: str, **fields: Any) -> dict[str, Any]:
    return admin(base, "POST", "/v1/keys", {"alias": "student-1", **fields})  # type: ignore[no-any-return]


def chat(base: str, key: str, **extra: Any) -> Any:
    with openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0) as client:
        return client.chat.completions.create(model=MODEL, messages=MESSAGES, **extra)


def test_a_hard_usd_budget_refuses_a_model_without_a_price(upstream: FakeUpstream, tmp_path: Path) -> None:
    with running_gateway(fake_provider_settings(upstream.base_url, tmp_path)) as (base, _):
        hard = new_key(base, budget={"usd": 5, "period": "daily"})
        with pytest.raises(openai.PermissionDeniedError) as refused:
            chat(base, hard["key"])
        error = refused.value.body
        assert isinstance(error, dict) and error["code"] == "price_unknown" and error["param"] == "model"
        assert "fake-model" in error["message"]
        assert upstream.requests_to("/v1/chat/completions") == []
        soft = new_key(base, budget={"usd": 5, "period": "daily", "mode": "soft"})
        chat(base, soft["key"])  # a soft budget never refuses
        tokens_only = new_key(base, budget={"tokens": 1000, "period": "daily"})
        chat(base, tokens_only["key"])
    assert len(upstream.requests_to("/v1/chat/completions")) == 2


def test_an_admin_may_let_unpriced_models_through_a_usd_budget(upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = fake_provider_settings(upstream.base_url, tmp_path, allow_unpriced_under_usd_budget=True)
    with running_gateway(settings) as (base, _):
        key = new_key(base, budget={"usd": 5, "period": "daily"})
        chat(base, key["key"])
        assert admin(base, "GET", "/v1/quota", key=key["key"])["cost"]["used"] == 0


def test_byok_spend_is_never_held_by_the_keys_usd_budget(upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = fake_provider_settings(upstream.base_url, tmp_path, prices=PRICES)
    with running_gateway(settings) as (base, _):
        key = new_key(base, budget={"usd": 10, "period": "daily"})["key"]
        chat(base, key)  # 10 tokens at $1: the budget is spent
        with pytest.raises(openai.RateLimitError):
            chat(base, key)
        admin(base, "PUT", "/auth/creds", {"providers": {"fake": {"apiKey": "sk-own-upstream-key"}}}, key=key)
        chat(base, key, max_tokens=500)  # paid with the caller's own key: neither refused nor clamped
        sent = upstream.requests_to("/v1/chat/completions")[-1]
        assert sent.headers["authorization"] == "Bearer sk-own-upstream-key"
        assert sent.json["max_tokens"] == 500
        data = admin(base, "GET", "/api/v1/key", key=key)["data"]
    assert (data["limit"], data["limit_remaining"], data["include_byok_in_limit"]) == (10, 0, False)
    assert data["usage_daily"] == 10 and data["byok_usage_daily"] == 10


def test_a_token_budget_still_holds_byok_requests(upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = fake_provider_settings(upstream.base_url, tmp_path, prices=PRICES)
    with running_gateway(settings) as (base, _):
        key = new_key(base, budget={"tokens": 12, "usd": 1000, "period": "daily"})["key"]
        admin(base, "PUT", "/auth/creds", {"providers": {"fake": {"apiKey": "sk-own-upstream-key"}}}, key=key)
        chat(base, key)
        with pytest.raises(openai.RateLimitError):
            chat(base, key)
