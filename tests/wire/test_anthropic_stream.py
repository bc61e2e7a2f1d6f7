"""Chat completions streams as Anthropic Messages streams: recorded upstream streams, read by the Anthropic SDK,
and the same events however the upstream's bytes are cut."""

from __future__ import annotations

from typing import Any

import anthropic
import orjson
import pydantic
import pytest
from anthropic.types import RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from anygate.wire.anthropic_stream import PING_EVENT, AnthropicPassage, AnthropicStreamTranslator
from anygate.wire.chat_stream import completion_chunk
from anygate.wire.sse import EventSplitter
from tests.wire.support import (
    DONE,
    anthropic_client,
    chat_chunk,
    counting_ids,
    parsed_events,
    stream_fixture,
    usage_chunk,
    whole_events,
)

STREAM_EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)
HELLO = [{"role": "user", "content": "Hi"}]


def translate(events: list[bytes], **options: Any) -> bytes:
    translator = AnthropicStreamTranslator("claude-sonnet-4-5", new_id=counting_ids(), **options)
    return b"".join(translator.feed(events) + translator.finish())


def final_message(body: bytes) -> Any:
    """The message the Anthropic SDK accumulates from the stream (which checks the order of events too)."""
    with anthropic_client(body) as client:
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO) as stream:
            return stream.get_final_message()


def blocks(message: Any) -> list[tuple[str, Any, Any]]:
    """(type, tool id, text or input) of each content block."""
    summary = {"text": "text", "thinking": "thinking", "tool_use": "input"}
    return [
        (block.type, block.id if block.type == "tool_use" else None, getattr(block, summary[block.type]))
        for block in message.content
    ]


