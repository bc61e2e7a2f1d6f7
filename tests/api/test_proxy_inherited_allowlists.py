"""A model allowlist a key inherits (its team's, or a key above it) binds ``/proxy`` as its own does: a POST
must name a model the allowlist holds, never leave the upstream to pick its default."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

MESSAGES = [{"role": "user", "content": "hi"}]


def team_member_key(gw: InProcessGateway) -> str:
    """A key with no allowlist of its own, whose user's team may use one model."""
    gw.created("/v1/teams", {"id": "comp318", "name": "COMP318", "models": ["fake/fake-model"]})
    user = gw.created("/v1/users", {"name": "student", "team_id": "comp318"})
    return str(gw.created("/v1/keys", {"alias": "student", "user_id": user["id"]})["key"])


def child_of_a_narrowed_key(gw: InProcessGateway) -> str:
    """A key made (with no allowlist) by a key an admin narrowed afterwards."""
    parent = gw.created("/v1/keys", {"alias": "parent"})
    child = gw.created("/v1/keys", {"alias": "child"}, key=parent["key"])
    with gw.client() as http:
        assert http.patch(f"/v1/keys/{parent['id']}", json={"models": ["fake/fake-model"]}).status_code == 200
    return str(child["key"])


@pytest.mark.parametrize("holder", [team_member_key, child_of_a_narrowed_key])
@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("chat/completions", {"messages": MESSAGES}),
        ("chat/completions", {"model": ["fake-model"], "messages": MESSAGES}),
        ("chat/completions", {"model": None, "messages": MESSAGES}),
        ("embeddings", {"input": "hi"}),
    ],
)
def test_an_inherited_model_allowlist_needs_a_model_through_the_proxy(
    gw: InProcessGateway, holder: Any, endpoint: str, body: dict[str, Any]
) -> None:
    key = holder(gw)
    assert gw.upstream is not None
    gw.upstream.requests.clear()
    with gw.client(key) as http:
        refused = http.post(f"/proxy/fake/v1/{endpoint}", json=body)
        named = http.post(f"/proxy/fake/v1/{endpoint}", json={**body, "model": "fake-model"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "invalid_model"
    assert named.status_code == 200, named.text
    assert len(gw.upstream.requests_to(f"/v1/{endpoint}")) == 1


@pytest.mark.parametrize("models", [["fake/*"], ["fa*"], ["fake/fake-model"]])
def test_a_provider_no_model_pattern_reaches_is_closed_to_the_proxy(models: list[str]) -> None:
    """A key (or its team) held to models of one provider lists no other provider's models through the proxy."""
    up = FakeUpstream(usage=Usage(11, 7)).in_memory()
    settings = gateway_settings(fake_provider(up), fake_provider(up, "other"))
    with inprocess_gateway(settings, up) as gw:
        gw.created("/v1/teams", {"id": "comp318", "name": "COMP318", "models": models})
        user = gw.created("/v1/users", {"name": "student", "team_id": "comp318"})
        key = gw.created("/v1/keys", {"alias": "student", "user_id": user["id"]})["key"]
        with gw.client(key) as http:
            closed = http.get("/proxy/other/v1/models")
            opened = http.get("/proxy/fake/v1/models")
    assert closed.status_code == 403, closed.text
    assert closed.json()["error"]["code"] == "provider_not_allowed"
    assert opened.status_code == 200, opened.text
