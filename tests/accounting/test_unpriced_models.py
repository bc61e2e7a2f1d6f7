"""A hard USD budget is never charged $0 for a request it cannot price: through the proxy, with no model
named, or with a fallback nobody priced."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from anygate.accounting.budgets import StaticBudgets
from anygate.auth import Budget, Principal
from anygate.settings import Settings
from tests.accounting.gateway import fake_provider_settings
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.inprocess import inprocess_gateway

STUDENT = "sk-ag-student-unpriced-22222222222"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream(usage=Usage(7, 3), models=["fake-model", "free-model"]).in_memory()


@contextmanager
def student(
    settings: Settings, upstream: FakeUpstream, keys: dict[str, Principal], budgets: StaticBudgets
) -> Iterator[httpx.Client]:
    """The student's client of the gateway in-process (what it refuses and reserves needs no socket)."""
    with inprocess_gateway(settings, upstream, keys=keys, budget_source=budgets) as gw, gw.client(STUDENT) as http:
        yield http


def hard_usd(mode: str = "hard") -> tuple[dict[str, Principal], StaticBudgets]:
    principal = Principal(key_id="student", is_admin=False, label="student")
    return {STUDENT: principal}, StaticBudgets({"student": Budget(usd=1.0, period="daily", mode=mode)})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": MESSAGES},
        {"model": None, "messages": MESSAGES},
        {"model": ["fake-model"], "messages": MESSAGES},
        {"model": "", "messages": MESSAGES},
        {"model": "free-model", "messages": MESSAGES},
    ],
)
def test_the_proxy_refuses_what_a_hard_usd_budget_cannot_price(
    upstream: FakeUpstream, tmp_path: Path, body: dict[str, Any]
) -> None:
    settings = fake_provider_settings(
        upstream.base_url, tmp_path, prices={"fake/fake-model": {"input": 1, "output": 2}}
    )
    with student(settings, upstream, *hard_usd()) as http:
        refused = http.post("/proxy/fake/v1/chat/completions", json=body)
        priced = http.post(
            "/proxy/fake/v1/chat/completions",
            json={"model": "fake-model", "messages": MESSAGES},
        )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "price_unknown"
    assert priced.status_code == 200
    assert len(upstream.requests_to("/v1/chat/completions")) == 1


def test_a_soft_usd_budget_lets_an_unpriced_proxy_request_through(upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = fake_provider_settings(upstream.base_url, tmp_path)
    with student(settings, upstream, *hard_usd("soft")) as http:
        answer = http.post("/proxy/fake/v1/chat/completions", json={"messages": MESSAGES})
    assert answer.status_code == 200


def test_a_fallback_nobody_priced_is_refused_under_a_hard_usd_budget(upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = fake_provider_settings(
        upstream.base_url,
        tmp_path,
        prices={"fake/fake-model": {"input": 1, "output": 2}},
        fallbacks={"fake/fake-model": ["fake/free-model"]},
    )
    with student(settings, upstream, *hard_usd()) as http:
        answer = http.post("/v1/chat/completions", json={"model": "fake/fake-model", "messages": MESSAGES})
    assert answer.status_code == 403, answer.text
    assert "free-model" in answer.json()["error"]["message"]
    assert not upstream.requests_to("/v1/chat/completions")


def test_a_hard_usd_budget_reserves_at_the_dearest_price_a_fallback_may_cost(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """The budget left pays for 100 output tokens of the cheap model but only 10 of its fallback: the
    upstream is told 10, whichever of the two answers."""
    prices = {"fake/fake-model": {"input": 0, "output": 1000}, "fake/free-model": {"input": 0, "output": 10_000}}
    settings = fake_provider_settings(
        upstream.base_url, tmp_path, prices=prices, fallbacks={"fake/fake-model": ["fake/free-model"]}
    )
    principal = Principal(key_id="student", is_admin=False, label="student")
    budgets = StaticBudgets({"student": Budget(usd=0.1, period="daily")})
    with student(settings, upstream, {STUDENT: principal}, budgets) as http:
        answer = http.post(
            "/v1/chat/completions",
            json={"model": "fake/fake-model", "messages": MESSAGES, "max_tokens": 500},
        )
    assert answer.status_code == 200, answer.text
    assert upstream.requests_to("/v1/chat/completions")[0].json["max_tokens"] == 10
