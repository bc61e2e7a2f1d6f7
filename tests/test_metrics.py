"""``/metrics``: spend in USD by provider, model and key alias, what each budget has left, bounded label
values; in-process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from anygate.auth import Budget, Principal
from anygate.telemetry import Metrics
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

STUDENT = "sk-ag-student-metrics-0000000000000000"
CHILD = "sk-ag-child-metrics-00000000000000000000"
MODEL = "fake/fake-model"
HI: list[Any] = [{"role": "user", "content": "hi"}]
PRICES = {"fake/*": {"input": 1000, "output": 2000}}  # USD per million tokens: 7 in and 3 out cost $0.013
COST = 0.013


def student(budget: Budget | None = None, user_budget: Budget | None = None, **fields: Any) -> Principal:
    budgets = {
        "budgets": () if budget is None else (budget,),
        "user_budgets": () if user_budget is None else (user_budget,),
    }
    return Principal(key_id="key_student", is_admin=False, label="student-1", **budgets, **fields)


@contextmanager
def gateway(upstream: FakeUpstream, keys: dict[str, Principal], **settings: Any) -> Iterator[InProcessGateway]:
    with inprocess_gateway(
        gateway_settings(fake_provider(upstream), prices=PRICES, **settings), upstream, keys=keys
    ) as gw:
        yield gw


@pytest.fixture
def upstream() -> FakeUpstream:
    up = FakeUpstream().in_memory()
    up.usage = Usage(7, 3)
    return up


def samples(gw: InProcessGateway, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of one metric from ``/metrics``, by its sorted labels."""
    with gw.client(None) as http:
        answer = http.get("/metrics")
    assert answer.status_code == 200
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def chat(gw: InProcessGateway, key: str, model: str = MODEL) -> None:
    with gw.sdk(key) as client:
        client.chat.completions.create(model=model, messages=HI)


def test_spend_is_counted_by_provider_model_and_key_alias(upstream: FakeUpstream) -> None:
    keys = {STUDENT: student(), CHILD: Principal(key_id="key_child", is_admin=False)}  # no alias: its id
    with gateway(upstream, keys) as gw:
        chat(gw, STUDENT)
        chat(gw, STUDENT)
        chat(gw, CHILD)
        spend = samples(gw, "anygate_spend_usd_total")
    assert spend == {
        (("key", "student-1"), ("model", "fake-model"), ("provider", "fake")): pytest.approx(2 * COST),
        (("key", "key_child"), ("model", "fake-model"), ("provider", "fake")): pytest.approx(COST),
    }


def test_what_a_callers_own_provider_key_paid_is_not_the_gateways_spend(upstream: FakeUpstream) -> None:
    with gateway(upstream, {STUDENT: student()}) as gw:
        gw.app.state.caller_keys.replace({("key_student", "fake"): "the-callers-own-key"}, frozenset())
        chat(gw, STUDENT)
        spend = samples(gw, "anygate_spend_usd_total")
    assert upstream.requests_to("/v1/chat/completions")[-1].headers["authorization"] == "Bearer the-callers-own-key"
    assert spend == {}


def test_an_unlisted_model_is_one_label_value(upstream: FakeUpstream) -> None:
    with gateway(upstream, {STUDENT: student()}) as gw, gw.client(STUDENT) as http:
        for name in ("made-up-1", "made-up-2"):  # through /proxy, any name reaches the upstream
            answer = http.post("/proxy/fake/v1/chat/completions", json={"model": name, "messages": HI})
            assert answer.status_code == 200
        spend = samples(gw, "anygate_spend_usd_total")
    assert spend == {(("key", "student-1"), ("model", "unlisted"), ("provider", "fake")): pytest.approx(2 * COST)}


def test_each_budget_of_a_key_and_its_user_tells_what_is_left(upstream: FakeUpstream) -> None:
    principal = student(
        budget=Budget(usd=1.0, tokens=1000, period="daily"),
        user_id="usr_course",
        user_budget=Budget(usd=5.0, period="monthly"),
    )
    with gateway(upstream, {STUDENT: principal}) as gw:
        assert samples(gw, "anygate_budget_remaining") == {}  # nothing settled yet
        chat(gw, STUDENT)
        first = samples(gw, "anygate_budget_remaining")
        chat(gw, STUDENT)
        second = samples(gw, "anygate_budget_remaining")
    key = (("alias", "student-1"), ("id", "key_student"), ("scope", "key"))
    user = (("alias", ""), ("id", "usr_course"), ("scope", "user"))
    assert first == {
        (*key, ("unit", "tokens")): 990.0,
        (*key, ("unit", "usd")): pytest.approx(1.0 - COST),
        (*user, ("unit", "usd")): pytest.approx(5.0 - COST),
    }
    assert second[(*key, ("unit", "tokens"))] == 980.0
    assert second[(*user, ("unit", "usd"))] == pytest.approx(5.0 - 2 * COST)


def test_a_key_made_by_another_names_both_budgets(upstream: FakeUpstream) -> None:
    parent = Principal(key_id="key_parent", is_admin=False, label="course", budgets=(Budget(tokens=5000),))
    child = Principal(key_id="key_child", is_admin=False, label="team-a", ancestors=(parent,))
    with gateway(upstream, {CHILD: child}) as gw:
        chat(gw, CHILD)
        left = samples(gw, "anygate_budget_remaining")
    assert left == {(("alias", "course"), ("id", "key_parent"), ("scope", "key"), ("unit", "tokens")): 4990.0}


def test_key_labels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("anygate.telemetry.KEY_LABEL_LIMIT", 2)
    metrics = Metrics()
    for alias in ("a", "b", "c", "a", "d"):
        metrics.count_spend("p", "m", alias, 1.0)
    spend = {
        sample.labels["key"]: sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
        if sample.name == "anygate_spend_usd_total"
    }
    assert spend == {"a": 2.0, "b": 1.0, "other": 2.0}


def test_metrics_name_no_secret(upstream: FakeUpstream) -> None:
    with gateway(upstream, {STUDENT: student(budget=Budget(usd=1.0))}) as gw:
        chat(gw, STUDENT)
        with gw.client(None) as http:
            text = http.get("/metrics").text
    assert "anygate_spend_usd_total" in text and "anygate_budget_remaining" in text
    assert STUDENT not in text and "sk-ag-" not in text
