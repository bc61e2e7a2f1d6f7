"""Every route that filters by time refuses a value that is not a time, the empty string included, with a
400 naming the parameter; it never reads a present-but-empty filter as "no filter"."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

TIME_FILTERS = [
    ("/v1/audit", "since"),
    ("/v1/audit", "until"),
    ("/v1/requests", "since"),
    ("/v1/requests", "until"),
    ("/v1/usage", "start"),
    ("/v1/usage", "end"),
]


@pytest.fixture(scope="module")
def gw() -> Iterator[InProcessGateway]:
    up = FakeUpstream().in_memory()
    with inprocess_gateway(gateway_settings(fake_provider(up)), up) as gateway:
        yield gateway


@pytest.mark.parametrize(("path", "param"), TIME_FILTERS)
@pytest.mark.parametrize("value", ["", " ", "yesterday", "2026-13-01", "2026-12-01T25:00:00Z"])
def test_a_value_that_is_not_a_time_is_a_400_naming_the_parameter(
    gw: InProcessGateway, path: str, param: str, value: str
) -> None:
    with gw.client() as http:
        answer = http.get(path, params={param: value})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


@pytest.mark.parametrize(("path", "param"), TIME_FILTERS)
def test_a_time_is_accepted(gw: InProcessGateway, path: str, param: str) -> None:
    with gw.client() as http:
        answer = http.get(path, params={param: "2026-12-01T00:00:00Z"})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("value", ["", "x", "-1"])
def test_an_audit_cursor_that_is_not_one_is_a_400(gw: InProcessGateway, value: str) -> None:
    with gw.client() as http:
        answer = http.get("/v1/audit", params={"cursor": value})
    assert answer.status_code == 400, answer.text
