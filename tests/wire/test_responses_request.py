"""Responses API requests as chat completions requests: each feature, the refusals, a Codex request."""

from __future__ import annotations

from typing import Any

import pytest

from anygate.errors import InvalidRequest
from anygate.wire.responses_request import responses_to_chat
from tests.wire.support import assert_valid_chat_request, fixture_json

BASE: dict[str, Any] = {"model": "qwen3-coder"}
SHELL_TOOL = {
    "type": "function",
    "name": "shell",
    "description": "Runs a command",
    "strict": False,
    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
}
SHELL_FUNCTION = {
    "type": "function",
    "function": {
        "name": "shell",
        "description": "Runs a command",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
    },
}


def translate(fields: dict[str, Any], **options: Any) -> dict[str, Any]:
    chat = responses_to_chat({**BASE, "input": "Hello", **fields}, **options)
    assert_valid_chat_request(chat)
    return chat


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# (case, request fields, options, expected members of the chat request)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("string input", {}, {}, {"model": "qwen3-coder", "messages": [{"role": "user", "content": "Hello"}]}),
    (
        "instructions",
        {"instructions": "Be brief."},
        {},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]},
    ),
    (
        "instructions and leading developer messages make one system message",
        {
            "instructions": "You are Codex.",
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Sandbox: on."}]},
                {"role": "user", "content": "Hi"},
                {"role": "developer", "content": "Later note."},
            ],
        },
        {},
        {
            "messages": [
                {"role": "system", "content": "You are Codex.\n\nSandbox: on."},
                {"role": "user", "content": "Hi"},
                {"role": "system", "content": "Later note."},
            ]
        },
    ),
    (
        "message items with text and image parts",
        {
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "low"},
                    ],
                },
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]},
            ]
        },
        {},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO", "detail": "low"}},
                    ],
                },
                {"role": "assistant", "content": "A cat."},
            ]
        },
    ),
    (
        "function_call and function_call_output items; parallel calls share one assistant message",
        {
            "input": [
                {"role": "user", "content": "List both dirs"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"},
                {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": '{"command":"ls a"}'},
                {"type": "function_call", "call_id": "call_2", "name": "shell", "arguments": '{"command":"ls b"}'},
                {"type": "function_call_output", "call_id": "call_1", "output": "x.py"},
                {
                    "type": "function_call_output",
                    "call_id": "call_2",
                    "output": [{"type": "input_text", "text": "y.py"}],
                },
            ]
        },
        {},
        {
            "messages": [
                {"role": "user", "content": "List both dirs"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        call("call_1", "shell", '{"command":"ls a"}'),
                        call("call_2", "shell", '{"command":"ls b"}'),
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "x.py"},
                {"role": "tool", "tool_call_id": "call_2", "content": "y.py"},
            ]
        },
    ),
    (
        "a call after the assistant's text joins its message",
        {
            "input": [
                {"role": "user", "content": "Go"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Running it."}]},
                {"type": "function_call", "call_id": "c", "name": "shell", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "done"},
            ]
        },
        {},
        {
            "messages": [
                {"role": "user", "content": "Go"},
                {"role": "assistant", "content": "Running it.", "tool_calls": [call("c", "shell", "{}")]},
                {"role": "tool", "tool_call_id": "c", "content": "done"},
            ]
        },
    ),
    (
        "images in tool outputs follow the run of tool messages",
        {
            "input": [
                {"role": "user", "content": "Look"},
                {"type": "function_call", "call_id": "a", "name": "view", "arguments": "{}"},
                {"type": "function_call", "call_id": "b", "name": "view", "arguments": "{}"},
                {
                    "type": "function_call_output",
                    "call_id": "a",
                    "output": [{"type": "input_image", "image_url": "https://example.com/a.png"}],
                },
                {"type": "function_call_output", "call_id": "b", "output": "no image"},
            ]
        },
        {},
        {
            "messages": [
                {"role": "user", "content": "Look"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [call("a", "view", "{}"), call("b", "view", "{}")],
                },
                {"role": "tool", "tool_call_id": "a", "content": ""},
                {"role": "tool", "tool_call_id": "b", "content": "no image"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
            ]
        },
    ),
    (
        "function tools; hosted tools left out",
        {"tools": [SHELL_TOOL, {"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]}]},
        {},
        {"tools": [SHELL_FUNCTION]},
    ),
    (
        "tool_choice and parallel_tool_calls",
        {"tools": [SHELL_TOOL], "tool_choice": {"type": "function", "name": "shell"}, "parallel_tool_calls": False},
        {},
        {"tool_choice": {"type": "function", "function": {"name": "shell"}}, "parallel_tool_calls": False},
    ),
    ("tool_choice required", {"tools": [SHELL_TOOL], "tool_choice": "required"}, {}, {"tool_choice": "required"}),
    (
        "no callable tool: tool_choice auto is left out",
        {"tools": [{"type": "web_search"}], "tool_choice": "auto", "parallel_tool_calls": True},
        {},
        {"tools": None, "tool_choice": None, "parallel_tool_calls": None},
    ),
    (
        "a freeform tool becomes a function taking its raw input",
        {
            "tools": [
                {
                    "type": "custom",
                    "name": "apply_patch",
                    "description": "Edit files.",
                    "format": {"type": "grammar", "syntax": "lark", "definition": "start: PATCH"},
                }
            ]
        },
        {},
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "apply_patch",
                        "description": "Edit files.\n\nThe input follows this lark grammar:\nstart: PATCH",
                        "parameters": {
                            "type": "object",
                            "properties": {"input": {"type": "string", "description": "The raw input of the tool"}},
                            "required": ["input"],
                        },
                    },
                }
            ]
        },
    ),
    (
        "custom tool calls and outputs",
        {
            "input": [
                {"role": "user", "content": "Patch it"},
                {"type": "custom_tool_call", "call_id": "p1", "name": "apply_patch", "input": "*** Begin Patch\n"},
                {"type": "custom_tool_call_output", "call_id": "p1", "output": "Success."},
            ]
        },
        {},
        {
            "messages": [
                {"role": "user", "content": "Patch it"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [call("p1", "apply_patch", '{"input":"*** Begin Patch\\n"}')],
                },
                {"role": "tool", "tool_call_id": "p1", "content": "Success."},
            ]
        },
    ),
    ("max_output_tokens", {"max_output_tokens": 2048}, {}, {"max_tokens": 2048}),
    (
        "max_output_tokens under the name the upstream reads",
        {"max_output_tokens": 2048},
        {"limit_field": "max_completion_tokens"},
        {"max_completion_tokens": 2048, "max_tokens": None},
    ),
    ("sampling", {"temperature": 0.3, "top_p": 0.8}, {}, {"temperature": 0.3, "top_p": 0.8}),
    ("user", {"user": "alice"}, {}, {"user": "alice"}),
    ("safety_identifier", {"safety_identifier": "u-1"}, {}, {"user": "u-1"}),
    (
        "reasoning, upstream without reasoning: dropped",
        {"reasoning": {"effort": "high"}},
        {},
        {"reasoning_effort": None},
    ),
    (
        "reasoning effort",
        {"reasoning": {"effort": "minimal", "summary": "auto"}},
        {"supports_reasoning": True},
        {"reasoning_effort": "low"},
    ),
    (
        "json_schema text format",
        {"text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True}}},
        {},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
            }
        },
    ),
    (
        "json_object text format",
        {"text": {"format": {"type": "json_object"}}},
        {},
        {"response_format": {"type": "json_object"}},
    ),
    (
        "text format text, verbosity dropped",
        {"text": {"format": {"type": "text"}, "verbosity": "low"}},
        {},
        {"response_format": None},
    ),
    (
        "stream, asking for usage",
        {"stream": True, "store": False, "include": ["reasoning.encrypted_content"]},
        {"ask_stream_usage": True},
        {"stream": True, "stream_options": {"include_usage": True}, "store": None, "include": None},
    ),
]


@pytest.mark.parametrize(("fields", "options", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_responses_feature_becomes_chat(
    fields: dict[str, Any], options: dict[str, Any], expected: dict[str, Any]
) -> None:
    chat = translate(fields, **options)
    assert {name: chat.get(name) for name in expected} == expected


REFUSALS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "previous_response_id",
        {**BASE, "input": "Hi", "previous_response_id": "resp_abc"},
        "previous_response_id",
        "store",
    ),
    ("conversation", {**BASE, "input": "Hi", "conversation": "conv_1"}, "conversation", "store"),
    ("stored prompt", {**BASE, "input": "Hi", "prompt": {"id": "pmpt_1"}}, "prompt", "store"),
    ("background", {**BASE, "input": "Hi", "background": True}, "background", "store"),
    ("item_reference", {**BASE, "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type", "store"),
    ("no model", {"input": "Hi"}, "model", "model"),
    ("no input", {**BASE}, "input", "input"),
    ("input a number", {**BASE, "input": 3}, "input", "input"),
    (
        "unknown item",
        {**BASE, "input": [{"type": "computer_call_output", "call_id": "c"}]},
        "input[0].type",
        "computer_call_output",
    ),
    ("unknown role", {**BASE, "input": [{"role": "tool", "content": "x"}]}, "input[0].role", "role"),
    (
        "function_call without call_id",
        {**BASE, "input": [{"type": "function_call", "name": "f"}]},
        "input[0].call_id",
        "call_id",
    ),
    (
        "image by file id",
        {**BASE, "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
        "input[0].content[0].image_url",
        "file ids",
    ),
    (
        "an image in a system message",
        {**BASE, "input": [{"role": "system", "content": [{"type": "input_image", "image_url": "x"}]}]},
        "input[0].content[0].type",
        "input_image",
    ),
    ("max_output_tokens zero", {**BASE, "input": "Hi", "max_output_tokens": 0}, "max_output_tokens", "at least 1"),
    ("tools not a list", {**BASE, "input": "Hi", "tools": {"type": "function"}}, "tools", "array"),
    ("function without a name", {**BASE, "input": "Hi", "tools": [{"type": "function"}]}, "tools[0].name", "name"),
    (
        "tool_choice a hosted tool",
        {**BASE, "input": "Hi", "tools": [SHELL_TOOL], "tool_choice": {"type": "web_search"}},
        "tool_choice",
        "hosted",
    ),
    (
        "tool_choice required without callable tools",
        {**BASE, "input": "Hi", "tool_choice": "required"},
        "tool_choice",
        "no tool",
    ),
    (
        "text format unknown",
        {**BASE, "input": "Hi", "text": {"format": {"type": "xml"}}},
        "text.format.type",
        "json_schema",
    ),
]


@pytest.mark.parametrize(("body", "param", "words"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_bad_or_stateful_request_is_refused_naming_the_parameter(body: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        responses_to_chat(body)
    assert refused.value.status == 400
    assert refused.value.param == param
    assert words in refused.value.message


def test_previous_response_id_refusal_says_what_to_do() -> None:
    with pytest.raises(InvalidRequest) as refused:
        responses_to_chat({**BASE, "input": "Hi", "previous_response_id": "resp_abc"})
    assert refused.value.message == (
        "'previous_response_id' needs responses stored by the server, and anygate does not store responses: "
        "send the whole conversation in 'input' (with store: false)"
    )


def test_codex_request_becomes_a_valid_chat_request() -> None:
    request = fixture_json("codex_request.json")
    chat = responses_to_chat(request, supports_reasoning=True)
    assert_valid_chat_request(chat)
    roles = [message["role"] for message in chat["messages"]]
    assert roles == ["system", "user", "user", "assistant", "tool", "assistant", "tool", "assistant", "user"]
    assert chat["messages"][0]["content"].startswith("You are Codex, based on GPT-5.")
    assert "<permissions instructions>" in chat["messages"][0]["content"]
    assert [tool["function"]["name"] for tool in chat["tools"]] == ["shell", "update_plan", "apply_patch"]
    assert chat["messages"][5]["tool_calls"][0]["function"]["name"] == "apply_patch"
    assert chat["messages"][6] == {
        "role": "tool",
        "tool_call_id": "call_Pp4Lm9Qr2St6Uv1Wx3Yz8Ab",
        "content": "Success. Updated the following files:\nM cart.py\n",
    }
    assert chat["parallel_tool_calls"] is False and chat["tool_choice"] == "auto"
    assert chat["reasoning_effort"] == "medium" and chat["stream"] is True
    for unsent in ("store", "include", "prompt_cache_key", "text", "reasoning", "instructions", "input"):
        assert unsent not in chat
