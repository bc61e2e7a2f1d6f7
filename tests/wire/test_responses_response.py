"""Chat completions as Responses API responses, as the openai SDK's own types read them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.responses import Response

from anygate.wire.responses_response import chat_to_responses
from tests.wire.support import counting_ids, openai_client

REQUEST: dict[str, Any] = {
    "model": "qwen3-coder",
    "input": "Hi",
    "instructions": "Be brief.",
    "max_output_tokens": 500,
    "tools": [
        {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}, "strict": False},
        {"type": "custom", "name": "apply_patch", "description": "Edit files."},
    ],
}
USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 80,
    "total_tokens": 1280,
    "prompt_tokens_details": {"cached_tokens": 1024},
    "completion_tokens_details": {"reasoning_tokens": 32},
}


def completion(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "created": 1767225600,
        "model": "upstream",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": USAGE,
    }


def respond(chat: dict[str, Any]) -> dict[str, Any]:
    response = chat_to_responses(chat, REQUEST, new_id=counting_ids(), now=lambda: 1767225600.5)
    Response.model_validate(response)
    return response


CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]], str, dict[str, Any] | None]] = [
    (
        "text",
        completion({"content": "Hello!"}),
        [
            {
                "id": "msg_0",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}],
            }
        ],
        "completed",
        None,
    ),
    (
        "reasoning, text and a function call",
        completion(
            {
                "reasoning_content": "Look first.",
                "content": "Listing.",
                "tool_calls": [
                    {"id": "call_9", "type": "function", "function": {"name": "shell", "arguments": '{"cmd":"ls"}'}}
                ],
            },
            "tool_calls",
        ),
        [
            {
                "id": "rs_0",
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": "Look first."}],
                "status": "completed",
            },
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Listing.", "annotations": [], "logprobs": []}],
            },
            {
                "id": "fc_2",
                "type": "function_call",
                "status": "completed",
                "call_id": "call_9",
                "name": "shell",
                "arguments": '{"cmd":"ls"}',
            },
        ],
        "completed",
        None,
    ),
    (
        "a freeform tool's call, unwrapped; a call without an id",
        completion(
            {
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "apply_patch", "arguments": '{"input":"*** Begin Patch"}'},
                    }
                ]
            },
            "tool_calls",
        ),
        [
            {
                "id": "ctc_1",
                "type": "custom_tool_call",
                "call_id": "call_0",
                "name": "apply_patch",
                "input": "*** Begin Patch",
            }
        ],
        "completed",
        None,
    ),
    (
        "length is incomplete",
        completion({"content": "Hel"}, "length"),
        [
            {
                "id": "msg_0",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hel", "annotations": [], "logprobs": []}],
            }
        ],
        "incomplete",
        {"reason": "max_output_tokens"},
    ),
    (
        "refusal",
        completion({"content": None, "refusal": "No."}),
        [
            {
                "id": "msg_0",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "refusal", "refusal": "No."}],
            }
        ],
        "completed",
        None,
    ),
]


@pytest.mark.parametrize(("chat", "output", "status", "incomplete"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_chat_completion_becomes_a_response(
    chat: dict[str, Any], output: list[dict[str, Any]], status: str, incomplete: dict[str, Any] | None
) -> None:
    response = respond(chat)
    assert response["output"] == output
    assert (response["status"], response["incomplete_details"]) == (status, incomplete)
    assert response["id"].startswith("resp_") and response["created_at"] == 1767225600
    assert response["model"] == "qwen3-coder" and response["object"] == "response"
    assert response["instructions"] == "Be brief." and response["max_output_tokens"] == 500
    assert response["tools"] == REQUEST["tools"] and response["store"] is False


def test_usage_counts_cached_input_inside_input_tokens() -> None:
    assert respond(completion({"content": "x"}))["usage"] == {
        "input_tokens": 1200,
        "input_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 0},
        "output_tokens": 80,
        "output_tokens_details": {"reasoning_tokens": 32},
        "total_tokens": 1280,
    }


def test_no_usage_reported_is_none() -> None:
    chat = completion({"content": "x"})
    del chat["usage"]
    assert respond(chat)["usage"] is None


def test_the_sdk_reads_it_as_its_response() -> None:
    chat = completion(
        {
            "content": "Hello!",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "shell", "arguments": "{}"}}],
        }
    )
    body = orjson.dumps(chat_to_responses(chat, REQUEST))
    with openai_client(body, content_type="application/json") as client:
        response = client.responses.create(model="qwen3-coder", input="Hi")
    assert response.output_text == "Hello!"
    assert [item.type for item in response.output] == ["message", "function_call"]
    assert response.usage is not None and response.usage.total_tokens == 1280
