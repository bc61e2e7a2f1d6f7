"""Secrets sent upstream never come back: an upstream that echoes a key (whatever it looks like) in an
error body or message has it replaced by ``***`` before a client, a log or a status view sees it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import openai
import pytest

from anygate.errors import UpstreamStatusError, redact_secrets
from anygate.upstream import DiscoveryFailed, OpenAICompatibleProvider
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

GROQ_KEY = "gsk_" + "Zq8x" * 12  # a Groq-style key: nothing like ``sk-...``
SECOND_KEY = "gsk_" + "Yb7w" * 12
HEADER_TOKEN = "orgtok_5f2c9e1d7a3b"
CF_TOKEN = "cfut_9a8b7c6d5e4f3a2b"
OWN_KEY = "AIzaSy" + "Kq3" * 11  # a caller's own key, Google style
CHAT = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def upstream() -> FakeUpstream:
    """In memory: what the gateway makes of an upstream's answer needs no socket between them."""
    return FakeUpstream().in_memory()


@contextmanager
def gateway(upstream: FakeUpstream, *other_keys: str) -> Iterator[InProcessGateway]:
    with inprocess_gateway(gateway_settings(keyed_provider(upstream, *other_keys)), upstream) as gw:
        yield gw


def keyed_provider(upstream: FakeUpstream, *other_keys: str) -> dict[str, object]:
    return fake_provider(
        upstream,
        api_key=GROQ_KEY,
        api_keys=list(other_keys),
        headers={"X-Org-Token": HEADER_TOKEN, "cf-aig-authorization": f"Bearer {CF_TOKEN}"},
    )


@pytest.mark.parametrize(
    ("data", "secrets", "redacted"),
    [
        (
            b'{"error":{"message":"bad key gsk_abcdefgh123"}}',
            ["gsk_abcdefgh123"],
            b'{"error":{"message":"bad key ***"}}',
        ),
        (b"key a\\/b\\/cdefgh and a/b/cdefgh", ["a/b/cdefgh"], b"key *** and ***"),  # as JSON escapes it too
        (b"Bearer token-abcdefgh", ["token-abcdefgh", "Bearer token-abcdefgh"], b"***"),  # the longer first
        (b"tenant cs in cs", ["cs"], b"tenant cs in cs"),  # too short to be a secret
        (b"nothing here", [], b"nothing here"),
    ],
)
def test_redact_secrets(data: bytes, secrets: list[str], redacted: bytes) -> None:
    assert redact_secrets(data, secrets) == redacted


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500])
@pytest.mark.parametrize("echoed", [GROQ_KEY, HEADER_TOKEN, CF_TOKEN, f"Bearer {GROQ_KEY}"])
def test_an_upstream_error_echoing_a_secret_reaches_the_client_redacted(
    upstream: FakeUpstream, status: int, echoed: str
) -> None:
    upstream.script(Reply.error(status, f"Invalid credentials: {echoed}"), path="/v1/chat/completions")
    with gateway(upstream) as gw, gw.client() as client:
        response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == status
    for secret in (GROQ_KEY, HEADER_TOKEN, CF_TOKEN):
        assert secret not in response.text
    assert response.json()["error"]["message"] in ("Invalid credentials: ***", "Invalid credentials: Bearer ***")


def test_the_other_key_of_a_provider_is_redacted_when_it_is_the_one_used(upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(401, "first key refused"), path="/v1/chat/completions")
    upstream.script(Reply.error(400, f"quota of {SECOND_KEY} exceeded"), path="/v1/chat/completions")
    with gateway(upstream, SECOND_KEY) as gw, gw.client() as client:
        response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 400
    assert SECOND_KEY not in response.text and "quota of *** exceeded" in response.text


def test_a_callers_own_key_echoed_by_the_upstream_is_redacted(upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(401, f"API key not valid: {OWN_KEY}"), path="/v1/chat/completions")
    with gateway(upstream) as gw:
        key = tenant_with_own_key(gw)
        with gw.sdk(key) as client, pytest.raises(openai.AuthenticationError) as refused:
            client.chat.completions.create(**CHAT)
    assert upstream.requests_to("/v1/chat/completions")[0].headers["authorization"] == f"Bearer {OWN_KEY}"
    assert OWN_KEY not in refused.value.response.text
    assert refused.value.body["message"] == "API key not valid: ***"  # type: ignore[index]


def tenant_with_own_key(gw: InProcessGateway) -> str:
    with gw.client() as admin:
        key = str(admin.post("/v1/keys", json={"alias": "alice"}).json()["key"])
    with gw.client(key) as http:
        assert http.put("/auth/creds", json={"providers": {"fake": {"apiKey": OWN_KEY}}}).status_code == 200
    return key


def test_a_discovery_error_echoing_the_key_is_redacted_in_the_provider_view_and_the_log(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.script(Reply.error(401, f"Invalid API Key {GROQ_KEY}"), path="/v1/models")
    caplog.set_level(logging.WARNING, logger="anygate.registry")
    with gateway(upstream) as gw, gw.client() as client:
        providers = client.get("/v1/providers")
    (view,) = [p for p in providers.json()["data"] if p["id"] == "fake"]
    assert view["discovery_error"] == "Upstream returned HTTP 401: Invalid API Key ***"
    assert GROQ_KEY not in providers.text
    logged = [record.__dict__.get("fields", {}).get("error") for record in caplog.records]
    assert "Upstream returned HTTP 401: Invalid API Key ***" in logged
    assert all(GROQ_KEY not in record.getMessage() + str(record.__dict__) for record in caplog.records)


@pytest.mark.sockets  # the library client on its own, against a fake upstream on loopback
async def test_the_library_client_redacts_its_key_from_errors_discovery_and_health() -> None:
    async with FakeUpstream() as up:
        up.script(Reply.error(400, f"bad key {GROQ_KEY}"), path="/v1/chat/completions")
        up.script(*[Reply.error(500, f"{GROQ_KEY} broke")] * 2, path="/v1/models")
        async with OpenAICompatibleProvider(
            api_key=GROQ_KEY, base_url=up.base_url, allow_private_network=True, max_retries=0
        ) as client:
            with pytest.raises(UpstreamStatusError) as failed:
                await client.chat_completion({"model": "m", "messages": []})
            with pytest.raises(DiscoveryFailed) as discovery:
                await client.list_models()
            health = await client.health_check()
    assert GROQ_KEY not in str(failed.value) and "bad key ***" in str(failed.value)
    assert str(discovery.value) == "Upstream returned HTTP 500: *** broke"
    assert health.error == "Upstream returned HTTP 500: *** broke"
