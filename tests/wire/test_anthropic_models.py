"""The OpenAI model list in the Anthropic shape, as the Anthropic SDK pages it."""

from __future__ import annotations

from typing import Any

import orjson

from anygate.wire.anthropic_models import anthropic_model_list
from tests.wire.support import anthropic_client

OPENAI_MODELS: list[dict[str, Any]] = [
    {"id": "groq/llama-3.3-70b-versatile", "object": "model", "created": 1733447754, "owned_by": "Meta"},
    {"id": "claude-sonnet-4-5", "object": "model", "created": 0, "owned_by": "anygate", "name": "Claude Sonnet 4.5"},
    {"id": "local/qwen3-coder", "object": "model", "owned_by": "vllm"},
    {"object": "model", "owned_by": "broken"},
]


def test_models_become_anthropic_model_infos() -> None:
    page = anthropic_model_list(OPENAI_MODELS)
    assert page == {
        "data": [
            {
                "type": "model",
                "id": "groq/llama-3.3-70b-versatile",
                "display_name": "groq/llama-3.3-70b-versatile",
                "created_at": "2024-12-06T01:15:54Z",
                "lifecycle": "active",
            },
            {
                "type": "model",
                "id": "claude-sonnet-4-5",
                "display_name": "Claude Sonnet 4.5",
                "created_at": "1970-01-01T00:00:00Z",
                "lifecycle": "active",
            },
            {
                "type": "model",
                "id": "local/qwen3-coder",
                "display_name": "local/qwen3-coder",
                "created_at": "1970-01-01T00:00:00Z",
                "lifecycle": "active",
            },
        ],
        "has_more": False,
        "first_id": "groq/llama-3.3-70b-versatile",
        "last_id": "local/qwen3-coder",
    }


def test_the_sdk_lists_them() -> None:
    body = orjson.dumps(anthropic_model_list(OPENAI_MODELS))
    with anthropic_client(body, content_type="application/json") as client:
        models = list(client.models.list())
    assert [model.id for model in models] == ["groq/llama-3.3-70b-versatile", "claude-sonnet-4-5", "local/qwen3-coder"]
    assert models[0].created_at.year == 2024


def test_an_empty_list() -> None:
    assert anthropic_model_list([]) == {"data": [], "has_more": False, "first_id": None, "last_id": None}
