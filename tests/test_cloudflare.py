"""Cloudflare in front of upstreams: Access service tokens (``cloudflare_access``) and AI Gateway."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from anygate.catalog import CLOUDFLARE_ROUTES, PRESETS
from anygate.errors import ConfigError
from anygate.settings import ProviderConfig, load_settings
from anygate.transport.aiohttp_transport import AiohttpTransport
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.support.recording_proxy import RecordingProxy

CLIENT_ID = "0123abcd.access"
CLIENT_SECRET = "cf-access-secret-9f8e7d6c5b4a"
ACCESS = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
CHAT = {"model": "edge/fake-model", "messages": [{"role": "user", "content": "hi"}]}


def chat(gw: InProcessGateway) -> Any:
    with gw.client() as http:
        return http.post("/v1/chat/completions", json=CHAT)


def access_headers(request: Any) -> tuple[str | None, str | None]:
    headers = {name.lower(): value for name, value in request.headers.items()}
    return headers.get("cf-access-client-id"), headers.get("cf-access-client-secret")


# ------------------------------------------------------------------------------ Cloudflare Access


def test_a_provider_behind_cloudflare_access_gets_both_headers_on_every_request() -> None:
    up = FakeUpstream().in_memory()
    with inprocess_gateway(gateway_settings(fake_provider(up, "edge", cloudflare_access=ACCESS)), up) as gw:
        assert chat(gw).status_code == 200
    assert up.requests_to("/v1/models") and up.requests_to("/v1/chat/completions")
    assert {access_headers(r) for r in up.requests} == {(CLIENT_ID, CLIENT_SECRET)}


@pytest.mark.sockets
def test_the_access_headers_go_through_a_proxy_too() -> None:
    """Whatever the proxy settings are: the headers are the upstream's, the proxy only forwards them."""
    with FakeUpstream.start_in_thread() as up, RecordingProxy.start_in_thread() as proxy:
        provider = fake_provider(up, "edge", cloudflare_access=ACCESS, proxy={"url": proxy.url})
        with inprocess_gateway(gateway_settings(provider), transport=AiohttpTransport()) as gw:
            assert chat(gw).status_code == 200
    assert f"POST {up.base_url}/chat/completions" in proxy.targets
    assert access_headers(up.requests_to("/v1/chat/completions")[0]) == (CLIENT_ID, CLIENT_SECRET)


@pytest.mark.parametrize("half", [{"client_id": CLIENT_ID}, {"client_secret": CLIENT_SECRET}])
def test_only_one_half_of_an_access_token_is_refused_at_load(half: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="cloudflare_access"):
        ProviderConfig.model_validate({"id": "openai", "cloudflare_access": half})
    config = Path("anygate.yaml")
    config.write_text(f"providers:\n  - id: openai\n    cloudflare_access: {half}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"providers\.0\.cloudflare_access\.client_(id|secret): Field required"):
        load_settings({"config_file": str(config)}, {})


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CF_ACCESS_CLIENT_ID": CLIENT_ID}, "CF_ACCESS_CLIENT_SECRET"),
        ({"CF_ACCESS_CLIENT_SECRET": "s"}, "CF_ACCESS_CLIENT_ID"),
    ],
)
def test_only_one_access_variable_is_refused_at_load(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=f"without {named}"):
        load_settings({}, {"OPENAI_COMPATIBLE_API_KEY": "k", **env})
    both = {
        "OPENAI_COMPATIBLE_API_KEY": "k",
        "CF_ACCESS_CLIENT_ID": CLIENT_ID,
        "CF_ACCESS_CLIENT_SECRET": CLIENT_SECRET,
    }
    [provider] = load_settings({}, both).providers
    assert provider.headers == {"CF-Access-Client-Id": CLIENT_ID, "CF-Access-Client-Secret": CLIENT_SECRET}


@pytest.mark.parametrize(
    ("half", "param"),
    [
        ({"client_id": CLIENT_ID}, "cloudflare_access.client_secret"),
        ({"client_secret": CLIENT_SECRET}, "cloudflare_access.client_id"),
        ({"client_id": CLIENT_ID, "client_secret": ""}, "cloudflare_access.client_secret"),
    ],
)
def test_only_one_half_of_an_access_token_is_a_400_at_save(half: dict[str, str], param: str) -> None:
    body = {"id": "edge", "type": "openai", "api_key": "k", "cloudflare_access": half}
    with inprocess_gateway(gateway_settings()) as gw, gw.client() as http:
        refused = http.post("/v1/providers", json=body)
        assert http.get("/v1/providers/edge").status_code == 404
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == param
    assert CLIENT_SECRET not in refused.text


