"""Agents' requests count like chat: budgets (with the output limit written into the request that goes
upstream, translated or not), rate limits, and the ledger with the route each came by."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from anygate.accounting.budgets import StaticBudgets
from anygate.auth import Budget, Limits, Principal
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.support.tokens import estimate_prompt

STUDENT = "sk-ag-student-agents-000000000000"
MODEL = "fake/fake-model"
HI: list[Any] = [{"role": "user", "content": "hi"}]
ROOM = 300  # tokens a budget leaves beyond the prompt


@contextmanager
def student_gateway(
    upstream: FakeUpstream, budget: Budget | None = None, limits: Limits | None = None, **provider: Any
) -> Iterator[InProcessGateway]:
    principal = Principal(key_id="student", is_admin=False, label="student")
    budgets = StaticBudgets({"student": budget} if budget else None, {"student": limits} if limits else None)
    settings = gateway_settings(fake_provider(upstream, **provider))
    with inprocess_gateway(settings, upstream, keys={STUDENT: principal}, budget_source=budgets) as gw:
        yield gw


def ledger(gateway: InProcessGateway) -> list[tuple[Any, ...]]:
    gateway.run(gateway.app.state.accounting.ledger.flush())
    with sqlite3.connect(Path.cwd() / "data" / "anygate.db") as db:
        return db.execute("select route, input_tokens, output_tokens, status from usage_ledger").fetchall()


def tokens_used(gateway: InProcessGateway) -> int:
    with gateway.client(STUDENT) as http:
        return int(http.get("/v1/quota").json()["tokens"]["used"])


@pytest.fixture
def upstream() -> FakeUpstream:
    """Generates like a model that never stops early: up to the limit it was sent."""
    up = FakeUpstream().in_memory()
    up.generate_to_limit = True
    return up


@pytest.mark.parametrize("stream", [False, True])
def test_a_hard_budget_writes_its_limit_into_the_translated_request(upstream: FakeUpstream, stream: bool) -> None:
    body = {"model": MODEL, "max_tokens": 16_000, "system": "Be brief.", "messages": HI}
    prompt = estimate_prompt(body, MODEL)
    upstream.usage = Usage(prompt, 0)
    with student_gateway(upstream, Budget(tokens=prompt + ROOM, period="daily")) as gw:
        with gw.anthropic(key=STUDENT) as client:
            if stream:
                with client.messages.stream(**body) as events:
                    message = events.get_final_message()
            else:
                message = client.messages.create(**body)
        used = tokens_used(gw)
        rows = ledger(gw)
    sent = upstream.requests_to("/v1/chat/completions")[-1].json
    assert prompt < sent["max_tokens"] <= ROOM  # the clamp, in the chat request the upstream got
    assert message.usage.output_tokens == sent["max_tokens"]
    assert prompt < used <= prompt + ROOM
    assert rows == [("messages", prompt, sent["max_tokens"], 200)]


def test_a_hard_budget_writes_its_limit_into_a_passed_through_request(upstream: FakeUpstream) -> None:
    body = {"model": MODEL, "max_tokens": 16_000, "messages": HI}
    prompt = estimate_prompt(body, MODEL)
    upstream.usage = Usage(prompt, 0)
    with student_gateway(upstream, Budget(tokens=prompt + ROOM), api="anthropic") as gw:
        with gw.anthropic(key=STUDENT) as client:
            client.messages.create(**body)
        used = tokens_used(gw)
    sent = upstream.requests_to("/v1/messages")[-1].json
    assert sent["max_tokens"] <= ROOM
    assert used <= prompt + ROOM


def test_a_bridged_responses_request_is_budgeted_and_in_the_ledger_as_responses(upstream: FakeUpstream) -> None:
    body = {"model": MODEL, "input": "hi"}
    prompt = estimate_prompt(body, MODEL)
    upstream.usage = Usage(prompt, 0)
    with student_gateway(upstream, Budget(tokens=prompt + ROOM), responses=False) as gw:
        with gw.sdk(key=STUDENT) as client:
            response = client.responses.create(**body)
        rows = ledger(gw)
    sent = upstream.requests_to("/v1/chat/completions")[-1].json
    assert sent["max_tokens"] <= ROOM  # the client sent no limit: the budget's, under chat's name for it
    assert response.usage is not None and response.usage.output_tokens == sent["max_tokens"]
    assert rows == [("responses", prompt, sent["max_tokens"], 200)]


def test_an_exhausted_budget_is_a_rate_limit_error_for_the_anthropic_sdk(upstream: FakeUpstream) -> None:
    upstream.generate_to_limit = False
    upstream.usage = Usage(5, 3)
    with student_gateway(upstream, Budget(tokens=8, period="daily")) as gw, gw.anthropic(key=STUDENT) as client:
        client.messages.create(model=MODEL, max_tokens=1, messages=HI)
        with pytest.raises(anthropic.RateLimitError) as refused:
            client.messages.create(model=MODEL, max_tokens=1, messages=HI)
    assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert refused.value.response.headers["retry-after"]
    assert len(upstream.requests_to("/v1/chat/completions")) == 1


def test_rate_limits_count_messages_and_responses_requests(upstream: FakeUpstream) -> None:
    upstream.generate_to_limit = False
    with student_gateway(upstream, limits=Limits(rpm=2), responses=False) as gw:
        with gw.anthropic(key=STUDENT) as client:
            client.messages.create(model=MODEL, max_tokens=10, messages=HI)
        with gw.sdk(key=STUDENT) as sdk:
            sdk.responses.create(model=MODEL, input="hi")
            with pytest.raises(openai.RateLimitError):
                sdk.responses.create(model=MODEL, input="hi")
        with gw.anthropic(key=STUDENT) as client, pytest.raises(anthropic.RateLimitError):
            client.messages.create(model=MODEL, max_tokens=10, messages=HI)
        routes = sorted(row[0] for row in ledger(gw))
    assert routes == ["messages", "messages", "responses", "responses"]