RECORDED: list[tuple[str, list[tuple[str, Any, Any]], str, dict[str, Any]]] = [
    (
        "openai_text.sse",
        [("text", None, 'The build passes: 214 tests, "0 failed" ✓ — ünïcode too.')],
        "end_turn",
        {"input_tokens": 314, "output_tokens": 17, "cache_read_input_tokens": 1536},
    ),
    (
        "openai_tool_calls.sse",
        [
            ("tool_use", "call_Ks2fPq0dYv8LmN3rTa6wXc1B", {"file_path": "/srv/app/src/main.py"}),
            (
                "tool_use",
                "call_Qe7vHn4mZb2JtR9yUo5sLd3K",
                {"command": "pytest -q tests/", "description": "Run the tests"},
            ),
        ],
        "tool_use",
        {"input_tokens": 5210, "output_tokens": 58, "cache_read_input_tokens": 0},
    ),
    (
        "vllm_mixed_crlf.sse",
        [
            ("text", None, "I will look at the failing test first."),
            ("tool_use", "chatcmpl-tool-9a8b7c6d", {"pattern": "def test_login", "path": "tests"}),
            ("text", None, "Searching now."),
        ],
        "tool_use",
        {"input_tokens": 3120, "output_tokens": 41, "cache_read_input_tokens": None},
    ),
    (
        "deepseek_reasoning.sse",
        [
            ("thinking", None, "The user asks for 17 × 23. 17 × 20 = 340, 17 × 3 = 51, so 391."),
            ("text", None, "17 × 23 = **391**."),
        ],
        "end_turn",
        {"input_tokens": 24, "output_tokens": 96, "cache_read_input_tokens": 0},
    ),
    (
        "openrouter_reasoning_tools.sse",
        [
            ("thinking", None, "Need the file list before editing."),
            ("tool_use", "functions.Glob:0", {"pattern": "src/**/*.py"}),
        ],
        "tool_use",
        {"input_tokens": 314, "output_tokens": 37, "cache_read_input_tokens": 4096},
    ),
    (
        "interleaved_tool_calls.sse",
        [("tool_use", "call_a", {"file_path": "a.py"}), ("tool_use", "call_b", {"file_path": "b.py"})],
        "tool_use",
        {"input_tokens": 700, "output_tokens": 30, "cache_read_input_tokens": None},
    ),
    (
        "gemini_same_index.sse",
        [
            ("text", None, "Checking both files."),
            ("tool_use", "function-call-1571104367383941513", {"file_path": "README.md"}),
            ("tool_use", "function-call-9412734013371182846", {"file_path": "setup.cfg"}),
        ],
        "tool_use",
        {"input_tokens": 980, "output_tokens": 44, "cache_read_input_tokens": None},
    ),
    (
        "llamacpp_no_done.sse",
        [("text", None, "Partial answer without an end")],
        "end_turn",
        {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": None},
    ),
]
RECORDED_NAMES = [case[0] for case in RECORDED]


@pytest.mark.parametrize(("name", "content", "stop_reason", "usage"), RECORDED, ids=RECORDED_NAMES)
def test_recorded_stream_reads_as_the_anthropic_message(
    name: str, content: list[tuple[str, Any, Any]], stop_reason: str, usage: dict[str, Any]
) -> None:
    body = translate(whole_events(stream_fixture(name)))
    for _, event in parsed_events(body):
        STREAM_EVENT.validate_python(event)  # each event as the SDK's types define it
    message = final_message(body)
    assert blocks(message) == content
    assert message.stop_reason == stop_reason
    assert message.model == "claude-sonnet-4-5" and message.id == "msg_0"
    got = message.usage
    assert {
        "input_tokens": got.input_tokens,
        "output_tokens": got.output_tokens,
        "cache_read_input_tokens": got.cache_read_input_tokens,
    } == usage


def test_event_sequence_of_a_mixed_stream() -> None:
    body = translate(whole_events(stream_fixture("vllm_mixed_crlf.sse")))
    sequence = [
        (kind, event.get("index"), (event.get("content_block") or event.get("delta") or {}).get("type"))
        for kind, event in parsed_events(body)
    ]
    assert sequence == [
        ("message_start", None, None),
        ("content_block_start", 0, "text"),
        ("content_block_delta", 0, "text_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "tool_use"),
        ("content_block_delta", 1, "input_json_delta"),
        ("content_block_delta", 1, "input_json_delta"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, "text"),
        ("content_block_delta", 2, "text_delta"),
        ("content_block_stop", 2, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]


def test_text_streams_as_it_arrives() -> None:
    translator = AnthropicStreamTranslator("m", new_id=counting_ids())
    first = parsed_events(b"".join(translator.feed([chat_chunk({"role": "assistant", "content": "Hel"})])))
    assert [kind for kind, _ in first] == ["message_start", "content_block_start", "content_block_delta"]
    assert first[2][1]["delta"] == {"type": "text_delta", "text": "Hel"}
    second = parsed_events(b"".join(translator.feed([chat_chunk({"content": "lo"})])))
    assert second == [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
        )
    ]


def test_tool_arguments_stream_as_they_arrive() -> None:
    translator = AnthropicStreamTranslator("m", new_id=counting_ids())
    opening = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "Read", "arguments": '{"file'}}
    first = parsed_events(b"".join(translator.feed([chat_chunk({"tool_calls": [opening]})])))
    assert [kind for kind, _ in first] == ["message_start", "content_block_start", "content_block_delta"]
    assert first[1][1]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "Read", "input": {}}
    assert first[2][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"file'}


def test_message_start_and_usage_when_the_upstream_reports_none() -> None:
    body = translate([chat_chunk({"content": "x"}, "stop"), DONE], input_tokens=42)
    events = parsed_events(body)
    assert events[0][1]["message"]["usage"] == {"input_tokens": 42, "output_tokens": 0}
    assert events[-2][1]["usage"] == {"input_tokens": 42, "output_tokens": 0}


def test_stop_sequence_named_by_the_upstream() -> None:
    stopped = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "END"}]}
    events = [chat_chunk({"content": "one two"}), b"data: " + orjson.dumps(stopped) + b"\n\n", DONE]
    message = final_message(translate(events, stop_sequences=["END"]))
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")