def test_the_access_secret_is_encrypted_masked_kept_and_never_follows_a_move() -> None:
    up = FakeUpstream().in_memory()
    body = fake_provider(up, "edge", cloudflare_access=ACCESS)
    with inprocess_gateway(gateway_settings(), up) as gw, gw.client() as http:
        created = http.post("/v1/providers", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["cloudflare_access"] == {"client_id": CLIENT_ID, "client_secret": "***"}
        assert "CF-Access-Client-Secret" not in created.json()["headers"]
        masked = {"cloudflare_access": created.json()["cloudflare_access"], "timeout": 20}
        assert http.put("/v1/providers/edge", json=masked).status_code == 200
        assert chat(gw).status_code == 200
        moved = http.put("/v1/providers/edge", json={"base_url": "http://elsewhere.test/v1", "api_key": "k2"})
        shown = http.get("/v1/providers/edge").text + http.get("/v1/providers").text
    assert access_headers(up.requests_to("/v1/chat/completions")[-1]) == (CLIENT_ID, CLIENT_SECRET)
    assert moved.status_code == 400
    assert (moved.json()["error"]["code"], moved.json()["error"]["param"]) == (
        "api_key_required",
        "cloudflare_access.client_secret",
    )
    with sqlite3.connect(Path.cwd() / "data" / "anygate.db") as db:
        stored = " ".join(str(v) for row in db.execute("select config, secrets from providers") for v in row)
    assert CLIENT_SECRET not in stored and CLIENT_SECRET not in shown


def test_an_upstream_echoing_the_access_secret_has_it_redacted() -> None:
    up = FakeUpstream().in_memory()
    up.script(Reply.error(403, f"Access denied for {CLIENT_SECRET}"), path="/v1/chat/completions")
    with inprocess_gateway(gateway_settings(fake_provider(up, "edge", cloudflare_access=ACCESS)), up) as gw:
        answer = chat(gw)
    assert answer.status_code == 403
    assert CLIENT_SECRET not in answer.text and "***" in answer.text


# ------------------------------------------------------------------------------ Cloudflare AI Gateway

CF_TOKEN = "cf-aig-token-5e4d3c2b1a"


def cloudflare_path(preset: str) -> str:
    """Where Cloudflare's gateway takes a chat for ``preset``: its slug and path. Anthropic answers chat
    completions on its OpenAI-compatible endpoint, so every preset's chat ends the same way."""
    route = CLOUDFLARE_ROUTES[preset]
    return "/".join(p for p in ("/v1/acct/gw", route.slug, route.path, "chat/completions") if p)


def vendor_key_header(preset: str, headers: Any) -> str:
    if PRESETS[preset].auth == "x-api-key":
        return str(headers["x-api-key"])
    return str(headers["authorization"]).removeprefix("Bearer ")


@pytest.mark.sockets
def test_every_preset_cloudflare_fronts_goes_through_the_gateway_wide_default() -> None:
    """Real requests, one per preset, through a loopback stand-in for the gateway's host: each in Cloudflare's
    own slug and path, with the gateway's token and the vendor's own key."""
    with FakeUpstream.start_in_thread() as standin:
        gateway = {
            "account_id": "acct",
            "gateway_id": "gw",
            "token": CF_TOKEN,
            "host": standin.url,
            "allow_private_network": True,
        }
        providers = [{"id": preset, "api_key": f"key-{preset}", "max_retries": 0} for preset in CLOUDFLARE_ROUTES]
        settings = gateway_settings(*providers, cloudflare_ai_gateway=gateway)
        for preset in CLOUDFLARE_ROUTES:
            standin.script(
                Reply(json={"id": preset, "object": "chat.completion", "choices": []}), path=cloudflare_path(preset)
            )
        with inprocess_gateway(settings, transport=AiohttpTransport()) as gw, gw.client() as http:
            for preset in CLOUDFLARE_ROUTES:
                model = "sonar" if preset == "perplexity" else "some-model"  # Perplexity lists its models
                body = {"model": f"{preset}/{model}", "messages": [{"role": "user", "content": "hi"}]}
                answer = http.post("/v1/chat/completions", json=body)
                assert answer.status_code == 200 and answer.json()["id"] == preset, answer.text
            shown = {p["id"]: p["base_url"] for p in http.get("/v1/providers").json()["data"]}
    chats = [r for r in standin.requests if r.path.endswith("/chat/completions")]
    assert [r.path for r in chats] == [cloudflare_path(preset) for preset in CLOUDFLARE_ROUTES]
    for preset, request in zip(CLOUDFLARE_ROUTES, chats, strict=True):
        assert request.headers["cf-aig-authorization"] == f"Bearer {CF_TOKEN}"
        assert vendor_key_header(preset, request.headers) == f"key-{preset}"
    assert shown["mistral"] == f"{standin.url}/v1/acct/gw/mistral/v1"
    assert CF_TOKEN not in str(shown)


def test_the_default_gateway_leaves_alone_what_it_does_not_front_or_what_names_its_own_url() -> None:
    gateway = {"account_id": "acct", "gateway_id": "gw", "token": CF_TOKEN}
    settings = gateway_settings(
        {"id": "fireworks", "api_key": "k"},
        {"id": "groq", "api_key": "k", "base_url": "https://groq-mirror.example.com/openai/v1"},
        {"id": "openai", "api_key": "k"},
        cloudflare_ai_gateway=gateway,
    )
    routed = {p.id: settings.routed(p).base_url for p in settings.providers}
    assert routed == {
        "fireworks": "https://api.fireworks.ai/inference/v1",
        "groq": "https://groq-mirror.example.com/openai/v1",
        "openai": "https://gateway.ai.cloudflare.com/v1/acct/gw/openai",
    }
    assert settings.routed(settings.routed(settings.providers[2])) == settings.routed(settings.providers[2])


def test_the_gateway_wide_host_serves_every_via_without_a_host_of_its_own() -> None:
    via = {"cloudflare": {"account_id": "a2", "gateway_id": "g2"}}
    own = {"cloudflare": {"account_id": "a3", "gateway_id": "g3", "host": "https://aig.example.net"}}
    settings = gateway_settings(
        {"id": "xai", "api_key": "k", "via": via},
        {"id": "deepseek", "api_key": "k", "via": own},
        cloudflare_ai_gateway={"host": "https://aig.internal.example.com"},
    )
    routed = [settings.routed(p).base_url for p in settings.providers]
    assert routed == ["https://aig.internal.example.com/v1/a2/g2/grok/v1", "https://aig.example.net/v1/a3/g3/deepseek"]


def test_the_gateway_wide_default_comes_from_the_environment() -> None:
    environ = {
        "CF_AI_GATEWAY_ACCOUNT_ID": "acct",
        "CF_AI_GATEWAY_ID": "gw",
        "CF_AI_GATEWAY_TOKEN": CF_TOKEN,
        "CF_AI_GATEWAY_HOST": "https://aig.example.org/",
        "OPENAI_COMPATIBLE_API_KEY": "k",  # OpenRouter, by default
    }
    settings = load_settings({}, environ)
    [provider] = settings.providers
    routed = settings.routed(provider)
    assert routed.base_url == "https://aig.example.org/v1/acct/gw/openrouter"
    assert routed.headers["cf-aig-authorization"] == f"Bearer {CF_TOKEN}"
    assert CF_TOKEN not in repr(settings)


@pytest.mark.parametrize(
    ("gateway", "message"),
    [
        ({"account_id": "acct"}, "account_id and gateway_id go together"),
        ({"token": "t"}, "a token needs the gateway"),
        ({"host": "https://aig.example.org/some/path"}, "no path"),
        ({"host": "ftp://aig.example.org"}, "http"),
    ],
)
def test_a_half_gateway_is_refused_at_load(gateway: dict[str, str], message: str) -> None:
    config = Path("anygate.yaml")
    config.write_text(f"cloudflare_ai_gateway: {gateway}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings({"config_file": str(config)}, {})
