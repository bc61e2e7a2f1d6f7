"""``/v1/responses`` for upstreams that speak only chat completions: bridged, with the official openai SDK
(and a recorded Codex request) as the client. Known by the provider's setting, the probe's finding, or
learned from the upstream's first 404; passed through unchanged to upstreams that serve it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from anygate.probe import capabilities, probe_provider
from anygate.registry import ProviderRuntime
from anygate.settings import ProviderConfig
from anygate.upstream import OpenAICompatibleProvider
from tests.support.fake_upstream import FakeUpstream, Reply, ToolCall, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.wire.support import fixture_json

MODEL = "fake/fake-model"
SHELL_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "shell",
    "description": "Runs a shell command",
    "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}},
}


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream(usage=Usage(21, 9)).in_memory()


@pytest.fixture
def gateway(upstream: FakeUpstream) -> Iterator[InProcessGateway]:
    """A provider whose settings say it has no Responses API."""
    settings = gateway_settings(fake_provider(upstream, responses=False), aliases={"gpt-5-codex": MODEL})
    with inprocess_gateway(settings, upstream) as gw:
        yield gw


@pytest.fixture
def client(gateway: InProcessGateway) -> Iterator[openai.OpenAI]:
    with gateway.sdk() as sdk:
        yield sdk


def test_a_string_input_is_bridged(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    response = client.responses.create(model=MODEL, input="hi", instructions="Be brief.", max_output_tokens=80)
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "Hello from the fake upstream!"
    assert response.usage is not None and (response.usage.input_tokens, response.usage.output_tokens) == (21, 9)
    assert not upstream.requests_to("/v1/responses")
    [sent] = upstream.requests_to("/v1/chat/completions")
    assert sent.json == {
        "model": "fake-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "max_tokens": 80,
    }


def test_function_calls_and_their_outputs_round_trip(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply(content="", tool_calls=[ToolCall("call_3", "shell", '{"command": ["ls"]}')]))
    first = client.responses.create(model=MODEL, input="List the files.", tools=[SHELL_TOOL])  # type: ignore[list-item]
    [call] = [item for item in first.output if item.type == "function_call"]
    assert (call.call_id, call.name, call.arguments) == ("call_3", "shell", '{"command": ["ls"]}')

    history: list[Any] = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List the files."}]},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "cart.py\ntests/"},
    ]
    second = client.responses.create(model=MODEL, input=history, tools=[SHELL_TOOL])  # type: ignore[list-item]
    assert second.output_text == "Hello from the fake upstream!"
    sent = upstream.requests_to("/v1/chat/completions")[-1].json
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_3", "type": "function", "function": {"name": "shell", "arguments": '{"command": ["ls"]}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_3", "content": "cart.py\ntests/"},
    ]
    assert sent["tools"][0]["function"]["name"] == "shell"


def test_a_bridged_stream_is_read_by_the_sdks_stream_helper(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    with client.responses.stream(model=MODEL, input="hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds.count("response.output_text.delta") == 3 and kinds[-1] == "response.completed"
    assert final.output_text == "Hello from the fake upstream!"
    assert final.usage is not None and final.usage.total_tokens == 30
    assert upstream.requests_to("/v1/chat/completions")[-1].json["stream_options"] == {"include_usage": True}


def test_a_recorded_codex_request_streams_a_tool_call(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    request = fixture_json("codex_request.json")
    patch = '{"input": "*** Begin Patch\\n*** End Patch"}'
    upstream.script(Reply(content="", tool_calls=[ToolCall("call_p", "apply_patch", patch)]))
    with client.responses.stream(**{k: v for k, v in request.items() if k != "stream"}) as stream:
        final = stream.get_final_response()
    [call] = final.output
    assert call.type == "custom_tool_call" and call.input == "*** Begin Patch\n*** End Patch"
    sent = upstream.requests_to("/v1/chat/completions")[-1].json
    assert sent["model"] == "fake-model"  # gpt-5-codex, an alias of the fake model
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["shell", "update_plan", "apply_patch"]
    assert sent["messages"][0]["role"] == "system" and "Codex" in sent["messages"][0]["content"]
    assert "reasoning_effort" not in sent  # the fake model does not reason


def test_previous_response_id_is_refused_because_anygate_stores_no_responses(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MODEL, input="and then?", previous_response_id="resp_123")
    error = refused.value.body
    assert isinstance(error, dict) and error["param"] == "previous_response_id"
    assert "anygate does not store responses" in error["message"]


def test_a_provider_that_serves_responses_gets_them_as_they_are(upstream: FakeUpstream) -> None:
    raw = b'{"model": "fake/fake-model",  "input": "hi", "previous_response_id": "resp_1"}'
    with inprocess_gateway(gateway_settings(fake_provider(upstream)), upstream) as gw, gw.client() as http:
        answer = http.post("/v1/responses", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 200
    assert upstream.requests_to("/v1/responses")[-1].body == raw.replace(b"fake/fake-model", b"fake-model")
    assert not upstream.requests_to("/v1/chat/completions")


def test_the_first_404_at_responses_is_learned_and_the_request_bridged_at_once() -> None:
    upstream = FakeUpstream(has_responses_endpoint=False).in_memory()
    with inprocess_gateway(gateway_settings(fake_provider(upstream)), upstream) as gw, gw.sdk() as client:
        first = client.responses.create(model=MODEL, input="hi")
        with client.responses.stream(model=MODEL, input="again") as stream:
            second = stream.get_final_response()
        runtime = gw.app.state.registry.get("fake")
    assert first.output_text == second.output_text == "Hello from the fake upstream!"
    assert [r.path for r in upstream.requests if r.method == "POST"] == [
        "/v1/responses",  # 404: no Responses API here
        "/v1/chat/completions",  # the same request, bridged
        "/v1/chat/completions",  # remembered: straight to chat
    ]
    assert runtime.lacks_responses


def test_a_404_for_an_unknown_model_is_not_taken_for_a_missing_api(upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(404, "The model does not exist", code="model_not_found"), path="/v1/responses")
    with inprocess_gateway(gateway_settings(fake_provider(upstream)), upstream) as gw, gw.sdk() as client:
        with pytest.raises(openai.NotFoundError):
            client.responses.create(model=MODEL, input="hi")
        assert not gw.app.state.registry.get("fake").lacks_responses
    assert not upstream.requests_to("/v1/chat/completions")


async def test_the_probe_finds_a_missing_responses_api_and_routing_follows_it() -> None:
    upstream = FakeUpstream(has_responses_endpoint=False).in_memory()
    config = ProviderConfig.model_validate(fake_provider(upstream))
    async with OpenAICompatibleProvider.from_config(config, "k", upstream.transport()) as client:
        found = await probe_provider(client, "fake-model")
    assert found["responses"]["ok"] is False
    assert capabilities(found)["responses"] is False
    runtime = ProviderRuntime(config, client, "store", frozenset(), capabilities=capabilities(found))
    assert not runtime.serves_responses()


@pytest.mark.parametrize(
    ("fields", "capabilities_found", "learned", "serves"),
    [
        ({}, None, False, True),  # unknown: tried
        ({}, None, True, False),  # learned from a 404
        ({}, {"responses": False}, False, False),  # the probe's finding
        ({}, {"responses": True}, False, True),
        ({"responses": True}, None, True, True),  # the setting wins over everything
        ({"responses": False}, {"responses": True}, False, False),
        ({"api": "anthropic"}, None, False, False),  # bridged over Anthropic's chat completions
        ({"type": "deepseek", "base_url": None}, None, False, False),  # the preset's
        ({"type": "openai", "base_url": None}, None, False, True),
    ],
)
def test_whether_a_provider_serves_responses(
    fields: dict[str, Any], capabilities_found: dict[str, bool] | None, learned: bool, serves: bool
) -> None:
    spec = {"id": "p", "base_url": "https://llm.example.edu/v1", **fields}
    config = ProviderConfig.model_validate({k: v for k, v in spec.items() if v is not None})
    client = OpenAICompatibleProvider.from_config(config, "k", FakeUpstream().in_memory().transport())
    runtime = ProviderRuntime(config, client, "file", frozenset(), capabilities=capabilities_found)
    runtime.lacks_responses = learned
    assert runtime.serves_responses() is serves
