"""The small decisions the edge makes for agents' requests: which path a legacy prefix stands for, which
error shape a request gets, whether a 404 says an endpoint is missing, whether an upstream reasons."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from anygate.api.bridges import is_missing_endpoint, supports_reasoning
from anygate.api.dialects import anthropic_answer, speaks_anthropic, unprefixed
from anygate.errors import RateLimited, UpstreamStatusError
from anygate.registry import ProviderRuntime
from anygate.settings import ProviderConfig
from anygate.upstream import OpenAICompatibleProvider
from tests.support.fake_upstream import FakeUpstream


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/openai/v1/chat/completions", "/v1/chat/completions"),
        ("/anthropic/v1/messages", "/v1/messages"),
        ("/openai/v1/models", "/v1/models"),
        ("/v1/messages", "/v1/messages"),
        ("/openai/v2/chat", "/openai/v2/chat"),
        ("/anthropicx/v1/messages", "/anthropicx/v1/messages"),
    ],
)
def test_legacy_prefixes_stand_for_the_v1_routes(path: str, expected: str) -> None:
    assert unprefixed(path) == expected


@pytest.mark.parametrize(
    ("path", "headers", "anthropic"),
    [
        ("/v1/messages", [], True),
        ("/v1/messages/count_tokens", [], True),
        ("/openai/v1/messages", [], True),
        ("/anthropic/v1/anything", [], True),
        ("/v1/models", [(b"anthropic-version", b"2023-06-01")], True),
        ("/v1/models/claude-x", [(b"anthropic-version", b"2023-06-01")], True),
        ("/v1/models", [], False),
        ("/v1/chat/completions", [(b"anthropic-version", b"2023-06-01")], False),
        ("/v1/responses", [], False),
    ],
)
def test_which_requests_get_anthropics_error_shape(path: str, headers: list[Any], anthropic: bool) -> None:
    assert speaks_anthropic({"path": path, "headers": headers}) is anthropic


def test_an_anthropic_upstreams_own_error_passes_and_an_openai_one_is_reshaped() -> None:
    own = orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert anthropic_answer(UpstreamStatusError(529, own)) == (529, own)
    openai_style = orjson.dumps({"error": {"message": "Slow down", "type": "rate_limit_error"}})
    status, body = anthropic_answer(UpstreamStatusError(429, openai_style))
    assert (status, orjson.loads(body)) == (
        429,
        {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}},
    )
    secret = orjson.dumps({"error": {"message": "bad key sk-live-123456789"}})
    status, body = anthropic_answer(UpstreamStatusError(401, secret, secrets=["sk-live-123456789"]))
    assert b"sk-live" not in body and orjson.loads(body)["error"]["type"] == "authentication_error"
    status, body = anthropic_answer(RateLimited("Rate limit of 2 requests per minute reached", retry_after=30))
    assert status == 429 and orjson.loads(body)["error"]["message"].startswith("Rate limit of 2")


@pytest.mark.parametrize(
    ("status", "body", "missing"),
    [
        (404, b"404 page not found", True),  # Ollama, most web servers
        (404, b'{"detail":"Not Found"}', True),  # vLLM, LiteLLM (FastAPI)
        (404, b'{"error":{"message":"Unknown request URL: POST /v1/responses","code":"unknown_url"}}', True),
        (405, b'{"error":{"message":"Method Not Allowed"}}', True),
        (404, b'{"error":{"message":"The model x does not exist","code":"model_not_found"}}', False),
        (404, b'{"error":{"message":"no such model","param":"model"}}', False),
        (400, b"", False),
        (500, b"", False),
    ],
)
def test_a_404_or_405_says_the_endpoint_is_missing_unless_it_names_the_model(
    status: int, body: bytes, missing: bool
) -> None:
    assert is_missing_endpoint(status, body) is missing


@pytest.mark.parametrize(
    ("model", "entry", "reasons"),
    [
        ("gpt-5-mini", None, True),
        ("openai/o3", None, True),
        ("llama-3.1-70b", None, False),
        ("deepseek/deepseek-r1", {"supported_parameters": ["reasoning", "include_reasoning"]}, True),
        ("qwen/qwen3", {"supported_parameters": ["tools", "temperature"]}, False),
        ("gpt-5", {"supported_parameters": ["tools"]}, False),  # what the upstream lists wins
    ],
)
def test_whether_an_upstream_takes_a_reasoning_effort(model: str, entry: dict[str, Any] | None, reasons: bool) -> None:
    config = ProviderConfig(id="p", base_url="https://llm.example.edu/v1")
    client = OpenAICompatibleProvider.from_config(config, "k", FakeUpstream().in_memory().transport())
    runtime = ProviderRuntime(config, client, "file", frozenset(), model_entries={model: entry} if entry else {})
    assert supports_reasoning(runtime, model) is reasons
