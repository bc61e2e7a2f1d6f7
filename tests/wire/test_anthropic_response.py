"""Chat completions as Anthropic messages, as the Anthropic SDK's own types read them."""

from __future__ import annotations

from typing import Any

import anthropic
import orjson
import pytest

from anygate.errors import UpstreamUnavailable
from anygate.wire.anthropic_response import chat_to_anthropic
from tests.wire.support import anthropic_client, counting_ids

USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}


def completion(message: dict[str, Any], finish: str | None = "stop", **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "created": 1767225600,
        "model": "upstream-model",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, **extra}],
        "usage": USAGE,
    }


def call(call_id: str | None, name: str, arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# (case, chat completion, stop sequences, expected content, stop_reason, stop_sequence)
CASES: list[tuple[str, dict[str, Any], tuple[str, ...], list[dict[str, Any]], str, str | None]] = [
    ("text", completion({"content": "Hi there"}), (), [{"type": "text", "text": "Hi there"}], "end_turn", None),
    ("length", completion({"content": "Hi th"}, "length"), (), [{"type": "text", "text": "Hi th"}], "max_tokens", None),
    (
        "tool calls with arguments parsed",
        completion(
            {
                "content": "Checking.",
                "tool_calls": [
                    call("call_1", "get_weather", '{"city": "Hanoi"}'),
                    call("call_2", "get_time", ""),
                ],
            },
            "tool_calls",
        ),
        (),
        [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Hanoi"}},
            {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
        ],
        "tool_use",
        None,
    ),
    (
        "tool call without an id gets a toolu_ id; finish 'stop' with tool calls is tool_use",
        completion({"content": None, "tool_calls": [call(None, "get_time", "{}")]}, "stop"),
        (),
        [{"type": "tool_use", "id": "toolu_0", "name": "get_time", "input": {}}],
        "tool_use",
        None,
    ),
    (
        "broken arguments become an empty input",
        completion({"tool_calls": [call("c", "f", '{"a": ')]}, "tool_calls"),
        (),
        [{"type": "tool_use", "id": "c", "name": "f", "input": {}}],
        "tool_use",
        None,
    ),
    (
        "arguments sent as an object",
        completion({"tool_calls": [call("c", "f", {"a": 1})]}, "tool_calls"),
        (),
        [{"type": "tool_use", "id": "c", "name": "f", "input": {"a": 1}}],
        "tool_use",
        None,
    ),
    (
        "reasoning_content first, as thinking",
        completion({"reasoning_content": "2+2 is 4", "content": "4"}),
        (),
        [{"type": "thinking", "thinking": "2+2 is 4", "signature": ""}, {"type": "text", "text": "4"}],
        "end_turn",
        None,
    ),
    (
        "reasoning (OpenRouter's name)",
        completion({"reasoning": "hmm", "content": "ok"}),
        (),
        [{"type": "thinking", "thinking": "hmm", "signature": ""}, {"type": "text", "text": "ok"}],
        "end_turn",
        None,
    ),
    (
        "stop sequence named by the upstream",
        completion({"content": "one two"}, "stop", stop_reason="END"),
        ("END", "STOP"),
        [{"type": "text", "text": "one two"}],
        "stop_sequence",
        "END",
    ),
    (
        "stop not on a sequence the client gave",
        completion({"content": "one"}, "stop", stop_reason=128001),
        ("END",),
        [{"type": "text", "text": "one"}],
        "end_turn",
        None,
    ),
    (
        "refusal",
        completion({"content": None, "refusal": "I can't help with that."}),
        (),
        [{"type": "text", "text": "I can't help with that."}],
        "refusal",
        None,
    ),
    ("content filter", completion({"content": ""}, "content_filter"), (), [], "refusal", None),
    (
        "content as parts",
        completion({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
        (),
        [{"type": "text", "text": "ab"}],
        "end_turn",
        None,
    ),
]


@pytest.mark.parametrize(
    ("chat", "stops", "content", "stop_reason", "stop_sequence"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_chat_completion_becomes_an_anthropic_message(
    chat: dict[str, Any],
    stops: tuple[str, ...],
    content: list[dict[str, Any]],
    stop_reason: str,
    stop_sequence: str | None,
) -> None:
    message = chat_to_anthropic(chat, "claude-sonnet-4-5", stop_sequences=stops, new_id=counting_ids())
    parsed = anthropic.types.Message.model_validate(message)
    assert message["content"] == content
    assert (parsed.stop_reason, parsed.stop_sequence) == (stop_reason, stop_sequence)
    assert parsed.model == "claude-sonnet-4-5" and parsed.role == "assistant" and parsed.type == "message"
    assert parsed.id.startswith("msg_")


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (USAGE, {"input_tokens": 120, "output_tokens": 30}),
        (
            {**USAGE, "prompt_tokens_details": {"cached_tokens": 100}},
            {"input_tokens": 20, "output_tokens": 30, "cache_read_input_tokens": 100},
        ),
        (
            {**USAGE, "prompt_tokens_details": {"cached_tokens": 0}},
            {"input_tokens": 120, "output_tokens": 30, "cache_read_input_tokens": 0},
        ),
        (
            {**USAGE, "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 56},
            {"input_tokens": 56, "output_tokens": 30, "cache_read_input_tokens": 64},
        ),
        (
            {**USAGE, "prompt_tokens_details": {"cached_tokens": 50, "cache_write_tokens": 40}},
            {"input_tokens": 30, "output_tokens": 30, "cache_creation_input_tokens": 40, "cache_read_input_tokens": 50},
        ),
        (None, {"input_tokens": 0, "output_tokens": 0}),
    ],
    ids=["plain", "cached", "cache reported as zero", "DeepSeek cache hits", "cache writes", "none reported"],
)
def test_usage_counts_input_without_cache_reads(usage: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    chat = completion({"content": "x"})
    chat["usage"] = usage
    message = chat_to_anthropic(chat, "m")
    assert message["usage"] == expected
    anthropic.types.Message.model_validate(message)


def test_the_sdk_reads_the_message_as_its_answer() -> None:
    chat = completion({"content": "Hi", "tool_calls": [call("call_7", "f", '{"x": [1, 2]}')]}, "tool_calls")
    body = orjson.dumps(chat_to_anthropic(chat, "claude-haiku-4-5"))
    with anthropic_client(body, content_type="application/json") as client:
        message = client.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
        )
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[1].input == {"x": [1, 2]}
    assert message.usage.input_tokens == 120


@pytest.mark.parametrize("chat", [{"choices": []}, {"error": {"message": "x"}}, {"choices": ["text"]}])
def test_an_answer_without_a_choice_is_the_upstreams_fault(chat: dict[str, Any]) -> None:
    with pytest.raises(UpstreamUnavailable) as failed:
        chat_to_anthropic(chat, "m")
    assert failed.value.status == 502
