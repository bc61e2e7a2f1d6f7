"""A key's requests that change something (making, changing or revoking keys) count against its
requests-per-minute limit and its ancestors', as its model requests do: a key limited to a few requests a
minute cannot mint keys without limit, nor mint them through its children."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.accounting.gateway import ADMIN_KEY, fake_provider_settings
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.support.waiting import clear_of_a_minute_boundary

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
MODEL = "fake/fake-model"


@pytest.fixture
def gw(tmp_path: Path) -> Any:
    clear_of_a_minute_boundary()  # every test counts within one minute's window
    upstream = FakeUpstream(usage=Usage(7, 3)).in_memory()
    with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream) as gateway:
        yield gateway


def post_key(gw: InProcessGateway, key: str, **fields: Any) -> Any:
    with gw.client(key) as http:
        return http.post("/v1/keys", json={"alias": "k", **fields})


def minted(gw: InProcessGateway, key: str, **fields: Any) -> dict[str, Any]:
    reply = post_key(gw, key, **fields)
    assert reply.status_code == 201, reply.text
    return reply.json()  # type: ignore[no-any-return]


def chat_status(gw: InProcessGateway, key: str) -> int:
    with gw.client(key) as http:
        return http.post("/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES}).status_code


def test_a_key_limited_to_three_requests_a_minute_mints_three_keys_at_most(gw: InProcessGateway) -> None:
    parent = minted(gw, ADMIN_KEY, limits={"rpm": 3})
    statuses = [post_key(gw, parent["key"]).status_code for _ in range(5)]
    assert statuses == [201, 201, 201, 429, 429]
    refused = post_key(gw, parent["key"])
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert "Rate limit of 3 requests per minute" in refused.json()["error"]["message"]
    assert chat_status(gw, parent["key"]) == 429  # the same minute's counter as its model requests
    with gw.client(ADMIN_KEY) as http:
        made = [k for k in http.get("/v1/keys").json()["data"] if k.get("created_by") == parent["id"]]
    assert len(made) == 3  # nothing was made past the limit


def test_keys_minted_by_a_child_count_against_the_parents_limit(gw: InProcessGateway) -> None:
    parent = minted(gw, ADMIN_KEY, limits={"rpm": 2})
    child = minted(gw, parent["key"])  # the parent's first request this minute
    assert post_key(gw, child["key"]).status_code == 201  # the family's second
    assert post_key(gw, child["key"]).status_code == 429
    assert post_key(gw, parent["key"]).status_code == 429


def test_changing_and_revoking_keys_count_too(gw: InProcessGateway) -> None:
    parent = minted(gw, ADMIN_KEY, limits={"rpm": 2})
    child = minted(gw, parent["key"])
    with gw.client(parent["key"]) as http:
        assert http.patch(f"/v1/keys/{child['id']}", json={"alias": "renamed"}).status_code == 200
        assert http.delete(f"/v1/keys/{child['id']}").status_code == 429


def test_reads_are_not_counted_and_the_admin_key_is_never_limited(gw: InProcessGateway) -> None:
    parent = minted(gw, ADMIN_KEY, limits={"rpm": 1})
    with gw.client(parent["key"]) as http:
        assert all(http.get("/v1/keys").status_code == 200 for _ in range(5))
    assert post_key(gw, parent["key"]).status_code == 201
    assert [post_key(gw, ADMIN_KEY).status_code for _ in range(3)] == [201, 201, 201]


def test_a_key_without_limits_mints_as_before(gw: InProcessGateway) -> None:
    parent = minted(gw, ADMIN_KEY)
    assert [post_key(gw, parent["key"]).status_code for _ in range(5)] == [201] * 5
