"""The official OpenAI SDK against a running gateway in front of a fake upstream, all on loopback.

Each test checks what the client sees and what reached the upstream: the body as sent (only ``model``
rewritten), the provider's key, and none of the client's credentials or identifying headers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from tests.support.fake_upstream import FakeUpstream, RecordedRequest, Reply
from tests.support.gateway import (
    ADMIN_KEY,
    PROVIDER_KEY,
    RunningGateway,
    fake_provider,
    gateway_settings,
    serve_gateway,
)

pytestmark = pytest.mark.sockets

CLIENT_HEADERS = {
    "Cookie": "session=client-cookie",
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Real-IP": "203.0.113.7",
    "Forwarded": "for=203.0.113.7",
    "CF-Connecting-IP": "203.0.113.7",
    "CF-Ray": "8a1b2c3d4e5f-AMS",
    "CF-IPCountry": "NL",
    "True-Client-IP": "203.0.113.7",
    "X-Custom-Client": "kept",
}
NEVER_UPSTREAM = (
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-real-ip",
    "forwarded",
    "cf-connecting-ip",
    "cf-ray",
    "cf-ipcountry",
    "true-client-ip",
    "x-api-key",
    "api-key",
    "proxy-authorization",
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread(models=["fake-model", "text-embed"]) as up:
        yield up


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[RunningGateway]:
    with serve_gateway(gateway_settings(fake_provider(upstream))) as gw:
        yield gw


class Capture:
    """The bytes the SDK put on the wire, request by request."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx2.Request) -> None:
        self.bodies.append(request.read())


@pytest.fixture
def capture() -> Capture:
    return Capture()


@pytest.fixture
def client(gateway: RunningGateway, upstream: FakeUpstream, capture: Capture) -> Iterator[openai.OpenAI]:
    upstream.requests.clear()
    http = httpx2.Client(event_hooks={"request": [capture]}, timeout=30)
    sdk = openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key=ADMIN_KEY, max_retries=0, default_headers=CLIENT_HEADERS, http_client=http
    )
    yield sdk
    sdk.close()


def only_request(upstream: FakeUpstream, path: str) -> RecordedRequest:
    [request] = upstream.requests_to(path)
    return request


def assert_clean_upstream_headers(request: RecordedRequest) -> None:
    assert request.headers.get("authorization") == f"Bearer {PROVIDER_KEY}"
    for name in NEVER_UPSTREAM:
        assert name not in request.headers, name
    assert not any(ADMIN_KEY in value for value in request.headers.values())
    assert request.headers.get("x-custom-client") == "kept"


def test_chat_completion(client: openai.OpenAI, upstream: FakeUpstream, capture: Capture) -> None:
    reply = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "héllo"}], temperature=0.25, max_tokens=7
    )
    assert reply.choices[0].message.content == "Hello from the fake upstream!"
    assert reply.model == "fake-model"
    assert reply.usage is not None and reply.usage.total_tokens == 15
    seen = only_request(upstream, "/v1/chat/completions")
    assert seen.body == capture.bodies[-1]
    assert_clean_upstream_headers(seen)


def test_chat_completion_with_a_provider_prefix_rewrites_only_the_model(
    client: openai.OpenAI, upstream: FakeUpstream, capture: Capture
) -> None:
    client.chat.completions.create(
        model="fake/fake-model", messages=[{"role": "user", "content": "hi"}], seed=7, user="u-1"
    )
    seen = only_request(upstream, "/v1/chat/completions")
    sent = json.loads(capture.bodies[-1])
    assert seen.json == {**sent, "model": "fake-model"}
    assert list(seen.json) == list(sent)  # same keys, same order
    assert_clean_upstream_headers(seen)


def test_streaming_chat_completion(client: openai.OpenAI, upstream: FakeUpstream, capture: Capture) -> None:
    stream = client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake upstream!"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    seen = only_request(upstream, "/v1/chat/completions")
    assert seen.body == capture.bodies[-1]
    assert seen.json["stream"] is True
    assert_clean_upstream_headers(seen)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Hanoi"}'}}


def test_tool_calls_pass_through(client: openai.OpenAI, upstream: FakeUpstream, capture: Capture) -> None:
    completion = {
        "id": "chatcmpl-tool",
        "object": "chat.completion",
        "created": 1,
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
    }
    upstream.script(Reply(json=completion), path="/v1/chat/completions")
    reply = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "weather?"}], tools=TOOLS, tool_choice="auto"
    )
    [call] = reply.choices[0].message.tool_calls or []
    assert (call.id, call.function.name, call.function.arguments) == ("call_1", "get_weather", '{"city":"Hanoi"}')
    assert reply.choices[0].finish_reason == "tool_calls"
    seen = only_request(upstream, "/v1/chat/completions")
    assert seen.body == capture.bodies[-1]
    assert seen.json["tools"] == TOOLS


