"""Providers at runtime through the management API, against a real gateway and a fake upstream.

Ported from seed 002 (provider create and validation with provider_type=custom, list, routing, model
listing) plus our own cases (masking, merging, read-only file providers, SSRF, live test).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.store.conftest import ADMIN_KEY, upstream_provider
from tests.support.fake_transport import FakeNetwork
from tests.support.fake_upstream import FakeUpstream, Reply


@pytest.fixture
def upstream(network: FakeNetwork) -> FakeUpstream:
    return network.add(FakeUpstream(models=("fake-model", "fake-embed")))


def custom(upstream: FakeUpstream, provider_id: str = "campus", **fields: Any) -> dict[str, Any]:
    return {
        "id": provider_id,
        "type": "custom",
        "base_url": upstream.base_url,
        "api_key": "sk-upstream-secret-1",
        "allow_private_network": True,
        **fields,
    }


def test_create_custom_provider_persists_masks_key_and_serves_chat(open_sdk, upstream, make_settings, serve) -> None:
    gateway = serve(make_settings())
    with gateway.client() as http:
        created = http.post("/v1/providers", json=custom(upstream))
        assert created.status_code == 201, created.text
        assert created.json()["api_key"] == "***"
        assert created.json()["read_only"] is False
        assert "sk-upstream-secret-1" not in created.text
        listed = http.get("/v1/providers").json()
        assert "campus" in [p["id"] for p in listed["data"]]
        assert "sk-upstream-secret-1" not in http.get("/v1/providers/campus").text
    client = gateway.sdk(ADMIN_KEY)
    reply = client.chat.completions.create(model="campus/fake-model", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    chat = upstream.requests_to("/v1/chat/completions")[-1]
    assert chat.headers["authorization"] == "Bearer sk-upstream-secret-1"
    assert chat.json["model"] == "fake-model"
    stream = client.chat.completions.create(
        model="campus/fake-model", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_model_listing_returns_the_custom_backends_models(upstream, make_settings, serve) -> None:
    gateway = serve(make_settings())
    with gateway.client() as http:
        assert http.post("/v1/providers", json=custom(upstream)).status_code == 201
        models = http.get("/v1/providers/campus/models").json()
    assert {m["id"] for m in models["data"]} == {"campus/fake-model", "campus/fake-embed"}


def test_seed_002_field_names_are_accepted(upstream, make_settings, serve) -> None:
    gateway = serve(make_settings())
    body = {
        "id": "legacy",
        "name": "Legacy",
        "provider_type": "custom",
        "api_base": upstream.base_url,
        "allow_private_network": True,
    }
    with gateway.client() as http:
        created = http.post("/v1/providers", json=body)
        shown = http.get("/v1/providers/legacy").json()
        [listed] = [p for p in http.get("/v1/providers").json()["data"] if p["id"] == "legacy"]
    assert created.status_code == 201, created.text
    assert created.json()["type"] == "custom"
    assert created.json()["base_url"] == upstream.base_url
    assert created.json()["api_key"] is None
    # ... and the views give them back, beside ``type`` and ``base_url``
    for view in (created.json(), shown, listed):
        assert (view["provider_type"], view["api_base"]) == ("custom", upstream.base_url)
        assert (view["type"], view["base_url"]) == ("custom", upstream.base_url)


INVALID = [
    ({"id": "Not A Slug"}, "id"),
    ({"type": "no-such-preset"}, "type"),
    ({"base_url": None}, "base_url"),  # required for the custom type: named although the object raises it
    ({"base_url": "ftp://example.com/v1"}, "base_url"),
    ({"base_url": "https://user:pw@example.com/v1"}, "base_url"),
    ({"base_url": "http://169.254.169.254/v1"}, "base_url"),
    ({"base_url": "http://127.0.0.1:9/v1", "allow_private_network": False}, "base_url"),
    ({"base_url": "http://10.1.2.3/v1", "allow_private_network": False}, "base_url"),
    ({"base_url": "http://100.64.0.1/v1", "allow_private_network": False}, "base_url"),
    ({"base_url": "http://[fd00::1]/v1", "allow_private_network": False}, "base_url"),
    ({"base_url": "http://metadata.google.internal/v1"}, "base_url"),
    ({"timeout": -1}, "timeout"),
    ({"surprise": 1}, "surprise"),
    ({"api_key": 12}, "api_key"),
]


def test_invalid_provider_is_400_naming_the_field(upstream, make_settings, serve) -> None:
    gateway = serve(make_settings())
    with gateway.client() as http:
        for change, field in INVALID:
            body = {k: v for k, v in {**custom(upstream), **change}.items() if v is not None}
            response = http.post("/v1/providers", json=body)
            assert response.status_code == 400, (change, response.text)
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error"
            assert error["param"] == field, change
            assert field in error["message"]
        assert http.get("/v1/providers/campus").status_code == 404
        assert http.post("/v1/providers", content=b"{not json").status_code == 400
        assert http.post("/v1/providers", json=[1, 2]).status_code == 400


def test_every_preset_can_be_created(make_settings, serve) -> None:
    from anygate.catalog import PRESETS

    gateway = serve(make_settings())
    with gateway.client() as http:
        for preset in PRESETS:
            body: dict[str, Any] = {"id": f"p-{preset}", "type": preset, "api_key": "k" * 20, "enabled": False}
            if PRESETS[preset].base_url is None:
                body["base_url"] = "https://example.com/v1"
            response = http.post("/v1/providers", json=body)
            assert response.status_code == 201, (preset, response.text)
            assert response.json()["type"] == preset


def test_duplicate_id_is_409_also_against_a_file_provider(upstream, make_settings, serve) -> None:
    settings = make_settings(providers=[upstream_provider("fromfile", upstream.base_url)], config_file="x.yaml")
    gateway = serve(settings)
    with gateway.client() as http:
        assert http.post("/v1/providers", json=custom(upstream)).status_code == 201
        again = http.post("/v1/providers", json=custom(upstream))
        assert again.status_code == 409
        assert again.json()["error"]["param"] == "id"
        assert http.post("/v1/providers", json=custom(upstream, "fromfile")).status_code == 409


def test_file_provider_is_shown_read_only_and_cannot_change(upstream, make_settings, serve) -> None:
    settings = make_settings(providers=[upstream_provider("fromfile", upstream.base_url)], config_file="x.yaml")
    gateway = serve(settings)
    with gateway.client() as http:
        view = http.get("/v1/providers/fromfile").json()
        assert (view["origin"], view["read_only"]) == ("file", True)
        assert http.put("/v1/providers/fromfile", json={"name": "x"}).status_code == 409
        assert http.delete("/v1/providers/fromfile").status_code == 409
        listed = {p["id"]: p for p in http.get("/v1/providers").json()["data"]}
        assert listed["fromfile"]["origin"] == "file"


def test_put_merges_and_masked_or_empty_key_keeps_the_stored_key(open_sdk, upstream, make_settings, serve) -> None:
    gateway = serve(make_settings())
    client = gateway.sdk(ADMIN_KEY)

    def key_seen_upstream() -> str:
        client.chat.completions.create(model="campus/fake-model", messages=[{"role": "user", "content": "hi"}])
        return upstream.requests_to("/v1/chat/completions")[-1].headers.get("authorization", "")

    with gateway.client() as http:
        assert (
            http.post(
                "/v1/providers", json=custom(upstream, headers={"X-Tenant": "cs", "X-Auth-Token": "tok-secret-1"})
            ).status_code
            == 201
        )
        for kept in ("***", ""):
            updated = http.put("/v1/providers/campus", json={"name": "Campus LLM", "api_key": kept})
            assert updated.status_code == 200, updated.text
            assert updated.json()["name"] == "Campus LLM"
            assert updated.json()["api_key"] == "***"
            assert updated.json()["models"]  # merged: the rest of the provider is unchanged
            assert key_seen_upstream() == "Bearer sk-upstream-secret-1"
        shown = http.get("/v1/providers/campus").json()
        assert shown["headers"] == {"X-Tenant": "cs", "X-Auth-Token": "***"}
        assert http.put("/v1/providers/campus", json={"headers": shown["headers"]}).status_code == 200
        key_seen_upstream()
        seen = upstream.requests_to("/v1/chat/completions")[-1].headers
        assert (seen["x-tenant"], seen["x-auth-token"]) == ("cs", "tok-secret-1")
        assert http.put("/v1/providers/campus", json={"api_key": "sk-new-upstream-key"}).status_code == 200
        assert key_seen_upstream() == "Bearer sk-new-upstream-key"
        assert http.put("/v1/providers/campus", json={"base_url": "gopher://x"}).json()["error"]["param"] == "base_url"
        assert http.put("/v1/providers/nope", json={"name": "x"}).status_code == 404


def test_delete_removes_the_provider_from_routing(upstream, make_settings, serve) -> None:
    gateway = serve(make_settings())
    with gateway.client() as http:
        assert http.post("/v1/providers", json=custom(upstream)).status_code == 201
        assert http.delete("/v1/providers/campus").json() == {"id": "campus", "deleted": True}
        assert http.get("/v1/providers/campus").status_code == 404
        chat = http.post("/v1/chat/completions", json={"model": "campus/fake-model", "messages": []})
        assert chat.status_code == 404
        assert http.delete("/v1/providers/campus").status_code == 404


def test_live_test_records_capabilities(upstream, make_settings, serve) -> None:
    gateway = serve(make_settings())
    upstream.script(Reply.error(404, "no embeddings here"), path="/v1/embeddings")
    with gateway.client() as http:
        assert http.post("/v1/providers", json=custom(upstream)).status_code == 201
        result = http.post("/v1/providers/campus/test", json={"model": "fake-model"})
        assert result.status_code == 200, result.text
        found = result.json()["capabilities"]
        expected = {"models": True, "chat": True, "streaming": True, "stream_usage": True, "embeddings": False}
        assert found == {**expected, "responses": True}
        shown = http.get("/v1/providers/campus").json()["capabilities"]
        assert {k: v for k, v in shown.items() if k != "checked_at"} == found
        again = http.post("/v1/providers/campus/test").json()
        assert again["embeddings"]["model"] == "fake-embed"
        assert again["capabilities"]["embeddings"] is True
        assert http.post("/v1/providers/nope/test").status_code == 404


def test_user_keys_cannot_manage_providers(upstream, make_settings, serve) -> None:
    gateway = serve(make_settings())
    with gateway.client() as http:
        user_key = http.post("/v1/keys", json={"alias": "student"}).json()["key"]
    with gateway.client(user_key) as http:
        assert http.post("/v1/providers", json=custom(upstream)).status_code == 403
        assert http.get("/v1/providers/campus").status_code == 403
        assert http.put("/v1/providers/campus", json={}).status_code == 403
        assert http.delete("/v1/providers/campus").status_code == 403
        assert http.post("/v1/providers/campus/test").status_code == 403
        assert http.get("/v1/providers").status_code == 200


def test_routing_settings_are_accepted_shown_and_extra_keys_masked(upstream, make_settings, serve) -> None:
    settings = make_settings(providers=[upstream_provider("fromfile", upstream.base_url)], config_file="x.yaml")
    gateway = serve(settings)
    routing = {"weight": 2.5, "priority": 1, "timeouts": {"connect": 5.0, "first_byte": 20.0, "total": 120.0}}
    with gateway.client() as http:
        created = http.post("/v1/providers", json=custom(upstream, api_keys=["sk-extra-1", "sk-extra-2"], **routing))
        assert created.status_code == 201, created.text
        view = created.json()
        assert (view["weight"], view["priority"], view["api_keys"]) == (2.5, 1, ["***", "***"])
        assert view["timeouts"] == {"connect": 5.0, "first_byte": 20.0, "idle": None, "total": 120.0}
        assert "sk-extra" not in created.text and "sk-extra" not in http.get("/v1/providers/campus").text
        listed = {p["id"]: p for p in http.get("/v1/providers").json()["data"]}
        assert (listed["campus"]["read_only"], listed["fromfile"]["read_only"]) == (False, True)

        def extra_keys() -> list[str]:
            runtime = gateway.app.state.registry.find("campus")
            return [key.get_secret_value() for key in runtime.config.api_keys]

        assert extra_keys() == ["sk-extra-1", "sk-extra-2"]
        kept = http.put("/v1/providers/campus", json={"api_keys": ["***", "sk-extra-3"], "priority": 0})
        assert kept.status_code == 200, kept.text
        assert (kept.json()["api_keys"], kept.json()["priority"]) == (["***", "***"], 0)
        assert extra_keys() == ["sk-extra-1", "sk-extra-3"]
        for body, field in [
            ({"api_keys": ["***", "***", "***"]}, "api_keys.2"),
            ({"headers": {"X-New": "***"}}, "headers.X-New"),
            ({"weight": 0}, "weight"),
            ({"timeouts": {"connect": "soon"}}, "timeouts.connect"),
        ]:
            refused = http.put("/v1/providers/campus", json=body)
            assert refused.status_code == 400 and refused.json()["error"]["param"] == field, refused.text
        assert extra_keys() == ["sk-extra-1", "sk-extra-3"]
        masked_on_create = http.post("/v1/providers", json=custom(upstream, "other", api_key="***"))
        assert masked_on_create.json()["error"]["param"] == "api_key"
