"""The request log (``GET /v1/requests``): the ledger's rows newest first, filtered, paged by a cursor that
stays right while rows are written; an admin sees all, another key its own and its children's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from anygate.accounting.ledger import UsageRow
from anygate.api.views import RequestList, RequestRecord
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

CHAT = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "hi"}]}
RECORD_FIELDS = set(RequestRecord.model_fields)
DAY = 1_764_547_200.0  # 2025-12-01T00:00:00Z


@pytest.fixture
def gw() -> Iterator[InProcessGateway]:
    up = FakeUpstream(usage=Usage(11, 7)).in_memory()
    settings = gateway_settings(fake_provider(up), prices={"fake/*": {"input": 1, "output": 2}})
    with inprocess_gateway(settings, up) as gateway:
        yield gateway


def row(request_id: str, created_at: float, **changes: Any) -> UsageRow:
    base = UsageRow(request_id, created_at, "key_x", None, "chat/completions", "fake", "fake-model", 10, 5, False,
                    0.00002, False, 200, 3.0, 1.0)  # fmt: skip
    return base._replace(**changes)


def record_rows(gw: InProcessGateway, *rows: UsageRow) -> None:
    for each in rows:
        gw.app.state.accounting.ledger.record(each)


def listed(gw: InProcessGateway, key: str | None = None, **params: Any) -> dict[str, Any]:
    with gw.client(key) if key else gw.client() as http:
        answer = http.get("/v1/requests", params=params)
    assert answer.status_code == 200, answer.text
    RequestList.model_validate(answer.json())
    body: dict[str, Any] = answer.json()
    return body


def ids(page: dict[str, Any]) -> list[str]:
    return [record["request_id"] for record in page["data"]]


def make_key(gw: InProcessGateway, by: str | None = None, **fields: Any) -> tuple[str, str]:
    with gw.client(by) if by else gw.client() as http:
        created = http.post("/v1/keys", json={"alias": "k", **fields})
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["key"]


def test_a_request_is_in_the_log_with_every_field(gw: InProcessGateway) -> None:
    with gw.client() as http:
        sent = http.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "req-one"})
        assert sent.status_code == 200
    [record] = listed(gw)["data"]
    assert set(record) == RECORD_FIELDS
    assert record["request_id"] == "req-one" and record["created_at"].endswith("Z")
    assert (record["route"], record["key_id"], record["provider"], record["model"]) == (
        "chat/completions",
        "admin",
        "fake",
        "fake-model",
    )
    assert (record["status"], record["input_tokens"], record["output_tokens"], record["usage_source"]) == (
        200,
        11,
        7,
        "reported",
    )
    assert record["cost_usd"] == pytest.approx((11 * 1 + 7 * 2) / 1e6) and record["cost_source"] == "configured"
    assert record["error"] is None and record["byok"] is False and record["latency_ms"] >= record["ttft_ms"] >= 0
    with gw.client() as http:
        one = http.get("/v1/requests/req-one")
    assert one.status_code == 200 and one.json() == record


def test_filters_narrow_the_log(gw: InProcessGateway) -> None:
    record_rows(
        gw,
        row("a", DAY + 1, key_id="key_a", user_id="usr_1"),
        row("b", DAY + 2, key_id="key_b", provider_id="other", model="big", status=429, error="budget_exceeded"),
        row("c", DAY + 86_400, key_id="key_a", estimated=True, cost_usd=None),
    )
    assert ids(listed(gw)) == ["c", "b", "a"]  # newest first
    assert ids(listed(gw, key_id="key_a")) == ["c", "a"]
    assert ids(listed(gw, user_id="usr_1")) == ["a"]
    assert ids(listed(gw, provider="other")) == ids(listed(gw, model="big")) == ["b"]
    assert ids(listed(gw, status=429)) == ["b"]
    assert ids(listed(gw, since=DAY + 2)) == ["c", "b"]
    assert ids(listed(gw, until=int(DAY + 2))) == ["a"]
    assert ids(listed(gw, since="2025-12-02", until="2025-12-02T00:00:01Z")) == ["c"]
    assert ids(listed(gw, since="2025-12-01T00:00:01.5+00:00", key_id="key_a")) == ["c"]
    refused = listed(gw, status=429)["data"][0]
    assert refused["error"] == "budget_exceeded"
    unpriced = listed(gw, key_id="key_a")["data"][0]
    assert (unpriced["usage_source"], unpriced["cost_usd"]) == ("estimated", None)


def test_pages_follow_the_cursor_and_rows_written_meanwhile_neither_repeat_nor_go_missing(
    gw: InProcessGateway,
) -> None:
    # Two rows share a time: the request id orders them.
    record_rows(gw, *(row(f"r{n}", DAY + n) for n in range(5)), row("r2b", DAY + 2))
    first = listed(gw, limit=2)
    assert ids(first) == ["r4", "r3"] and first["next_cursor"]
    # Meanwhile: a newer row (it belongs before page one), and an older one written late (a batch landing).
    record_rows(gw, row("new", DAY + 100), row("late", DAY + 0.5))
    second = listed(gw, limit=2, cursor=first["next_cursor"])
    assert ids(second) == ["r2b", "r2"]
    record_rows(gw, row("newer", DAY + 200))
    third = listed(gw, limit=2, cursor=second["next_cursor"])
    assert ids(third) == ["r1", "late"]
    last = listed(gw, limit=2, cursor=third["next_cursor"])
    assert ids(last) == ["r0"] and last["next_cursor"] is None
    assert ids(listed(gw, limit=200)) == ["newer", "new", "r4", "r3", "r2b", "r2", "r1", "late", "r0"]
    filtered = listed(gw, limit=1, key_id="key_x", since=DAY + 3)
    assert ids(listed(gw, limit=5, key_id="key_x", since=DAY + 3, cursor=filtered["next_cursor"])) == [
        "new",
        "r4",
        "r3",
    ]


def test_the_default_page_is_fifty_rows(gw: InProcessGateway) -> None:
    record_rows(gw, *(row(f"r{n:03d}", DAY + n) for n in range(51)))
    page = listed(gw)
    assert len(page["data"]) == 50 and ids(listed(gw, cursor=page["next_cursor"])) == ["r000"]


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("limit", "0"),
        ("limit", "201"),
        ("limit", "ten"),
        ("status", "42"),
        ("status", "600"),
        ("status", "ok"),
        ("since", "yesterday"),
        ("since", "-5"),
        ("until", "nan"),
        ("until", "2025-13-01"),
        ("cursor", "not-a-cursor"),
        ("cursor", "WzEsMl0"),  # base64url of [1,2]: a list, but not a row's keyset
    ],
)
def test_a_bad_filter_is_a_400_naming_it(gw: InProcessGateway, param: str, value: str) -> None:
    with gw.client() as http:
        answer = http.get("/v1/requests", params={param: value})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


def test_a_key_sees_its_own_rows_and_its_childrens_and_nothing_else(gw: InProcessGateway) -> None:
    parent_id, parent = make_key(gw)
    child_id, child = make_key(gw, by=parent)
    other_id, other = make_key(gw)
    sent: dict[str, str] = {}
    for name, key in (("parent", parent), ("child", child), ("other", other)):
        with gw.client(key) as http:
            answer = http.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": f"req-{name}"})
            assert answer.status_code == 200, answer.text
            sent[name] = answer.headers["x-request-id"]
    assert ids(listed(gw, parent)) == ["req-child", "req-parent"]
    assert ids(listed(gw, child)) == ["req-child"]
    assert ids(listed(gw, other)) == ["req-other"]
    assert ids(listed(gw)) == ["req-other", "req-child", "req-parent"]  # the admin: all
    # A filter narrows within what the key may see, never beyond it.
    assert ids(listed(gw, parent, key_id=child_id)) == ["req-child"]
    assert ids(listed(gw, parent, key_id=other_id)) == []
    assert ids(listed(gw, child, key_id=parent_id)) == []
    with gw.client(parent) as http:
        assert http.get("/v1/requests/req-child").json()["key_id"] == child_id
        hidden = http.get("/v1/requests/req-other")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "request_not_found"
    with gw.client(child) as http:
        assert http.get("/v1/requests/req-parent").status_code == 404
    with gw.client() as http:
        assert http.get("/v1/requests/req-other").json()["key_id"] == other_id
        assert http.get("/v1/requests/no-such-request").status_code == 404
        assert http.get("/v1/requests", headers={"Authorization": "Bearer sk-ag-wrong"}).status_code == 401
