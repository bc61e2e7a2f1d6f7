"""What a provider's live test (``POST /v1/providers/{id}/test``) finds is used: a provider found without
streaming or embeddings is not sent such requests; another serves them, or a 400 names what is missing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
EMBED = {"model": "m", "input": "hello"}


def two_providers(up: FakeUpstream) -> list[dict[str, Any]]:
    return [fake_provider(up, name, api_key=f"key-{name}") for name in ("plain", "full")]


def probe_without(gw: InProcessGateway, up: FakeUpstream, provider_id: str, missing: str) -> dict[str, Any]:
    """Run the provider's live test with the upstream refusing ``missing`` (streaming or embeddings)."""
    if missing == "streaming":  # the plain chat answers; both streams (with and without usage) are refused
        refused = Reply.error(400, "stream is not supported")
        up.script(Reply(stream=False), refused, refused, path="/v1/chat/completions")
    else:
        up.script(Reply.error(404, "no embeddings here"), path="/v1/embeddings")
    with gw.client() as http:
        found = http.post(f"/v1/providers/{provider_id}/test", json={"model": "m"}).json()["capabilities"]
    assert found[missing] is False and found["chat"] is True
    return found


def keys_used(up: FakeUpstream, path: str) -> list[str]:
    return [r.headers["authorization"].removeprefix("Bearer key-") for r in up.requests_to(path)]


def test_a_provider_found_without_streaming_gets_no_streams_but_still_chats() -> None:
    up = FakeUpstream(models=("m",)).in_memory()
    with inprocess_gateway(gateway_settings(*two_providers(up), default_provider="plain"), up) as gw:
        probe_without(gw, up, "plain", "streaming")
        before = len(up.requests_to("/v1/chat/completions"))
        with gw.client() as http:
            for _ in range(4):
                assert http.post("/v1/chat/completions", json={**CHAT, "stream": True}).status_code == 200
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
            shown = http.get("/v1/providers").json()["data"]
    assert keys_used(up, "/v1/chat/completions")[before:] == ["full"] * 4 + ["plain"]
    assert [p["capabilities"]["streaming"] for p in shown if p["id"] == "plain"] == [False]


def test_a_provider_found_without_embeddings_gets_no_embeddings() -> None:
    up = FakeUpstream(models=("m",)).in_memory()
    with inprocess_gateway(gateway_settings(*two_providers(up), default_provider="plain"), up) as gw:
        probe_without(gw, up, "plain", "embeddings")
        before = len(up.requests_to("/v1/embeddings"))
        with gw.client() as http:
            for _ in range(3):
                assert http.post("/v1/embeddings", json=EMBED).status_code == 200
    assert keys_used(up, "/v1/embeddings")[before:] == ["full"] * 3


@pytest.mark.parametrize(
    ("missing", "route", "body", "param"),
    [
        ("streaming", "/v1/chat/completions", {**CHAT, "stream": True}, "stream"),
        ("embeddings", "/v1/embeddings", EMBED, "model"),
    ],
)
def test_with_no_capable_provider_left_a_400_names_the_capability(
    missing: str, route: str, body: dict[str, Any], param: str
) -> None:
    up = FakeUpstream(models=("m",)).in_memory()
    with inprocess_gateway(gateway_settings(fake_provider(up, "plain", api_key="key-plain")), up) as gw:
        probe_without(gw, up, "plain", missing)
        before = len(up.requests)
        with gw.client() as http:
            refused = http.post(route, json=body)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["code"], error["param"], error["type"]) == ("capability_unsupported", param, "invalid_request_error")
    assert missing in error["message"] and "'m'" in error["message"]
    assert len(up.requests) == before  # nothing was sent


@pytest.mark.parametrize(
    ("found", "missing"),
    [
        ({"models": True, "chat": True, "streaming": False, "embeddings": True}, {"streaming"}),
        ({"models": True, "chat": False, "streaming": False, "embeddings": False}, {"embeddings"}),
        ({"models": False, "chat": True, "streaming": True, "embeddings": False}, {"embeddings"}),
        # a provider that did not answer at all: nothing is known to be missing
        ({"models": False, "chat": False, "streaming": False, "embeddings": False}, set()),
        ({}, set()),
    ],
)
def test_what_a_probe_says_is_missing(found: dict[str, bool], missing: set[str]) -> None:
    from anygate.probe import missing_capabilities

    assert missing_capabilities(found) == missing
