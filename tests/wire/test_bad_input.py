"""Whatever a client sends, the request translations answer a 400 naming a parameter, never a crash (a 500)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anygate.errors import InvalidRequest
from anygate.wire.anthropic_request import anthropic_to_chat, count_tokens_view
from anygate.wire.responses_request import responses_to_chat

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
