"""What a stored provider may carry: headers that cannot frame or split requests (refused on save, a stored
row from before skipped with a logged error), and secrets that do not follow it to another host."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.store.conftest import store_directly
from tests.support.fake_transport import FakeNetwork
from tests.support.fake_upstream import FakeUpstream

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstream(network: FakeNetwork) -> FakeUpstream:
    return network.add(FakeUpstream())


def custom(upstream: FakeUpstream, provider_id: str = "campus", **fields: Any) -> dict[str, Any]:
    return {
        "id": provider_id,
        "type": "custom",
        "base_url": upstream.base_url,
        "api_key": "sk-upstream-secret-1",
        "allow_private_network": True,
        "models": ["fake-model"],
        **fields,
    }


# ------------------------------------------------------------------------------------------ headers


@pytest.mark.parametrize(
    ("headers", "param"),
    [
        ({"Host": "other.example"}, "headers.Host"),
        ({"Transfer-Encoding": "chunked"}, "headers.Transfer-Encoding"),
        ({"Content-Length": "5"}, "headers.Content-Length"),
        ({"Proxy-Authorization": "Basic x"}, "headers.Proxy-Authorization"),
        ({"X-Tenant": "cs\r\nX-Injected: secret-part"}, "headers.X-Tenant"),
        ({"Bad Name": "x"}, "headers.Bad Name"),
    ],
)
def test_a_framing_header_or_a_line_break_is_400_invalid_header(upstream, make_settings, serve, headers, param) -> None:
    gateway = serve(make_settings())
    with gateway.client() as http:
        created = http.post("/v1/providers", json=custom(upstream, headers=headers))
        assert created.status_code == 400, created.text
        error = created.json()["error"]
        assert (error["code"], error["param"]) == ("invalid_header", param)
        assert "secret-part" not in created.text
        assert http.get("/v1/providers/campus").status_code == 404
        assert http.post("/v1/providers", json=custom(upstream, headers={"X-Tenant": "cs"})).status_code == 201
        changed = http.put("/v1/providers/campus", json={"headers": headers})
        assert changed.status_code == 400 and changed.json()["error"]["code"] == "invalid_header"
        assert http.get("/v1/providers/campus").json()["headers"] == {"X-Tenant": "cs"}


def test_a_key_with_a_line_break_is_400(upstream, make_settings, serve) -> None:
    gateway = serve(make_settings())
    with gateway.client() as http:
        created = http.post("/v1/providers", json=custom(upstream, api_key="sk-abc\r\nX-Injected: 1"))
        assert created.status_code == 400 and created.json()["error"]["param"] == "api_key"
        created = http.post("/v1/providers", json=custom(upstream, api_keys=["sk-ok", "sk-\nbad"]))
        assert created.status_code == 400 and created.json()["error"]["param"] == "api_keys"


def test_a_stored_row_with_a_refused_header_is_skipped_with_a_logged_error(
    upstream, make_settings, serve, caplog
) -> None:
    settings = make_settings()
    bad = custom(upstream, "old", headers={"Host": "elsewhere.example", "X-Tenant": "cs\r\nX-Injected: secret-part"})
    bad.pop("api_key")
    store_directly(settings, bad, "sk-upstream-secret-1")
    with caplog.at_level(logging.ERROR, logger="anygate.store"):
        gateway = serve(settings)
    assert any(r.getMessage() == "stored provider skipped" for r in caplog.records)
    assert "secret-part" not in caplog.text
    with gateway.client() as http:
        assert http.post("/v1/providers", json=custom(upstream)).status_code == 201
        with gateway.sdk() as sdk:  # the other providers are served
            assert sdk.chat.completions.create(model="campus/fake-model", messages=HI).choices
        listed = {p["id"]: p for p in http.get("/v1/providers").json()["data"]}
        assert listed["old"]["unavailable"].startswith("invalid: headers: header Host:")
        shown = http.get("/v1/providers/old")
        assert shown.status_code == 200 and shown.json()["unavailable"].startswith("invalid: headers")
        assert "secret-part" not in http.get("/v1/providers").text + shown.text
        assert http.post("/v1/providers/old/test").json()["error"]["code"] == "invalid_stored_provider"
        fixed = http.put("/v1/providers/old", json={"headers": {"X-Tenant": "cs"}})
        assert fixed.status_code == 200, fixed.text
        assert "unavailable" not in fixed.json()
        with gateway.sdk() as sdk:
            assert sdk.chat.completions.create(model="old/fake-model", messages=HI).choices
    assert upstream.requests_to("/v1/chat/completions")[-1].headers["x-tenant"] == "cs"


# ------------------------------------------------------------------------------------ moving a provider


@pytest.fixture
def elsewhere(network: FakeNetwork) -> FakeUpstream:
    """Another host (another port on loopback): where an admin session would like the key to go."""
    return network.add(FakeUpstream())


def required(response: Any, param: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("api_key_required", param), error
    assert "sk-upstream-secret-1" not in response.text


def test_moving_a_provider_to_another_host_needs_its_key_again(upstream, elsewhere, make_settings, serve) -> None:
    gateway = serve(make_settings())
    with gateway.client() as http, gateway.sdk() as sdk:
        assert http.post("/v1/providers", json=custom(upstream)).status_code == 201
        for kept in ({}, {"api_key": "***"}, {"api_key": ""}):
            required(http.put("/v1/providers/campus", json={"base_url": elsewhere.base_url, **kept}), "api_key")
        https = upstream.base_url.replace("http://", "https://", 1)
        for other in (https, "http://localhost/v1"):  # another scheme, another host
            required(http.put("/v1/providers/campus", json={"base_url": other}), "api_key")
        # the same scheme, host and port: a change of path alone keeps the key
        assert http.put("/v1/providers/campus", json={"base_url": upstream.base_url + "/"}).status_code == 200
        sdk.chat.completions.create(model="campus/fake-model", messages=HI)
        assert elsewhere.requests == []
        sent = upstream.requests_to("/v1/chat/completions")[-1].headers
        assert sent["authorization"] == "Bearer sk-upstream-secret-1"
        moved = http.put("/v1/providers/campus", json={"base_url": elsewhere.base_url, "api_key": "sk-other-2"})
        assert moved.status_code == 200, moved.text
        sdk.chat.completions.create(model="campus/fake-model", messages=HI)
    assert elsewhere.requests_to("/v1/chat/completions")[-1].headers["authorization"] == "Bearer sk-other-2"


def test_no_stored_secret_follows_a_provider_to_another_host(upstream, elsewhere, make_settings, serve) -> None:
    gateway = serve(make_settings())
    headers = {"X-Tenant": "cs", "X-Api-Key": "hdr-secret-1"}
    with gateway.client() as http, gateway.sdk() as sdk:
        created = http.post("/v1/providers", json=custom(upstream, headers=headers, api_keys=["sk-extra-1"]))
        assert created.status_code == 201, created.text
        move = {"base_url": elsewhere.base_url, "api_key": "sk-other-2"}
        refused = http.put("/v1/providers/campus", json=move)
        required(refused, "api_keys")
        assert "headers.X-Api-Key" in refused.json()["error"]["message"]
        move["api_keys"] = ["***"]
        required(http.put("/v1/providers/campus", json=move), "api_keys")
        move["api_keys"] = ["sk-extra-2"]
        required(http.put("/v1/providers/campus", json=move), "headers.X-Api-Key")
        move["headers"] = {"X-Tenant": "cs", "X-Api-Key": "***"}  # what the console shows and sends back
        required(http.put("/v1/providers/campus", json=move), "headers.X-Api-Key")
        move["headers"] = {"X-Tenant": "cs"}  # a header shown in clear may follow
        assert http.put("/v1/providers/campus", json=move).status_code == 200
        sdk.chat.completions.create(model="campus/fake-model", messages=HI)
        sent = elsewhere.requests_to("/v1/chat/completions")[-1].headers
        assert sent["x-tenant"] == "cs" and "x-api-key" not in sent
        # removing the key is moving without it: nothing secret goes along
        back = http.put("/v1/providers/campus", json={"base_url": upstream.base_url, "api_key": None, "api_keys": []})
        assert back.status_code == 200, back.text
        assert back.json()["api_key"] is None
    assert not any("hdr-secret-1" in str(r.headers) for r in elsewhere.requests)


def test_a_via_token_does_not_follow_the_provider_to_another_gateway(make_settings, serve) -> None:
    gateway = serve(make_settings())
    via = {"cloudflare": {"account_id": "acct-1", "gateway_id": "gw", "token": "cf-secret-1"}}
    with gateway.client() as http:
        created = http.post("/v1/providers", json={"id": "oa", "type": "openai", "api_key": "sk-1", "via": via})
        assert created.status_code == 201, created.text
        other = {"cloudflare": {"account_id": "acct-2", "gateway_id": "gw", "token": "***"}}
        required(http.put("/v1/providers/oa", json={"via": other, "api_key": "sk-2"}), "via.cloudflare.token")
        other["cloudflare"]["token"] = "cf-secret-2"
        assert http.put("/v1/providers/oa", json={"via": other, "api_key": "sk-2"}).status_code == 200
        assert http.put("/v1/providers/oa", json={"type": "openai", "name": "renamed"}).status_code == 200


def test_the_cli_asks_for_the_key_again_when_the_host_changes(upstream, elsewhere, make_settings, monkeypatch) -> None:
    from typer.testing import CliRunner

    from anygate.cli import app

    settings = make_settings()
    monkeypatch.setenv("ANYGATE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("ANYGATE_DATABASE_URL", str(settings.database_url))
    runner = CliRunner()
    spec = custom(upstream)
    store_directly(settings, {k: v for k, v in spec.items() if k != "api_key"}, "sk-upstream-secret-1")
    refused = runner.invoke(app, ["providers", "update", "campus", "--base-url", elsewhere.base_url])
    assert refused.exit_code == 1
    assert "moves provider 'campus' to another host" in refused.output and "--api-key-stdin" in refused.output
    moved = runner.invoke(
        app, ["providers", "update", "campus", "--base-url", elsewhere.base_url, "--api-key-stdin"], input="sk-2\n"
    )
    assert moved.exit_code == 0, moved.output
