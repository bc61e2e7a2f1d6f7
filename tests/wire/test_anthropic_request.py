"""Anthropic Messages requests as chat completions requests: each feature, the refusals, a Claude Code request."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from anygate.errors import InvalidRequest
from anygate.wire.anthropic_request import anthropic_to_chat, count_tokens_view
from tests.wire.support import assert_valid_chat_request, fixture_json

BASE: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 1024}
HELLO = [{"role": "user", "content": "Hello"}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_FUNCTION = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOL_USE_TURN = {
    "role": "assistant",
    "content": [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_01Abc", "name": "get_weather", "input": {"city": "Hanoi"}},
    ],
}
PNG = "iVBORw0KGgo="


def translate(fields: dict[str, Any], **options: Any) -> dict[str, Any]:
    chat = anthropic_to_chat({**BASE, "messages": HELLO, **fields}, **options)
    assert_valid_chat_request(chat)
    return chat


# (case, request fields, translation options, expected members of the chat request)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "minimal",
        {},
        {},
        {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello"}]},
    ),
    (
        "system string",
        {"system": "Be brief."},
        {},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]},
    ),
    (
        "system blocks with cache_control",
        {
            "system": [
                {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            ]
        },
        {},
        {
            "messages": [
                {"role": "system", "content": "You are Claude Code.\n\nBe brief."},
                {"role": "user", "content": "Hello"},
            ]
        },
    ),
    (
        "text blocks joined into one string",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                        {"type": "text", "text": "Fix it", "cache_control": {"type": "ephemeral"}},
                    ],
                }
            ]
        },
        {},
        {"messages": [{"role": "user", "content": "<system-reminder>ctx</system-reminder>\n\nFix it"}]},
    ),
    (
        "image base64 and URL",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                        {"type": "text", "text": "Same cat?"},
                    ],
                }
            ]
        },
        {},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                        {"type": "text", "text": "Same cat?"},
                    ],
                }
            ]
        },
    ),
    (
        "PDF and text documents",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "title": "spec.pdf",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
                        },
                        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
                    ],
                }
            ]
        },
        {},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "file",
                            "file": {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
                        },
                        {"type": "text", "text": "notes"},
                    ],
                }
            ]
        },
    ),
    ("tools", {"tools": [WEATHER_TOOL]}, {}, {"tools": [WEATHER_FUNCTION]}),
    ("tool_choice auto", {"tools": [WEATHER_TOOL], "tool_choice": {"type": "auto"}}, {}, {"tool_choice": "auto"}),
    ("tool_choice any", {"tools": [WEATHER_TOOL], "tool_choice": {"type": "any"}}, {}, {"tool_choice": "required"}),
    ("tool_choice none", {"tools": [WEATHER_TOOL], "tool_choice": {"type": "none"}}, {}, {"tool_choice": "none"}),
    (
        "tool_choice tool, parallel calls off",
        {
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        },
        {},
        {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": False},
    ),
    (
        "tool_choice without tools is left out",
        {"tool_choice": {"type": "auto"}},
        {},
        {"tool_choice": None, "tools": None},
    ),
    (
        "strict tool",
        {"tools": [{**WEATHER_TOOL, "strict": True}]},
        {},
        {"tools": [{"type": "function", "function": {**WEATHER_FUNCTION["function"], "strict": True}}]},
    ),
    (
        "server tools are left out",
        {"tools": [WEATHER_TOOL, {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]},
        {},
        {"tools": [WEATHER_FUNCTION]},
    ),
    (
        "tool_use and tool_result round trip, is_error, text after the result",
        {
            "messages": [
                {"role": "user", "content": "Weather in Hanoi and Hue?"},
                TOOL_USE_TURN,
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "(also, be quick)"},
                        {"type": "tool_result", "tool_use_id": "toolu_01Abc", "content": "31°C, sunny"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_01Def",
                            "is_error": True,
                            "content": [{"type": "text", "text": "city not found"}],
                        },
                    ],
                },
            ]
        },
        {},
        {
            "messages": [
                {"role": "user", "content": "Weather in Hanoi and Hue?"},
                {
                    "role": "assistant",
                    "content": "Let me check.",
                    "tool_calls": [
                        {
                            "id": "toolu_01Abc",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Hanoi"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_01Abc", "content": "31°C, sunny"},
                {"role": "tool", "tool_call_id": "toolu_01Def", "content": "Error: city not found"},
                {"role": "user", "content": "(also, be quick)"},
            ]
        },
    ),
    (
        "an image in a tool result follows as a user message",
        {
            "messages": [
                {"role": "user", "content": "Screenshot?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [
                                {"type": "text", "text": "captured"},
                                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                            ],
                        }
                    ],
                },
            ]
        },
        {},
        {
            "messages": [
                {"role": "user", "content": "Screenshot?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "captured"},
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}],
                },
            ]
        },
    ),
    (
        "thinking blocks of earlier turns are dropped",
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "EqQBCkgIAhABGAIiQ"},
                        {"type": "redacted_thinking", "data": "EmwKAhgBEgy"},
                        {"type": "text", "text": "Hello!"},
                    ],
                },
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "only", "signature": "x"}]},
                {"role": "user", "content": "Bye"},
            ]
        },
        {},
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Bye"},
            ]
        },
    ),
    (
        "sampling and stop sequences; top_k dropped",
        {"stop_sequences": ["\n\nHuman:", "END"], "temperature": 0.2, "top_p": 0.9, "top_k": 40},
        {},
        {"stop": ["\n\nHuman:", "END"], "temperature": 0.2, "top_p": 0.9, "top_k": None},
    ),
    ("metadata.user_id, short", {"metadata": {"user_id": "student-17"}}, {}, {"user": "student-17"}),
    (
        "metadata.user_id, Claude Code's long one, hashed",
        {"metadata": {"user_id": "user_" + "a" * 64 + "_account_x_session_y"}},
        {},
        {"user": hashlib.sha256(("user_" + "a" * 64 + "_account_x_session_y").encode()).hexdigest()},
    ),
    (
        "thinking, upstream without reasoning: dropped",
        {"thinking": {"type": "enabled", "budget_tokens": 10000}},
        {},
        {"reasoning_effort": None},
    ),
    (
        "thinking 4k budget, reasoning upstream: low",
        {"thinking": {"type": "enabled", "budget_tokens": 4000}},
        {"supports_reasoning": True},
        {"reasoning_effort": "low"},
    ),
    (
        "thinking 10k budget: medium",
        {"thinking": {"type": "enabled", "budget_tokens": 10000}},
        {"supports_reasoning": True},
        {"reasoning_effort": "medium"},
    ),
    (
        "thinking 32k budget: high",
        {"thinking": {"type": "enabled", "budget_tokens": 31999}},
        {"supports_reasoning": True},
        {"reasoning_effort": "high"},
    ),
    (
        "thinking disabled: the upstream's default",
        {"thinking": {"type": "disabled"}},
        {"supports_reasoning": True},
        {"reasoning_effort": None},
    ),
    (
        "output_config.effort wins over the budget",
        {"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}},
        {"supports_reasoning": True},
        {"reasoning_effort": "high"},
    ),
    (
        "structured output",
        {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
        {},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": True},
            }
        },
    ),
    ("stream", {"stream": True}, {}, {"stream": True, "stream_options": None}),
    (
        "stream, asking for usage",
        {"stream": True},
        {"ask_stream_usage": True},
        {"stream": True, "stream_options": {"include_usage": True}},
    ),
    ("not streamed", {"stream": False}, {}, {"stream": None}),
    (
        "the token limit under the name the upstream reads",
        {},
        {"limit_field": "max_completion_tokens"},
        {"max_completion_tokens": 1024, "max_tokens": None},
    ),
]


@pytest.mark.parametrize(("fields", "options", "expected"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_anthropic_feature_becomes_chat(
    fields: dict[str, Any], options: dict[str, Any], expected: dict[str, Any]
) -> None:
    chat = translate(fields, **options)
    assert {name: chat.get(name) for name in expected} == expected
    assert b"cache_control" not in orjson.dumps(chat)


# (case, the whole request, the parameter the 400 names)
REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("no model", {"max_tokens": 10, "messages": HELLO}, "model"),
    ("empty model", {"model": "", "max_tokens": 10, "messages": HELLO}, "model"),
    ("no max_tokens", {"model": "m", "messages": HELLO}, "max_tokens"),
    ("max_tokens a string", {**BASE, "max_tokens": "10", "messages": HELLO}, "max_tokens"),
    ("max_tokens zero", {**BASE, "max_tokens": 0, "messages": HELLO}, "max_tokens"),
    ("max_tokens a boolean", {**BASE, "max_tokens": True, "messages": HELLO}, "max_tokens"),
    ("no messages", {**BASE}, "messages"),
    ("messages not a list", {**BASE, "messages": {"role": "user"}}, "messages"),
    ("messages empty", {**BASE, "messages": []}, "messages"),
    ("a system role in messages", {**BASE, "messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ("no content", {**BASE, "messages": [{"role": "user"}]}, "messages[0].content"),
    ("content a number", {**BASE, "messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
    (
        "unknown block type",
        {**BASE, "messages": [{"role": "user", "content": [{"type": "container_upload", "file_id": "f"}]}]},
        "messages[0].content[0].type",
    ),
    (
        "block without type",
        {**BASE, "messages": [{"role": "user", "content": [{"text": "x"}]}]},
        "messages[0].content[0].type",
    ),
    (
        "text block without text",
        {**BASE, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
        "messages[0].content[0].text",
    ),
    (
        "image from the Files API",
        {
            **BASE,
            "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}],
        },
        "messages[0].content[0].source.type",
    ),
    (
        "tool_use in a user turn",
        {
            **BASE,
            "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]}],
        },
        "messages[0].content[0].type",
    ),
    (
        "tool_result without tool_use_id",
        {**BASE, "messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]},
        "messages[0].content[0].tool_use_id",
    ),
    (
        "is_error not a boolean",
        {
            **BASE,
            "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": "yes"}]}],
        },
        "messages[0].content[0].is_error",
    ),
    (
        "tool_use input not an object",
        {
            **BASE,
            "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": []}]}],
        },
        "messages[0].content[0].input",
    ),
    ("system block not text", {**BASE, "messages": HELLO, "system": [{"type": "image"}]}, "system[0].type"),
    ("temperature a string", {**BASE, "messages": HELLO, "temperature": "hot"}, "temperature"),
    ("stop_sequences a string", {**BASE, "messages": HELLO, "stop_sequences": "END"}, "stop_sequences"),
    ("stop sequence a number", {**BASE, "messages": HELLO, "stop_sequences": [1]}, "stop_sequences[0]"),
    ("stream a string", {**BASE, "messages": HELLO, "stream": "yes"}, "stream"),
    ("tool without input_schema", {**BASE, "messages": HELLO, "tools": [{"name": "x"}]}, "tools[0].input_schema"),
    ("tool without name", {**BASE, "messages": HELLO, "tools": [{"input_schema": {}}]}, "tools[0].name"),
    (
        "tool_choice of an unknown type",
        {**BASE, "messages": HELLO, "tools": [WEATHER_TOOL], "tool_choice": {"type": "sometimes"}},
        "tool_choice.type",
    ),
    ("tool_choice any without tools", {**BASE, "messages": HELLO, "tool_choice": {"type": "any"}}, "tool_choice"),
    (
        "tool_choice naming a server tool",
        {
            **BASE,
            "messages": HELLO,
            "tools": [{"type": "web_search_20250305", "name": "web_search"}, WEATHER_TOOL],
            "tool_choice": {"type": "tool", "name": "web_search"},
        },
        "tool_choice.name",
    ),
    ("metadata not an object", {**BASE, "messages": HELLO, "metadata": "u1"}, "metadata"),
    (
        "thinking without a budget",
        {**BASE, "messages": HELLO, "thinking": {"type": "enabled"}},
        "thinking.budget_tokens",
    ),
]


@pytest.mark.parametrize(("body", "param"), [case[1:] for case in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_bad_request_is_refused_naming_the_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        anthropic_to_chat(body, supports_reasoning=True)
    assert refused.value.status == 400
    assert refused.value.param == param
    assert param in refused.value.message


def test_claude_code_request_becomes_a_valid_chat_request() -> None:
    request = fixture_json("claude_code_request.json")
    chat = anthropic_to_chat(request, supports_reasoning=True)
    assert_valid_chat_request(chat)
    roles = [message["role"] for message in chat["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "user"]
    assert chat["messages"][0]["content"].startswith("You are Claude Code, Anthropic's official CLI for Claude.\n\n")
    assert [tool["function"]["name"] for tool in chat["tools"]] == ["Bash", "Read", "Edit"]
    assert chat["tools"][0]["function"]["parameters"] == request["tools"][0]["input_schema"]
    call_ids = [call["id"] for message in chat["messages"] for call in message.get("tool_calls", ())]
    result_ids = [message["tool_call_id"] for message in chat["messages"] if message["role"] == "tool"]
    assert call_ids == result_ids == ["toolu_01A9q3xRZpT6vWbY2cJkLm4N", "toolu_01Bx7YhN2kQ4sR8tU1vW3xZ5"]
    assert chat["messages"][5]["content"].startswith("Error: F.\nFAILED tests/test_cart.py::test_coupon")
    assert len(chat["user"]) == 64 and chat["user"] != request["metadata"]["user_id"]
    assert chat["stream"] is True and chat["max_tokens"] == 32000
    assert b"cache_control" not in orjson.dumps(chat)


def test_count_tokens_view_holds_everything_the_model_reads_as_text() -> None:
    request = fixture_json("claude_code_request.json")
    del request["max_tokens"]  # count_tokens takes no max_tokens
    view = count_tokens_view(request)
    assert set(view) == {"model", "messages"}
    assert all(isinstance(message["content"], str) for message in view["messages"])
    text = "\n".join(message["content"] for message in view["messages"])
    for read_by_the_model in (
        "Performs exact string replacements",
        "You are Claude Code",
        "pytest -q tests/test_cart.py",
    ):
        assert read_by_the_model in text
    assert "1 failed, 1 passed" in text and "The TodoWrite tool" in text


def test_count_tokens_view_refuses_what_the_translation_refuses() -> None:
    with pytest.raises(InvalidRequest) as refused:
        count_tokens_view({"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]})
    assert refused.value.param == "messages[0].content[0].type"
