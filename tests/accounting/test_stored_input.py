"""A Responses request that points at state the upstream stored (``previous_response_id``, ``conversation``,
a stored ``prompt``) reads an input anygate cannot see, so cannot reserve: under a hard token or USD budget
each such request would be admitted for its few visible tokens and charged the whole conversation after,
and concurrent ones all at once. It is refused (400 ``stored_input_under_budget``) before the upstream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from anygate.accounting.budgets import StaticBudgets
from anygate.auth import Budget, Principal
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

STUDENT = "sk-ag-student-stored-input-0000000"


def gateway(budget: Budget) -> Any:
    up = FakeUpstream(usage=Usage(11, 7)).in_memory()
    provider = fake_provider(up, proxy_endpoints=["POST responses"])
    student = Principal(key_id="student", is_admin=False, label="student")
    budgets = StaticBudgets({"student": budget})
    settings = gateway_settings(provider, prices={"fake/*": {"input": 1, "output": 2}})
    return inprocess_gateway(settings, up, keys={STUDENT: student}, budget_source=budgets)


@pytest.fixture(params=[Budget(tokens=100_000, period="daily"), Budget(usd=5.0, period="daily")])
def hard(request: pytest.FixtureRequest) -> Iterator[InProcessGateway]:
    with gateway(request.param) as gw:
        yield gw


@pytest.mark.parametrize("member", ["previous_response_id", "conversation", "prompt"])
@pytest.mark.parametrize(
    ("path", "model"), [("/v1/responses", "fake/fake-model"), ("/proxy/fake/v1/responses", "fake-model")]
)
def test_stored_input_is_refused_under_a_hard_budget(
    hard: InProcessGateway, member: str, path: str, model: str
) -> None:
    assert hard.upstream is not None
    with hard.client(STUDENT) as http:
        answer = http.post(path, json={"model": model, "input": "go on", member: "resp_or_conv_1"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == member
    assert not [r for r in hard.upstream.requests if r.method == "POST"]


def test_a_soft_budget_passes_stored_input_on() -> None:
    with gateway(Budget(tokens=100_000, period="daily", mode="soft")) as gw, gw.client(STUDENT) as http:
        body = {"model": "fake/fake-model", "input": "go on", "previous_response_id": "resp_1"}
        assert http.post("/v1/responses", json=body).status_code == 200