def test_length_is_max_tokens_even_with_a_tool_call_cut_short() -> None:
    call = {"index": 0, "id": "c", "type": "function", "function": {"name": "Write", "arguments": '{"content": "abc'}}
    message = final_message(translate([chat_chunk({"tool_calls": [call]}), chat_chunk({}, "length"), DONE]))
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "tool_use"


def test_done_ends_the_message_and_finish_adds_nothing() -> None:
    translator = AnthropicStreamTranslator("m", new_id=counting_ids())
    out = translator.feed([chat_chunk({"content": "x"}, "stop"), DONE, chat_chunk({"content": "after the end"})])
    assert [kind for kind, _ in parsed_events(b"".join(out))][-2:] == ["message_delta", "message_stop"]
    assert b"after the end" not in b"".join(out)
    assert translator.finish() == [] and translator.feed([chat_chunk({"content": "y"})]) == []


def test_an_empty_upstream_stream_still_makes_a_well_formed_message() -> None:
    message = final_message(translate([]))
    assert message.content == [] and message.stop_reason == "end_turn"


def test_comments_and_keep_alives_are_skipped() -> None:
    events = [b": keep-alive\n\n", chat_chunk({"content": "x"}, "stop"), b": OPENROUTER PROCESSING\n\n", DONE]
    assert blocks(final_message(translate(events))) == [("text", None, "x")]


def test_an_error_the_upstream_puts_in_its_stream_ends_it_with_an_anthropic_error() -> None:
    translator = AnthropicStreamTranslator("m", new_id=counting_ids())
    out = translator.feed(whole_events(stream_fixture("openrouter_midstream_error.sse")))
    events = parsed_events(b"".join(out))
    assert [kind for kind, _ in events] == ["message_start", "content_block_start", "content_block_delta", "error"]
    assert events[-1][1] == {"type": "error", "error": {"type": "api_error", "message": "Provider returned error"}}
    assert translator.finish() == [] and translator.finished


def test_an_upstream_error_echoing_a_key_is_not_passed_on() -> None:
    leak = b'data: {"error":{"message":"Invalid key sk-live-123456","code":401}}\n\n'
    events = parsed_events(b"".join(AnthropicStreamTranslator("m").feed([leak])))
    assert events[-1] == (
        "error",
        {
            "type": "error",
            "error": {"type": "authentication_error", "message": "The upstream failed during the stream"},
        },
    )


def test_an_event_that_is_not_json_fails_the_stream() -> None:
    events = parsed_events(b"".join(AnthropicStreamTranslator("m").feed([b"data: {not json\n\n"])))
    assert events[-1][1]["error"] == {"type": "api_error", "message": "The upstream sent an event that is not JSON"}


def test_fail_ends_the_stream_with_an_error_event_the_sdk_raises() -> None:
    translator = AnthropicStreamTranslator("m", new_id=counting_ids())
    out = translator.feed([chat_chunk({"content": "partial"})]) + translator.fail(504, "Upstream timed out")
    assert translator.fail(502, "again") == [] and translator.finish() == []
    kinds = [kind for kind, _ in parsed_events(b"".join(out))]
    assert kinds == ["message_start", "content_block_start", "content_block_delta", "error"]
    with pytest.raises(anthropic.APIStatusError) as raised:
        final_message(b"".join(out))
    assert raised.value.body == {"type": "error", "error": {"type": "timeout_error", "message": "Upstream timed out"}}


def test_pings_between_events_are_ignored_by_the_sdk() -> None:
    translator = AnthropicStreamTranslator("m", new_id=counting_ids())
    out = translator.start() + [PING_EVENT] + translator.feed([chat_chunk({"content": "x"}, "stop"), DONE])
    assert parsed_events(PING_EVENT) == [("ping", {"type": "ping"})]
    assert blocks(final_message(b"".join(out))) == [("text", None, "x")]


def test_usage_is_the_upstreams_for_accounting() -> None:
    translator = AnthropicStreamTranslator("m")
    assert translator.usage is None
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    translator.feed([chat_chunk({"content": "x"}, "stop"), usage_chunk(usage), DONE])
    assert translator.usage == usage


