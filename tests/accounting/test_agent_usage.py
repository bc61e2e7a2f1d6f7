"""Usage and estimates for the agents' APIs: Anthropic's usage in the chat form, merged from a stream's
parts, and prompt estimates that read every text an Anthropic or Responses request carries."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from anygate.accounting.estimate import completion_text, prompt_text, stream_text
from anygate.accounting.service import Ticket
from anygate.accounting.usage import anthropic_event_usage, chat_usage_of_anthropic, count_of
from anygate.auth import Principal
from anygate.exchange import Exchange


def event(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"


@pytest.mark.parametrize(
    ("usage", "chat"),
    [
        ({"input_tokens": 10, "output_tokens": 4}, {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}),
        (
            {"input_tokens": 3, "cache_read_input_tokens": 900, "cache_creation_input_tokens": 100, "output_tokens": 5},
            {
                "prompt_tokens": 1003,
                "completion_tokens": 5,
                "total_tokens": 1008,
                "prompt_tokens_details": {"cached_tokens": 900, "cache_write_tokens": 100},
            },
        ),
        ({"output_tokens": 7, "input_tokens": None}, {"prompt_tokens": 0, "completion_tokens": 7, "total_tokens": 7}),
    ],
)
def test_anthropic_usage_in_the_chat_form_counts_the_cache_as_input(
    usage: dict[str, Any], chat: dict[str, Any]
) -> None:
    assert chat_usage_of_anthropic(usage) == chat


def test_usage_is_found_in_message_start_and_message_delta_only() -> None:
    start = event("message_start", {"message": {"id": "msg_1", "usage": {"input_tokens": 9, "output_tokens": 1}}})
    delta = event("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 30}})
    text = event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": '"usage": {}'}})
    assert anthropic_event_usage(start) == {"input_tokens": 9, "output_tokens": 1}
    assert anthropic_event_usage(delta) == {"output_tokens": 30}
    assert anthropic_event_usage(text) is None
    assert anthropic_event_usage(event("ping", {})) is None


def test_a_passed_through_stream_merges_its_usage_parts_and_changes_no_byte() -> None:
    exchange = Exchange("r1", Principal(key_id="k", is_admin=False), "messages", 0.0)
    ticket = Ticket("messages", b"{}", {})
    usage = {"input_tokens": 5, "cache_read_input_tokens": 95, "output_tokens": 1}
    events = [
        event("message_start", {"message": {"usage": usage}}),
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        # A later message_delta may send null for what it does not repeat: the start's counts stay.
        event("message_delta", {"usage": {"input_tokens": None, "output_tokens": 12}}),
        event("message_stop", {}),
    ]
    assert ticket.tap_anthropic(exchange, events) == events
    assert count_of(exchange.usage) is not None
    assert (count_of(exchange.usage).input, count_of(exchange.usage).output) == (100, 12)  # type: ignore[union-attr]


RESULT = {"type": "text", "text": "RESULT"}


def test_the_prompt_of_an_anthropic_request_includes_system_tools_and_tool_traffic() -> None:
    request = {
        "system": [{"type": "text", "text": "SYSTEM"}],
        "tools": [{"name": "Read", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "USER"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {"f": "X"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [RESULT]}]},
        ],
    }  # fmt: skip
    text, messages = prompt_text(request)
    for part in ("SYSTEM", '"name":"Read"', "USER", '{"f":"X"}', "RESULT"):
        assert part in text
    assert messages == 3


def test_the_prompt_of_a_responses_request_includes_instructions_and_items() -> None:
    request = {
        "instructions": "INSTRUCTIONS",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "USER"}]},
            {"type": "function_call", "call_id": "c", "name": "shell", "arguments": '{"cmd": "ls"}'},
            {"type": "function_call_output", "call_id": "c", "output": "OUTPUT"},
        ],
    }
    text, _ = prompt_text(request)
    for part in ("INSTRUCTIONS", "USER", '{"cmd": "ls"}', "OUTPUT"):
        assert part in text


def test_deeply_nested_content_is_read_to_a_bound() -> None:
    nested: Any = "DEEP"
    for _ in range(2000):
        nested = [{"type": "tool_result", "content": nested}]
    assert prompt_text({"messages": [{"role": "user", "content": nested}]}) == ("", 1)


def test_the_generated_text_of_an_anthropic_answer_is_read_for_an_estimate() -> None:
    message = {"type": "message", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "!"}]}
    assert completion_text(orjson.dumps(message)) == "Hello!"
    deltas = [event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": t}}) for t in "ab"]
    assert stream_text(deltas) == "ab"
