"""``/v1/messages`` end to end: the official Anthropic SDK as the client, the gateway in-process, a fake
OpenAI-compatible upstream behind it. What the SDK gets back is what Claude Code would."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from anygate.auth import Principal
from tests.support.fake_upstream import FakeUpstream, Reply, ToolCall, Usage
from tests.support.gateway import ADMIN_KEY, fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.support.tokens import estimate_prompt
from tests.wire.support import fixture_json, parsed_events

MODEL = "fake/fake-model"
HI: list[Any] = [{"role": "user", "content": "hi"}]
READ_TOOL = {
    "name": "Read",
    "description": "Reads a file",
    "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]},
}
LIMITED = "sk-ag-limited-to-another-model-000"


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream(usage=Usage(12, 7)).in_memory()


@pytest.fixture
def gateway(upstream: FakeUpstream) -> Iterator[InProcessGateway]:
    limited = Principal(key_id="limited", is_admin=False, label="limited", models=("fake/other-model",))
    settings = gateway_settings(fake_provider(upstream), aliases={"claude-sonnet-4-5": MODEL})
    with inprocess_gateway(settings, upstream, keys={LIMITED: limited}) as gw:
        yield gw


@pytest.fixture
def client(gateway: InProcessGateway) -> Iterator[anthropic.Anthropic]:
    with gateway.anthropic() as sdk:
        yield sdk


def chat_sent(upstream: FakeUpstream) -> dict[str, Any]:
    [sent] = upstream.requests_to("/v1/chat/completions")
    assert isinstance(sent.json, dict)
    return sent.json


# ---------------------------------------------------------------------------------------------- answers


def test_a_message_comes_back_in_the_anthropic_shape(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    message = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=200,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=HI,
        stop_sequences=["END"],
        metadata={"user_id": "student-7"},
        extra_body={"temperature": 0.5},  # this SDK no longer offers it; older clients (and the API) still send it
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.model == "claude-sonnet-4-5"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Hello from the fake upstream!"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 7)
    assert chat_sent(upstream) == {
        "model": "fake-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "temperature": 0.5,
        "stop": ["END"],
        "user": "student-7",
        "max_tokens": 200,
    }


def test_a_streamed_message_arrives_as_anthropic_events(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    with client.messages.stream(model=MODEL, max_tokens=64, messages=HI) as stream:
        texts = list(stream.text_stream)
        message = stream.get_final_message()
    assert "".join(texts) == "Hello from the fake upstream!" and len(texts) == 3
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 7)
    sent = chat_sent(upstream)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}  # usage asked


def test_the_raw_stream_is_the_anthropic_event_sequence(gateway: InProcessGateway) -> None:
    with gateway.client() as http:
        answer = http.post("/v1/messages", json={"model": MODEL, "max_tokens": 64, "messages": HI, "stream": True})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/event-stream"
    kinds = [kind for kind, _ in parsed_events(answer.content)]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_use_round_trip(client: anthropic.Anthropic, upstream: FakeUpstream, stream: bool) -> None:
    call = ToolCall("call_7", "Read", '{"file_path": "/srv/cart.py"}')
    upstream.script(Reply(content="Let me look.", tool_calls=[call], finish_reason="tool_calls"))
    question: list[Any] = [{"role": "user", "content": "What is in cart.py?"}]
    asked: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": question, "tools": [READ_TOOL]}
    if stream:
        with client.messages.stream(**asked) as events:
            first = events.get_final_message()
    else:
        first = client.messages.create(**asked)
    assert first.stop_reason == "tool_use"
    text, tool_use = first.content
    assert text.type == "text" and text.text == "Let me look."
    assert tool_use.type == "tool_use"
    assert (tool_use.id, tool_use.name, tool_use.input) == ("call_7", "Read", {"file_path": "/srv/cart.py"})

    result = {"type": "tool_result", "tool_use_id": tool_use.id, "content": "def total(): ..."}
    turns = [*question, {"role": "assistant", "content": first.content}, {"role": "user", "content": [result]}]
    second = client.messages.create(model=MODEL, max_tokens=100, messages=turns, tools=[READ_TOOL])
    assert second.stop_reason == "end_turn"
    sent = upstream.requests_to("/v1/chat/completions")[-1].json
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {"name": "Read", "description": "Reads a file", "parameters": READ_TOOL["input_schema"]},
        }
    ]
    assistant, tool = sent["messages"][1:]
    assert assistant["tool_calls"] == [
        {"id": "call_7", "type": "function", "function": {"name": "Read", "arguments": '{"file_path":"/srv/cart.py"}'}}
    ]
    assert tool == {"role": "tool", "tool_call_id": "call_7", "content": "def total(): ..."}


def test_images_reach_the_upstream_as_image_parts(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    content: list[Any] = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "image", "source": {"type": "url", "url": "https://example.edu/cat.jpg"}},
    ]
    client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": content}])
    [user] = chat_sent(upstream)["messages"]
    assert user["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "image_url", "image_url": {"url": "https://example.edu/cat.jpg"}},
    ]


def test_an_upstream_answering_a_stream_request_whole_still_streams(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(stream=False))
    with client.messages.stream(model=MODEL, max_tokens=64, messages=HI) as stream:
        message = stream.get_final_message()
    assert message.content[0].text == "Hello from the fake upstream!"  # type: ignore[union-attr]
    assert message.usage.output_tokens == 7


def test_a_stream_ending_without_done_after_a_finish_reason_is_whole(
    client: anthropic.Anthropic, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(send_done=False))  # as llama.cpp's server ends its streams
    with client.messages.stream(model=MODEL, max_tokens=64, messages=HI) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "end_turn"


def test_a_stream_that_breaks_midway_ends_with_an_anthropic_error_event(
    gateway: InProcessGateway, upstream: FakeUpstream, client: anthropic.Anthropic
) -> None:
    upstream.script(Reply(reset_after_events=2), Reply(reset_after_events=2), path="/v1/chat/completions")
    with gateway.client() as http:
        answer = http.post("/v1/messages", json={"model": MODEL, "max_tokens": 64, "messages": HI, "stream": True})
    (kind, error), *_ = reversed(parsed_events(answer.content))
    assert kind == "error" and error["error"]["type"] == "api_error"
    assert "incomplete" in error["error"]["message"]
    with pytest.raises(anthropic.APIStatusError), client.messages.stream(model=MODEL, max_tokens=64, messages=HI) as s:
        s.get_final_message()


def test_pings_go_out_while_the_upstream_is_silent() -> None:
    upstream = FakeUpstream(event_delay=0.2).in_memory()
    settings = gateway_settings(fake_provider(upstream), stream_keepalive_interval=0.02)
    with inprocess_gateway(settings, upstream) as gw, gw.client() as http:
        answer = http.post("/v1/messages", json={"model": MODEL, "max_tokens": 64, "messages": HI, "stream": True})
        kinds = [kind for kind, _ in parsed_events(answer.content)]
        with gw.anthropic() as client, client.messages.stream(model=MODEL, max_tokens=64, messages=HI) as stream:
            assert stream.get_final_text() == "Hello from the fake upstream!"
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "ping" in kinds[1:-1]


# ---------------------------------------------------------------------------------------------- Claude Code


def test_a_recorded_claude_code_request_end_to_end(gateway: InProcessGateway, upstream: FakeUpstream) -> None:
    request = fixture_json("claude_code_request.json")
    headers = {
        "x-api-key": ADMIN_KEY,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
        "x-app": "cli",
    }
    upstream.script(Reply(content="Fixed.", tool_calls=[ToolCall("call_9", "Bash", '{"command": "pytest -q"}')]))
    with httpx2.Client(base_url=gateway.url, transport=gateway.transport()) as http:
        answer = http.post("/v1/messages", json={**request, "model": MODEL}, headers=headers)
    assert answer.status_code == 200, answer.text
    events = parsed_events(answer.content)
    blocks = [data["content_block"]["type"] for kind, data in events if kind == "content_block_start"]
    assert blocks == ["text", "tool_use"]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    [sent] = upstream.requests_to("/v1/chat/completions")
    chat, sent_headers = sent.json, sent.headers
    assert chat["messages"][0]["role"] == "system" and "Claude Code" in chat["messages"][0]["content"]
    assert [tool["function"]["name"] for tool in chat["tools"]] == [tool["name"] for tool in request["tools"]]
    assert len(chat["user"]) == 64  # Claude Code's long user id, hashed to what upstreams accept
    assert chat["max_tokens"] == 32000 and chat["temperature"] == 1
    assert b"cache_control" not in sent.body
    assert not any(name.startswith("anthropic-") for name in sent_headers)  # the client's API's headers stay
    assert sent_headers["authorization"] == "Bearer sk-fake-provider-key-abcdef"
    assert ADMIN_KEY not in sent.body.decode() + str(sent_headers)


# ---------------------------------------------------------------------------------------------- count_tokens


def test_count_tokens_answers_the_accountings_estimate(client: anthropic.Anthropic) -> None:
    asked: dict[str, Any] = {
        "model": MODEL,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "How many tokens is this?"}],
        "tools": [READ_TOOL],
    }
    counted = client.messages.count_tokens(**asked)
    assert counted.input_tokens == estimate_prompt(asked, MODEL)
    assert counted.input_tokens > estimate_prompt({"messages": asked["messages"]}, MODEL)  # system and tools too


def test_count_tokens_refuses_what_it_cannot_count(gateway: InProcessGateway) -> None:
    with gateway.client() as http:
        unknown = http.post("/v1/messages/count_tokens", json={"model": "nope/never", "messages": HI})
        bad = http.post("/v1/messages/count_tokens", json={"model": MODEL, "messages": [{"role": "robot"}]})
        wrong_method = http.get("/v1/messages/count_tokens")
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
    assert bad.status_code == 400 and bad.json()["type"] == "error"
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"


# ---------------------------------------------------------------------------------------------- errors


def test_gateway_errors_raise_the_sdks_own_classes(gateway: InProcessGateway) -> None:
    with gateway.anthropic(key="sk-ag-not-a-key") as stranger, pytest.raises(anthropic.AuthenticationError) as caught:
        stranger.messages.create(model=MODEL, max_tokens=10, messages=HI)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Missing or invalid API key"},
    }
    with gateway.anthropic(key=LIMITED) as limited, pytest.raises(anthropic.PermissionDeniedError):
        limited.messages.create(model=MODEL, max_tokens=10, messages=HI)
    with gateway.anthropic() as client:
        with pytest.raises(anthropic.NotFoundError) as missing:
            client.messages.create(model="fake/no-such-model", max_tokens=10, messages=HI)
        assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
        with pytest.raises(anthropic.BadRequestError) as bad:
            client.messages.create(
                model=MODEL, max_tokens=10, messages=[{"role": "user", "content": [{"type": "video", "url": "x"}]}]
            )
        assert bad.value.body["error"]["message"].startswith("'messages[0].content[0].type' is 'video'")  # type: ignore[index]


@pytest.mark.parametrize(
    ("reply", "raised", "kind"),
    [
        (Reply.rate_limited(retry_after=30), anthropic.RateLimitError, "rate_limit_error"),
        (Reply.error(400, "context too long"), anthropic.BadRequestError, "invalid_request_error"),
        (Reply.error(503, "busy"), anthropic.ServiceUnavailableError, "overloaded_error"),
        (Reply.error(500, "boom"), anthropic.InternalServerError, "api_error"),
        (Reply.error(529, "overloaded"), anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_upstream_errors_raise_the_sdks_own_classes(
    client: anthropic.Anthropic, upstream: FakeUpstream, reply: Reply, raised: type[Exception], kind: str
) -> None:
    upstream.script(reply, path="/v1/chat/completions")
    with pytest.raises(raised) as caught:
        client.messages.create(model=MODEL, max_tokens=10, messages=HI)
    body = caught.value.body  # type: ignore[attr-defined]
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert reply.json["error"]["message"] in body["error"]["message"]


# ---------------------------------------------------------------------------------------------- prefixes, models


def test_the_anthropic_prefix_is_the_same_route(gateway: InProcessGateway) -> None:
    with gateway.anthropic(base_path="/anthropic") as client:
        message = client.messages.create(model=MODEL, max_tokens=10, messages=HI)
        counted = client.messages.count_tokens(model=MODEL, messages=HI)
        with pytest.raises(anthropic.NotFoundError):
            client.messages.create(model="fake/missing", max_tokens=10, messages=HI)
    assert message.content[0].text == "Hello from the fake upstream!"  # type: ignore[union-attr]
    assert counted.input_tokens == estimate_prompt({"model": MODEL, "messages": HI}, MODEL)


def test_the_openai_prefix_is_the_same_api(gateway: InProcessGateway, upstream: FakeUpstream) -> None:
    with gateway.sdk(base_url=f"{gateway.url}/openai/v1") as client:
        completion = client.chat.completions.create(model=MODEL, messages=HI)
        models = client.models.list()
        stream = client.chat.completions.create(model=MODEL, messages=HI, stream=True)
        pieces = [chunk.choices[0].delta.content for chunk in stream if chunk.choices]
        with pytest.raises(Exception, match="404"):
            client.chat.completions.create(model="fake/missing", messages=HI)
    assert completion.choices[0].message.content == "Hello from the fake upstream!"
    assert [model.id for model in models] == [MODEL]
    assert "".join(p or "" for p in pieces) == "Hello from the fake upstream!"
    assert len(upstream.requests_to("/v1/chat/completions")) == 2


def test_models_in_the_anthropic_shape_with_aliases(gateway: InProcessGateway, client: anthropic.Anthropic) -> None:
    listed = client.models.list()
    assert [model.id for model in listed.data] == ["claude-sonnet-4-5", MODEL]
    assert all(model.type == "model" for model in listed.data)
    assert client.models.retrieve("claude-sonnet-4-5").id == "claude-sonnet-4-5"
    with gateway.client() as http:
        plain = http.get("/v1/models").json()
        limited = http.get("/v1/models", headers={"Authorization": f"Bearer {LIMITED}", "anthropic-version": "x"})
    assert plain["object"] == "list" and [m["id"] for m in plain["data"]] == [MODEL]
    assert limited.json()["data"] == []  # neither the alias nor the model is this key's


def test_a_chat_request_is_relayed_byte_for_byte_as_before(gateway: InProcessGateway, upstream: FakeUpstream) -> None:
    raw = b'{"model": "fake/fake-model",   "messages": [{"role": "user", "content": "hi"}]}'
    upstream.script(Reply(stable=True))
    with gateway.client() as http:
        answer = http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert upstream.requests[-1].body == raw.replace(b"fake/fake-model", b"fake-model")
    assert orjson.loads(answer.content)["id"] == "chatcmpl-fake-0"


def test_thinking_becomes_a_reasoning_effort_only_where_the_upstream_reasons() -> None:
    upstream = FakeUpstream(models=["fake-model", "gpt-5"]).in_memory()
    thinking = {"type": "enabled", "budget_tokens": 10_000}
    with inprocess_gateway(gateway_settings(fake_provider(upstream)), upstream) as gw, gw.anthropic() as client:
        for model in ("fake/gpt-5", MODEL):
            client.messages.create(model=model, max_tokens=12_000, messages=HI, thinking=thinking)  # type: ignore[arg-type]
    reasoning, plain = (request.json for request in upstream.requests_to("/v1/chat/completions"))
    assert reasoning["reasoning_effort"] == "medium" and reasoning["max_completion_tokens"] == 12_000
    assert "max_tokens" not in reasoning  # OpenAI's reasoning models refuse it
    assert "reasoning_effort" not in plain and plain["max_tokens"] == 12_000  # dropped, no error


def test_messages_requests_are_in_the_metrics_with_their_tokens(
    gateway: InProcessGateway, client: anthropic.Anthropic
) -> None:
    client.messages.create(model=MODEL, max_tokens=10, messages=HI)
    with client.messages.stream(model=MODEL, max_tokens=10, messages=HI) as stream:
        stream.get_final_message()
    with gateway.client() as http:
        metrics = http.get("/metrics").text
    assert 'anygate_requests_total{model="fake-model",provider="fake",route="messages",status="200"} 2.0' in metrics
    assert 'anygate_tokens_total{direction="input",model="fake-model",provider="fake"} 24.0' in metrics
    assert 'anygate_tokens_total{direction="output",model="fake-model",provider="fake"} 14.0' in metrics
