"""Whatever a client sends, the request translations answer a 400 naming a parameter, never a crash (a 500);
whatever an upstream sends, the answer and stream translations never raise (an answer without a choice is a 502)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anygate.errors import InvalidRequest, UpstreamUnavailable
from anygate.wire.anthropic_request import anthropic_to_chat, count_tokens_view
from anygate.wire.anthropic_response import chat_to_anthropic
from anygate.wire.anthropic_stream import AnthropicStreamTranslator
from anygate.wire.responses_request import responses_to_chat
from anygate.wire.responses_response import chat_to_responses
from anygate.wire.responses_stream import ResponsesStreamTranslator

LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-1, 3), st.sampled_from(["", "x", "{}", "user", "assistant", "base64", "url"])
)
ANTHROPIC_FIELDS = [
    "text",
    "source",
    "media_type",
    "data",
    "url",
    "id",
    "name",
    "input",
    "tool_use_id",
    "is_error",
    "content",
    "type",
]
RESPONSES_FIELDS = [
    "role",
    "content",
    "call_id",
    "name",
    "arguments",
    "output",
    "input",
    "text",
    "image_url",
    "file_data",
    "type",
]
INNER_TYPES = ["text", "image", "input_text", "input_image", "output_text", "document"]


def blocks(types: list[str], fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Content blocks or items of known and unknown types, with members of any type (nested a little)."""
    inner = st.dictionaries(st.sampled_from(fields), st.one_of(LEAF, st.sampled_from(INNER_TYPES)), max_size=3)
    value = st.one_of(LEAF, st.dictionaries(st.sampled_from(fields), LEAF, max_size=4), st.lists(inner, max_size=2))
    members = st.dictionaries(st.sampled_from(fields), value, max_size=5)
    return st.builds(lambda kind, extra: {"type": kind, **extra}, st.sampled_from(types), members)


ANTHROPIC_BLOCK = blocks(
    ["text", "image", "document", "tool_use", "tool_result", "thinking", "video"], ANTHROPIC_FIELDS
)
ANTHROPIC_MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "tool"]),
        "content": st.one_of(LEAF, st.lists(ANTHROPIC_BLOCK, max_size=4)),
    }
)
RESPONSES_ITEM = blocks(
    [
        "message",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "reasoning",
        "x",
    ],
    RESPONSES_FIELDS,
)
TOP_LEVEL = st.dictionaries(
    st.sampled_from(
        ["system", "tools", "tool_choice", "metadata", "thinking", "stop_sequences", "temperature", "stream"]
    ),
    st.one_of(
        LEAF,
        st.lists(
            st.dictionaries(st.sampled_from(["type", "name", "input_schema", "text"]), LEAF, max_size=3), max_size=2
        ),
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(ANTHROPIC_MESSAGE, min_size=1, max_size=4), extra=TOP_LEVEL, reasoning=st.booleans())
def test_any_anthropic_request_is_translated_or_refused_with_a_400(
    messages: list[dict[str, Any]], extra: dict[str, Any], reasoning: bool
) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": messages, **extra}
    for translate in (lambda: anthropic_to_chat(body, supports_reasoning=reasoning), lambda: count_tokens_view(body)):
        try:
            translate()
        except InvalidRequest as refused:
            assert refused.status == 400 and refused.param


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(RESPONSES_ITEM, max_size=5), extra=TOP_LEVEL)
def test_any_responses_request_is_translated_or_refused_with_a_400(
    items: list[dict[str, Any]], extra: dict[str, Any]
) -> None:
    try:
        responses_to_chat({"model": "m", "input": items, **extra}, supports_reasoning=True)
    except InvalidRequest as refused:
        assert refused.status == 400 and refused.param


# ------------------------------------------------------------------ whatever an upstream sends

CHUNK_FIELDS = ["content", "reasoning_content", "reasoning", "tool_calls", "refusal", "index", "id", "function"]
ANY_OBJECT = st.dictionaries(st.sampled_from([*CHUNK_FIELDS, "name", "arguments", "prompt_tokens"]), LEAF, max_size=4)
TOOL_CALL = st.dictionaries(
    st.sampled_from(["index", "id", "function"]),
    st.one_of(LEAF, st.dictionaries(st.sampled_from(["name", "arguments"]), st.one_of(LEAF, ANY_OBJECT), max_size=2)),
    max_size=3,
)
DELTA = st.dictionaries(
    st.sampled_from(CHUNK_FIELDS[:5]), st.one_of(LEAF, st.lists(st.one_of(TOOL_CALL, LEAF), max_size=3)), max_size=4
)
CHOICE = st.builds(
    lambda delta, finish: {"index": 0, "delta": delta, "message": delta, "finish_reason": finish},
    delta=DELTA,
    finish=st.one_of(LEAF, st.sampled_from(["stop", "length", "tool_calls", "error"])),
)
CHUNK = st.builds(
    lambda choices, usage: {"choices": choices, "usage": usage},
    choices=st.one_of(LEAF, st.lists(CHOICE, max_size=2)),
    usage=st.one_of(LEAF, ANY_OBJECT),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(CHUNK, max_size=6))
def test_any_upstream_chunks_are_translated_without_raising(chunks: list[dict[str, Any]]) -> None:
    events = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks]
    request = {"model": "m", "input": "x", "tools": [{"type": "custom", "name": "x"}]}
    for translator in (AnthropicStreamTranslator("m"), ResponsesStreamTranslator(request)):
        assert translator.feed(events) + translator.finish()
    for chunk in chunks:
        try:
            chat_to_anthropic(chunk, "m")
            chat_to_responses(chunk, request)
        except UpstreamUnavailable as failed:  # both translations read the choice the same way
            assert failed.status == 502
