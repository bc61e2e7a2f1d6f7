"""A tool the upstream runs and bills by the call (web search, file search, a code container, image
generation) costs more than the tokens anygate prices: under a hard USD budget paid with the operator's
provider key it is refused (403 ``price_unknown`` naming the tool), wherever the upstream would run it. A
bridged request to a chat upstream drops such tools, and a budget in tokens or a soft one has nothing to
hold: those pass."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from anygate.accounting.budgets import StaticBudgets
from anygate.auth import Budget, Principal
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

STUDENT = "sk-ag-student-hosted-tools-0000000"
PRICES = {
    "fake/*": {"input": 1, "output": 2},
    "chatonly/*": {"input": 1, "output": 2},
    "claude/*": {"input": 1, "output": 2},
}
MESSAGES = [{"role": "user", "content": "hi"}]

WEB_SEARCH = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 50}]
CODE_TOOLS = [{"type": "function", "name": "f"}, {"type": "code_interpreter"}]
CASES = [
    ("/v1/responses", {"model": "fake/fake-model", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ("/v1/responses", {"model": "fake/fake-model", "input": "hi", "tools": CODE_TOOLS}, "tools[1].type"),
    (
        "/v1/messages",
        {"model": "claude/fake-model", "max_tokens": 50, "messages": MESSAGES, "tools": WEB_SEARCH},
        "tools[0].type",
    ),
    (
        "/v1/chat/completions",
        {"model": "fake/fake-model", "messages": MESSAGES, "web_search_options": {}},
        "web_search_options",
    ),
    (
        "/proxy/fake/v1/chat/completions",
        {"model": "fake-model", "messages": MESSAGES, "web_search_options": {}},
        "web_search_options",
    ),
]


def gateway(budget: Budget) -> Any:
    up = FakeUpstream(usage=Usage(11, 7)).in_memory()
    providers = [
        fake_provider(up),
        fake_provider(up, "chatonly", responses=False),
        fake_provider(up, "claude", api="anthropic", auth="x-api-key"),
    ]
    student = Principal(key_id="student", is_admin=False, label="student")
    budgets = StaticBudgets({"student": budget})
    return inprocess_gateway(
        gateway_settings(*providers, prices=PRICES), up, keys={STUDENT: student}, budget_source=budgets
    )


@pytest.fixture
def hard_usd() -> Iterator[InProcessGateway]:
    with gateway(Budget(usd=10.0, period="daily")) as gw:
        yield gw


@pytest.mark.parametrize(("path", "body", "param"), CASES)
def test_a_tool_billed_by_the_call_is_refused_under_a_hard_usd_budget(
    hard_usd: InProcessGateway, path: str, body: dict[str, Any], param: str
) -> None:
    assert hard_usd.upstream is not None
    with hard_usd.client(STUDENT) as http:
        answer = http.post(path, json=body)
    assert answer.status_code == 403, answer.text
    error = answer.json()["error"]
    assert param in error["message"] and error.get("code", "price_unknown") == "price_unknown"  # Anthropic's has none
    assert not [r for r in hard_usd.upstream.requests if r.method == "POST"]


def test_a_bridged_request_drops_hosted_tools_and_passes(hard_usd: InProcessGateway) -> None:
    body = {"model": "chatonly/fake-model", "input": "hi", "tools": [{"type": "web_search"}]}
    with hard_usd.client(STUDENT) as http:
        assert http.post("/v1/responses", json=body).status_code == 200


@pytest.mark.parametrize("budget", [Budget(tokens=100_000, period="daily"), Budget(usd=10.0, mode="soft")])
def test_without_a_hard_usd_budget_hosted_tools_pass(budget: Budget) -> None:
    with gateway(budget) as gw, gw.client(STUDENT) as http:
        for path, body, _ in CASES:
            assert http.post(path, json=body).status_code == 200, path