def sse(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def tool_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return sse(
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "fake-model", "choices": [choice]}
    )


def test_streamed_tool_calls_pass_through(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    events = [
        tool_chunk(
            {
                "role": "assistant",
                "tool_calls": [{"index": 0, **TOOL_CALL, "function": {"name": "get_weather", "arguments": ""}}],
            }
        ),
        tool_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        tool_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Hanoi"}'}}]}),
        tool_chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ]
    upstream.script(Reply(raw_events=events), path="/v1/chat/completions")
    stream = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "weather?"}], tools=TOOLS, stream=True
    )
    arguments = ""
    finish = None
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            arguments += call.function.arguments or "" if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert (arguments, finish) == ('{"city":"Hanoi"}', "tool_calls")


def test_stream_events_come_back_byte_for_byte(gateway: RunningGateway, upstream: FakeUpstream) -> None:
    events = [
        b'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n',
        b": keep-alive comment\n\n",
        b'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"b"}}]}\r\n\r\n',
        b"data: [DONE]\n\n",
    ]
    upstream.script(Reply(raw_events=events), path="/v1/chat/completions")
    body = {"model": "fake-model", "messages": [], "stream": True}
    with gateway.client() as http, http.stream("POST", "/v1/chat/completions", json=body) as response:
        raw = b"".join(response.iter_bytes())
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"]
    assert raw == b"".join(events)


def test_a_large_response_comes_back_whole(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.huge(3_000_000), path="/v1/chat/completions")
    reply = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "a lot"}])
    assert reply.choices[0].message.content == "x" * 3_000_000


def test_an_answer_longer_than_max_response_bytes_is_a_502_not_a_buffer(upstream: FakeUpstream) -> None:
    upstream.script(Reply.huge(3_000_000), path="/v1/chat/completions")
    settings = gateway_settings(fake_provider(upstream), max_response_bytes=1_000_000)
    with serve_gateway(settings) as gw, openai.OpenAI(base_url=f"{gw.url}/v1", api_key=ADMIN_KEY, max_retries=0) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.chat.completions.create(model="fake/fake-model", messages=[{"role": "user", "content": "a lot"}])
    assert caught.value.status_code == 502
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "upstream_response_too_large"
    assert "1000000 bytes" in caught.value.body["message"]


def test_an_alias_is_rewritten_to_the_upstream_model(upstream: FakeUpstream) -> None:
    settings = gateway_settings(fake_provider(upstream), aliases={"fast": "fake/fake-model"})
    upstream.requests.clear()
    with serve_gateway(settings) as gw, openai.OpenAI(base_url=f"{gw.url}/v1", api_key=ADMIN_KEY) as sdk:
        reply = sdk.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert reply.model == "fake-model"
    assert only_request(upstream, "/v1/chat/completions").json["model"] == "fake-model"


def test_text_completion(client: openai.OpenAI, upstream: FakeUpstream, capture: Capture) -> None:
    reply = client.completions.create(model="fake-model", prompt="Say hi", max_tokens=5)
    assert reply.choices[0].text == "Hello from the fake upstream!"
    seen = only_request(upstream, "/v1/completions")
    assert seen.body == capture.bodies[-1]
    assert_clean_upstream_headers(seen)


def test_streaming_text_completion(client: openai.OpenAI) -> None:
    stream = client.completions.create(model="fake-model", prompt="Say hi", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == "Hello from the fake upstream!"


def test_embeddings(client: openai.OpenAI, upstream: FakeUpstream, capture: Capture) -> None:
    reply = client.embeddings.create(model="text-embed", input=["a", "b"], encoding_format="float")
    assert [d.index for d in reply.data] == [0, 1]
    assert reply.data[0].embedding == [0.125] * 8
    seen = only_request(upstream, "/v1/embeddings")
    assert seen.body == capture.bodies[-1]
    assert_clean_upstream_headers(seen)


def test_responses_api(client: openai.OpenAI, upstream: FakeUpstream, capture: Capture) -> None:
    response = client.responses.create(model="fake-model", input="Say hi")
    assert response.output_text == "Hello from the fake upstream!"
    seen = only_request(upstream, "/v1/responses")
    assert seen.body == capture.bodies[-1]
    assert_clean_upstream_headers(seen)


def test_streaming_responses_api(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="fake/fake-model", input="Say hi", stream=True)
    events = list(stream)
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "Hello from the fake upstream!"


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert {(m.id, m.owned_by) for m in models} == {("fake/fake-model", "fake"), ("fake/text-embed", "fake")}
    assert client.models.retrieve("fake/fake-model").id == "fake/fake-model"
    assert client.models.retrieve("fake-model").id == "fake/fake-model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("fake/no-such-model")


def test_upstream_error_reaches_the_sdk_as_the_same_error(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(400, "max_tokens is too large", code="invalid_max_tokens"), path="/v1/chat/completions")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="fake-model", messages=[], max_tokens=10**9)
    assert caught.value.status_code == 400
    assert caught.value.code == "invalid_max_tokens"
    assert "max_tokens is too large" in caught.value.message


