"""OpenAICompatibleProvider as a library, against the fake upstream on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

import anygate
from anygate.errors import (
    GatewayError,
    UpstreamEventTooLarge,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from anygate.netguard import UnsafeURL
from anygate.upstream import DiscoveryFailed, OpenAICompatibleProvider, OpenRouterProvider
from tests.support.fake_upstream import FakeUpstream, Reply

pytestmark = pytest.mark.sockets

KEY = "sk-library-key-0001"
CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(models=["fake-model", "second-model"]) as upstream:
        yield upstream


def provider(up: FakeUpstream, **options: object) -> OpenAICompatibleProvider:
    options.setdefault("allow_private_network", True)
    options.setdefault("max_retries", 0)
    return OpenAICompatibleProvider(api_key=KEY, base_url=up.base_url, **options)  # type: ignore[arg-type]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_list_models_discovers_the_upstream_list(up: FakeUpstream) -> None:
    async with provider(up, custom_headers={"X-Title": "course"}) as client:
        assert await client.list_models() == ["fake-model", "second-model"]
    [request] = up.requests
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["x-title"] == "course"
    assert request.body == b""


@pytest.mark.parametrize(
    "listing",
    [
        {"data": [{"id": "a"}, {"id": "b"}]},
        {"models": [{"name": "a"}, {"name": "b"}]},
        ["a", "b"],
        {"object": "list", "data": ["a", {"id": "b", "owned_by": "x"}, {"no_id": 1}]},
    ],
)
async def test_list_models_accepts_the_common_shapes(up: FakeUpstream, listing: object) -> None:
    up.script(Reply(json=listing), path="/v1/models")
    async with provider(up) as client:
        assert await client.list_models() == ["a", "b"]


@pytest.mark.parametrize(
    "reply",
    [Reply.error(500), Reply(status=401, body=b"unauthorized"), Reply(json={"unexpected": 1}), Reply.invalid_json()],
)
async def test_discovery_failure_invents_no_models(up: FakeUpstream, reply: Reply) -> None:
    up.script(reply, path="/v1/models")
    async with provider(up) as client:
        with pytest.raises(DiscoveryFailed) as caught:
            await client.list_models()
    assert KEY not in str(caught.value)


async def test_ollama_falls_back_to_api_tags() -> None:
    async with FakeUpstream(models=["llama3:8b", "llama2:latest"], has_models_endpoint=False) as up:
        async with provider(up, auth="none", ollama_tags_fallback=True) as client:
            assert await client.list_models() == ["llama3:8b", "llama2:latest"]
        assert [r.path for r in up.requests] == ["/v1/models", "/api/tags"]
        assert "authorization" not in up.requests[1].headers


async def test_a_provider_without_a_models_endpoint_does_not_ask(up: FakeUpstream) -> None:
    async with provider(up, has_models_endpoint=False) as client:
        with pytest.raises(DiscoveryFailed, match="no model list"):
            await client.list_models()
    assert up.requests == []


async def test_health_check(up: FakeUpstream) -> None:
    async with provider(up) as client:
        healthy = await client.health_check()
    assert healthy.healthy and healthy.error is None and healthy.latency_ms >= 0
    url = f"http://127.0.0.1:{closed_port()}/v1"
    async with OpenAICompatibleProvider(api_key=KEY, base_url=url, allow_private_network=True, max_retries=0) as dead:
        result = await dead.health_check()
    assert not result.healthy
    assert result.error and KEY not in result.error


async def test_chat_completion(up: FakeUpstream) -> None:
    async with provider(up) as client:
        reply = await client.chat_completion(CHAT)
    assert reply["choices"][0]["message"]["content"] == "Hello from the fake upstream!"
    [request] = up.requests
    assert request.json == {**CHAT, "stream": False}
    assert request.headers["content-type"] == "application/json"


async def test_completion_and_embeddings(up: FakeUpstream) -> None:
    async with provider(up) as client:
        text = await client.completion({"model": "fake-model", "prompt": "hi"})
        vectors = await client.embeddings({"model": "fake-model", "input": ["a", "b", "c"]})
    assert text["choices"][0]["text"] == "Hello from the fake upstream!"
    assert len(vectors["data"]) == 3
    assert [r.path for r in up.requests] == ["/v1/completions", "/v1/embeddings"]


async def test_stream_chat_completion(up: FakeUpstream) -> None:
    async with provider(up) as client:
        chunks = [c async for c in client.stream_chat_completion(CHAT)]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello from the fake upstream!"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert up.requests[0].json["stream"] is True


async def test_a_stream_that_breaks_raises_a_gateway_error(up: FakeUpstream) -> None:
    up.script(Reply(reset_after_events=2), path="/v1/chat/completions")
    async with provider(up) as client:
        with pytest.raises(UpstreamUnavailable):
            _ = [c async for c in client.stream_chat_completion(CHAT)]


async def test_a_stream_event_over_the_size_limit_raises(up: FakeUpstream) -> None:
    up.script(Reply(raw_events=[b"data: " + b"z" * 5000 + b"\n\n"]), path="/v1/chat/completions")
    async with provider(up, max_event_bytes=1000) as client:
        with pytest.raises(UpstreamEventTooLarge):
            _ = [c async for c in client.stream_chat_completion(CHAT)]


async def test_a_stream_whose_last_event_ends_with_the_stream_still_yields_it(up: FakeUpstream) -> None:
    events = [b'data: {"n":1}\r\r', b'data: {"n":2}\r\r']  # bare \r endings: the last waits for the end
    up.script(Reply(raw_events=events), path="/v1/chat/completions")
    async with provider(up) as client:
        assert [c async for c in client.stream_chat_completion(CHAT)] == [{"n": 1}, {"n": 2}]


async def test_upstream_errors(up: FakeUpstream) -> None:
    up.script(Reply.error(400, "bad request"), path="/v1/chat/completions")
    async with provider(up) as client:
        with pytest.raises(UpstreamStatusError) as caught:
            await client.chat_completion(CHAT)
    assert caught.value.status == 400
    assert b"bad request" in caught.value.body_bytes()


async def test_retries_a_retryable_failure(up: FakeUpstream) -> None:
    up.script(Reply.error(503), Reply.rate_limited(retry_after=0), path="/v1/chat/completions")
    async with provider(up, max_retries=2) as client:
        reply = await client.chat_completion(CHAT)
    assert reply["object"] == "chat.completion"
    assert len(up.requests_to("/v1/chat/completions")) == 3


async def test_timeout(up: FakeUpstream) -> None:
    up.script(Reply(hang_before_headers=True), path="/v1/chat/completions")
    async with provider(up, timeout=0.3) as client:
        with pytest.raises(UpstreamTimeout):
            await client.chat_completion(CHAT)


async def test_unreachable() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    async with OpenAICompatibleProvider(api_key=KEY, base_url=url, allow_private_network=True, max_retries=0) as client:
        with pytest.raises(GatewayError) as caught:
            await client.chat_completion(CHAT)
    assert caught.value.status == 502
    assert KEY not in caught.value.message and "127.0.0.1" not in caught.value.message


async def test_api_key_auth_style(up: FakeUpstream) -> None:
    async with provider(up, auth="api-key") as client:
        await client.chat_completion(CHAT)
    headers = up.requests[0].headers
    assert headers["api-key"] == KEY and "authorization" not in headers


def test_loopback_needs_allow_private_network() -> None:
    with pytest.raises(UnsafeURL):
        OpenAICompatibleProvider(api_key=KEY, base_url="http://127.0.0.1:9/v1")


def test_openrouter_provider_keeps_the_old_defaults() -> None:
    client = OpenRouterProvider(api_key=KEY)
    assert (client.provider_id, client.name, client.base_url) == (
        "openrouter",
        "OpenRouter",
        "https://openrouter.ai/api/v1",
    )
    assert isinstance(client, OpenAICompatibleProvider)
    assert repr(client).startswith("OpenAICompatibleProvider(id='openrouter'")
    assert KEY not in repr(client)


@pytest.mark.parametrize(
    ("url", "name"),
    [("https://api.together.xyz/v1", "Together AI"), ("https://llm.example.edu/v1", "OpenAI Compatible")],
)
def test_name_detected_when_not_given(url: str, name: str) -> None:
    assert OpenAICompatibleProvider(api_key=KEY, base_url=url).name == name


def test_the_library_classes_are_exported_from_the_package() -> None:
    assert anygate.OpenAICompatibleProvider is OpenAICompatibleProvider
    assert anygate.OpenRouterProvider is OpenRouterProvider


async def test_ollamas_api_tags_redirect_is_refused_not_followed() -> None:
    async with (
        FakeUpstream(has_models_endpoint=False) as up,
        FakeUpstream(models=["elsewhere-model"]) as elsewhere,
    ):
        up.script(Reply(status=302, body=b"", headers={"Location": f"{elsewhere.url}/api/tags"}), path="/api/tags")
        async with provider(up, auth="none", ollama_tags_fallback=True) as client:
            with pytest.raises(DiscoveryFailed, match="redirect refused"):
                await client.list_models()
        assert elsewhere.requests == []


# ------------------------------------------------------------------------------ ProviderType (seed 003)


def test_the_library_exports_a_provider_type_for_every_preset() -> None:
    from anygate.catalog import PRESETS

    provider_type = anygate.ProviderType
    assert {member.value for member in provider_type} == {*PRESETS, "openai_compatible"}
    assert provider_type.OPENAI_COMPATIBLE == "openai_compatible"
    assert (provider_type.OPENROUTER, provider_type.OLLAMA) == ("openrouter", "ollama")
    assert "ProviderType" in anygate.__all__


def test_a_client_knows_its_provider_type() -> None:
    provider_type = anygate.ProviderType
    assert OpenRouterProvider(api_key="k").provider_type is provider_type.OPENROUTER
    groq = OpenAICompatibleProvider(api_key="k", base_url="https://api.groq.com/openai/v1")
    assert groq.provider_type is provider_type.GROQ
    campus = OpenAICompatibleProvider(api_key="k", base_url="https://llm.example.edu/v1")
    assert campus.provider_type is provider_type.OPENAI_COMPATIBLE