# ------------------------------------------------------------------------------------ any cut of the bytes

STREAM_NAMES = [*RECORDED_NAMES, "openrouter_midstream_error.sse"]


def one_feed(raw: bytes) -> list[bytes]:
    translator = AnthropicStreamTranslator("m", stop_sequences=["END"], new_id=counting_ids())
    return translator.feed(whole_events(raw)) + translator.finish()


def cut_feed(raw: bytes, cuts: list[int]) -> list[bytes]:
    translator = AnthropicStreamTranslator("m", stop_sequences=["END"], new_id=counting_ids())
    splitter = EventSplitter()
    out: list[bytes] = []
    positions = sorted({min(cut, len(raw)) for cut in cuts})
    for start, end in zip([0, *positions], [*positions, len(raw)], strict=True):
        out.extend(translator.feed(splitter.feed(raw[start:end])))
    return out + translator.finish()


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(STREAM_NAMES), cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=40))
def test_any_cut_of_the_upstream_bytes_gives_the_same_anthropic_events(name: str, cuts: list[int]) -> None:
    raw = stream_fixture(name)
    expected = one_feed(raw)
    got = cut_feed(raw, cuts)
    assert parsed_events(b"".join(got)) == parsed_events(b"".join(expected))
    assert b"".join(got) == b"".join(expected)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(STREAM_NAMES), size=st.integers(min_value=1, max_value=7))
def test_byte_by_byte_and_small_pieces_give_the_same_events(name: str, size: int) -> None:
    raw = stream_fixture(name)
    assert cut_feed(raw, list(range(size, len(raw), size))) == one_feed(raw)


def test_a_failure_before_any_upstream_event_is_still_a_well_formed_stream() -> None:
    events = parsed_events(b"".join(AnthropicStreamTranslator("m").fail(502, "Upstream unreachable")))
    assert [kind for kind, _ in events] == ["message_start", "error"]


# ---------------------------------------------------------------------------------------------- completeness


def test_a_stream_is_complete_once_the_upstream_names_a_finish_reason() -> None:
    translator = AnthropicStreamTranslator("m", new_id=counting_ids())
    translator.feed([chat_chunk({"role": "assistant", "content": "Hi"})])
    assert not translator.is_complete  # cut here, it would be a truncated answer
    translator.feed([chat_chunk({}, "stop")])
    assert translator.is_complete and not translator.finished  # usage and [DONE] may still come


def test_a_whole_completion_as_one_chunk_gives_the_same_message_as_its_stream() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "Read", "arguments": '{"p": 1}'}}
    completion = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Reading.",
                    "tool_calls": [call],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2},
    }  # fmt: skip
    message = final_message(translate([completion_chunk(completion)]))
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[1].input == {"p": 1} and message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 2)


def test_a_passed_through_stream_is_unchanged_and_ends_at_message_stop() -> None:
    events = [
        b'event: message_start\ndata: {"type":"message_start","message":{}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"message_stop"}}\n\n',
    ]
    passage = AnthropicPassage()
    assert passage.feed(events) == events and not passage.is_complete
    assert passage.feed([b'event: message_stop\ndata: {"type":"message_stop"}\n\n'])
    assert passage.is_complete and passage.finished and passage.finish() == []


def test_a_passed_through_stream_that_fails_ends_with_one_anthropic_error_event() -> None:
    passage = AnthropicPassage()
    [failure] = passage.fail(502, "Provider 'claude' ended the stream early")
    assert parsed_events(failure) == [
        (
            "error",
            {"type": "error", "error": {"type": "api_error", "message": "Provider 'claude' ended the stream early"}},
        )
    ]
    assert passage.fail(502, "again") == []
    upstream_error = AnthropicPassage()
    upstream_error.feed([b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"x"}}\n\n'])
    assert upstream_error.finished and upstream_error.fail(502, "late") == []  # the upstream already said it
