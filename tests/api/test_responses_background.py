"""A background Responses run is answered ``queued`` and generates after the answer, where anygate never sees
it: nothing would count it against any budget, and its result is reachable only with the operator's provider
key. ``background: true`` is refused on every route that passes a Responses request on, native or bridged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from anygate.accounting.budgets import StaticBudgets
from anygate.auth import Budget, Principal
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

STUDENT = "sk-ag-student-background-000000000"


@pytest.fixture
def gw() -> Iterator[InProcessGateway]:
    up = FakeUpstream(usage=Usage(11, 7)).in_memory()
    provider = fake_provider(up, proxy_endpoints=["POST responses"])
    student = Principal(key_id="student", is_admin=False, label="student")
    budgets = StaticBudgets({"student": Budget(tokens=100_000, period="daily")})
    with inprocess_gateway(gateway_settings(provider), up, keys={STUDENT: student}, budget_source=budgets) as g:
        yield g


@pytest.mark.parametrize(
    ("path", "model"), [("/v1/responses", "fake/fake-model"), ("/proxy/fake/v1/responses", "fake-model")]
)
def test_a_background_response_is_refused_before_it_reaches_the_upstream(
    gw: InProcessGateway, path: str, model: str
) -> None:
    assert gw.upstream is not None
    with gw.client(STUDENT) as http:
        refused = http.post(path, json={"model": model, "input": "write a novel", "background": True})
        served = http.post(path, json={"model": model, "input": "hi", "background": False})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "background"
    assert served.status_code == 200, served.text
    assert len(gw.upstream.requests_to("/v1/responses")) == 1