def test_unknown_model_is_a_not_found_error_naming_it(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="fake-modle", messages=[])
    assert caught.value.code == "model_not_found"
    assert "fake-modle" in caught.value.message
    assert upstream.requests_to("/v1/chat/completions") == []


def test_wrong_key_is_an_authentication_error(gateway: RunningGateway) -> None:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-wrong", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError):
            sdk.models.list()


def test_the_body_goes_upstream_as_sent_when_the_model_is_rewritten(
    gateway: RunningGateway, upstream: FakeUpstream
) -> None:
    """Only the model's value changes: spacing, key order, number spelling and escapes are the client's."""
    upstream.requests.clear()
    template = (
        '{ "model" : "%s",\n  "messages": [{"role": "user", "content": "caf\\u00e9 \\ud83d\\ude00"}],\n'
        '  "temperature": 0.70, "top_p": 1e0, "n": 1 }'
    )
    with gateway.client() as http:
        response = http.post(
            "/v1/chat/completions",
            content=(template % "fake/fake-model").encode(),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 200
    seen = only_request(upstream, "/v1/chat/completions")
    assert seen.body == (template % "fake-model").encode()


def test_zero_config_ollama_with_tags_discovery() -> None:
    """OLLAMA_ENABLED with an Ollama that has no /v1/models: models from /api/tags, llama2:latest routed whole."""
    from anygate.settings import load_settings

    with FakeUpstream.start_in_thread(models=["llama2:latest", "llama3:8b"], has_models_endpoint=False) as ollama:
        env = {
            "OLLAMA_ENABLED": "true",
            "OLLAMA_BASE_URL": ollama.url,
            "ANYGATE_ADMIN_KEY": ADMIN_KEY,
            "ANYGATE_DATA_DIR": "data",
        }
        with (
            serve_gateway(load_settings({}, env)) as gw,
            openai.OpenAI(base_url=f"{gw.url}/v1", api_key=ADMIN_KEY) as sdk,
        ):
            ids = sorted(m.id for m in sdk.models.list())
            sdk.chat.completions.create(model="llama2:latest", messages=[{"role": "user", "content": "hi"}])
            sdk.chat.completions.create(model="ollama:llama3:8b", messages=[{"role": "user", "content": "hi"}])
        chats = ollama.requests_to("/v1/chat/completions")
    assert ids == ["ollama/llama2:latest", "ollama/llama3:8b"]
    assert [r.json["model"] for r in chats] == ["llama2:latest", "llama3:8b"]
    assert all("authorization" not in r.headers for r in chats)


def test_concurrent_streams_do_not_mix() -> None:
    from concurrent.futures import ThreadPoolExecutor

    names = [f"model-{i}" for i in range(16)]
    with (
        FakeUpstream.start_in_thread(models=names, chunks=8, event_delay=0.005) as up,
        serve_gateway(gateway_settings(fake_provider(up))) as gw,
        openai.OpenAI(base_url=f"{gw.url}/v1", api_key=ADMIN_KEY, max_retries=0) as sdk,
    ):

        def stream(name: str) -> set[str]:
            chunks = sdk.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}], stream=True)
            return {chunk.model for chunk in chunks}

        with ThreadPoolExecutor(max_workers=8) as pool:
            seen = list(pool.map(stream, names))
    assert seen == [{name} for name in names]


def test_a_base_url_with_a_query_keeps_it_azure_style() -> None:
    with FakeUpstream.start_in_thread() as up:
        provider = fake_provider(up, "azure", type="azure", base_url=f"{up.base_url}?api-version=2024-10-21")
        with (
            serve_gateway(gateway_settings(provider)) as gw,
            openai.OpenAI(base_url=f"{gw.url}/v1", api_key=ADMIN_KEY, max_retries=0) as sdk,
        ):
            sdk.chat.completions.create(model="azure/fake-model", messages=[{"role": "user", "content": "hi"}])
        [chat] = up.requests_to("/v1/chat/completions")
        [listing] = up.requests_to("/v1/models")
    assert chat.query == listing.query == {"api-version": "2024-10-21"}
    assert chat.headers["api-key"] == PROVIDER_KEY and "authorization" not in chat.headers
