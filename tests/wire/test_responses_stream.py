"""Chat completions streams as Responses API streams: recorded upstream streams, read by the openai SDK, and the
same events however the upstream's bytes are cut."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import ResponseStreamEvent

from anygate.wire.responses_stream import ResponsesStreamTranslator
from anygate.wire.sse import EventSplitter
from tests.wire.support import (
    DONE,
    chat_chunk,
    counting_ids,
    fixture_json,
    openai_client,
    parsed_events,
    stream_fixture,
    usage_chunk,
    whole_events,
)

STREAM_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
REQUEST: dict[str, Any] = fixture_json("codex_request.json")


def translator() -> ResponsesStreamTranslator:
    return ResponsesStreamTranslator(REQUEST, new_id=counting_ids(), now=lambda: 1767225600)


def translate(events: list[bytes]) -> bytes:
    stream = translator()
    return b"".join(stream.feed(events) + stream.finish())


def final_response(body: bytes) -> Any:
    """The response the openai SDK assembles from the stream (it checks the events against its state)."""
    with openai_client(body) as client:
        with client.responses.stream(model="gpt-5-codex", input="Hi") as stream:
            for _ in stream:
                pass
            return stream.get_final_response()


def items(response: Any) -> list[tuple[str, Any]]:
    summary: list[tuple[str, Any]] = []
    for item in response.output:
        if item.type == "message":
            summary.append(("message", "".join(part.text for part in item.content)))
        elif item.type == "reasoning":
            summary.append(("reasoning", "".join(part.text for part in item.content or ())))
        elif item.type == "function_call":
            summary.append(("function_call", (item.call_id, item.name, item.arguments)))
        else:
            summary.append((item.type, (item.call_id, item.name, item.input)))
    return summary


RECORDED: list[tuple[str, list[tuple[str, Any]], str, dict[str, int] | None]] = [
    (
        "openai_text.sse",
        [("message", 'The build passes: 214 tests, "0 failed" ✓ — ünïcode too.')],
        "completed",
        {"input_tokens": 1850, "output_tokens": 17, "total_tokens": 1867, "cached": 1536},
    ),
    (
        "openai_tool_calls.sse",
        [
            ("function_call", ("call_Ks2fPq0dYv8LmN3rTa6wXc1B", "Read", '{"file_path": "/srv/app/src/main.py"}')),
            (
                "function_call",
                (
                    "call_Qe7vHn4mZb2JtR9yUo5sLd3K",
                    "Bash",
                    '{"command": "pytest -q tests/", "description": "Run the tests"}',
                ),
            ),
        ],
        "completed",
        {"input_tokens": 5210, "output_tokens": 58, "total_tokens": 5268, "cached": 0},
    ),
    (
        "vllm_mixed_crlf.sse",
        [
            ("message", "I will look at the failing test first."),
            ("function_call", ("chatcmpl-tool-9a8b7c6d", "Grep", '{"pattern": "def test_login", "path": "tests"}')),
            ("message", "Searching now."),
        ],
        "completed",
        {"input_tokens": 3120, "output_tokens": 41, "total_tokens": 3161, "cached": 0},
    ),
    (
        "deepseek_reasoning.sse",
        [
            ("reasoning", "The user asks for 17 × 23. 17 × 20 = 340, 17 × 3 = 51, so 391."),
            ("message", "17 × 23 = **391**."),
        ],
        "completed",
        {"input_tokens": 24, "output_tokens": 96, "total_tokens": 120, "cached": 0},
    ),
    (
        "interleaved_tool_calls.sse",
        [
            ("function_call", ("call_a", "Read", '{"file_path": "a.py"}')),
            ("function_call", ("call_b", "Read", '{"file_path": "b.py"}')),
        ],
        "completed",
        {"input_tokens": 700, "output_tokens": 30, "total_tokens": 730, "cached": 0},
    ),
    ("llamacpp_no_done.sse", [("message", "Partial answer without an end")], "completed", None),
]
RECORDED_NAMES = [case[0] for case in RECORDED]


@pytest.mark.parametrize(("name", "output", "status", "usage"), RECORDED, ids=RECORDED_NAMES)
def test_recorded_stream_reads_as_the_response(
    name: str, output: list[tuple[str, Any]], status: str, usage: dict[str, int] | None
) -> None:
    body = translate(whole_events(stream_fixture(name)))
    events = parsed_events(body)
    for _, event in events:
        STREAM_EVENT.validate_python(event)  # each event as the SDK's types define it
    assert [event["sequence_number"] for _, event in events] == list(range(len(events)))
    response = final_response(body)
    assert items(response) == output
    assert response.status == status and response.model == "gpt-5-codex" and response.id == "resp_0"
    if usage is None:
        assert response.usage is None
    else:
        got = response.usage
        cached = got.input_tokens_details.cached_tokens
        assert {
            "input_tokens": got.input_tokens,
            "output_tokens": got.output_tokens,
            "total_tokens": got.total_tokens,
            "cached": cached,
        } == usage


def test_event_sequence_of_text_then_a_function_call() -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "shell", "arguments": '{"cmd":'}}
    more = {"index": 0, "function": {"arguments": '"ls"}'}}
    events = [
        chat_chunk({"content": "Hi"}),
        chat_chunk({"tool_calls": [call]}),
        chat_chunk({"tool_calls": [more]}),
        chat_chunk({}, "tool_calls"),
        DONE,
    ]
    assert [kind for kind, _ in parsed_events(translate(events))] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]


def test_a_freeform_tool_call_comes_out_whole_as_a_custom_tool_call() -> None:
    start = {
        "index": 0,
        "id": "call_p",
        "type": "function",
        "function": {"name": "apply_patch", "arguments": '{"input":"*** Begin'},
    }
    rest = {"index": 0, "function": {"arguments": ' Patch\\n*** End Patch\\n"}'}}
    body = translate(
        [chat_chunk({"tool_calls": [start]}), chat_chunk({"tool_calls": [rest]}), chat_chunk({}, "tool_calls"), DONE]
    )
    events = parsed_events(body)
    assert [kind for kind, _ in events][2:6] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
    ]
    assert events[3][1]["delta"] == "*** Begin Patch\n*** End Patch\n"
    assert items(final_response(body)) == [
        ("custom_tool_call", ("call_p", "apply_patch", "*** Begin Patch\n*** End Patch\n"))
    ]


def test_text_streams_as_it_arrives() -> None:
    stream = translator()
    out = parsed_events(b"".join(stream.feed([chat_chunk({"content": "Hel"})])))
    assert out[-1][0] == "response.output_text.delta" and out[-1][1]["delta"] == "Hel"
    again = parsed_events(b"".join(stream.feed([chat_chunk({"content": "lo"})])))
    assert again == [
        (
            "response.output_text.delta",
            {
                "type": "response.output_text.delta",
                "sequence_number": 5,
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "logprobs": [],
                "delta": "lo",
            },
        )
    ]


def test_length_makes_the_response_incomplete() -> None:
    body = translate(
        [chat_chunk({"content": "Hel"}, "length"), usage_chunk({"prompt_tokens": 3, "completion_tokens": 1}), DONE]
    )
    kind, event = parsed_events(body)[-1]
    assert kind == "response.incomplete"
    assert event["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert event["response"]["completed_at"] is None


def test_a_failure_midway_ends_with_response_failed() -> None:
    stream = translator()
    out = stream.feed([chat_chunk({"content": "partial"})]) + stream.fail(429, "Rate limited upstream")
    kind, event = parsed_events(b"".join(out))[-1]
    assert kind == "response.failed"
    assert event["response"]["status"] == "failed"
    assert event["response"]["error"] == {"code": "rate_limit_exceeded", "message": "Rate limited upstream"}
    STREAM_EVENT.validate_python(event)
    assert stream.finish() == [] and stream.feed([chat_chunk({"content": "more"})]) == []


def test_an_error_the_upstream_puts_in_its_stream_fails_the_response() -> None:
    stream = translator()
    kinds = [
        kind
        for kind, _ in parsed_events(
            b"".join(stream.feed(whole_events(stream_fixture("openrouter_midstream_error.sse"))))
        )
    ]
    assert kinds[-1] == "response.failed" and stream.finished


def test_usage_is_the_upstreams_for_accounting() -> None:
    stream = translator()
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    stream.feed([chat_chunk({"content": "x"}, "stop"), usage_chunk(usage), DONE])
    assert stream.usage == usage


# ------------------------------------------------------------------------------------ any cut of the bytes

STREAM_NAMES = [
    *RECORDED_NAMES,
    "openrouter_reasoning_tools.sse",
    "gemini_same_index.sse",
    "openrouter_midstream_error.sse",
]


def one_feed(raw: bytes) -> list[bytes]:
    stream = translator()
    return stream.feed(whole_events(raw)) + stream.finish()


def cut_feed(raw: bytes, cuts: list[int]) -> list[bytes]:
    stream = translator()
    splitter = EventSplitter()
    out: list[bytes] = []
    positions = sorted({min(cut, len(raw)) for cut in cuts})
    for start, end in zip([0, *positions], [*positions, len(raw)], strict=True):
        out.extend(stream.feed(splitter.feed(raw[start:end])))
    return out + stream.finish()


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(STREAM_NAMES), cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=40))
def test_any_cut_of_the_upstream_bytes_gives_the_same_responses_events(name: str, cuts: list[int]) -> None:
    raw = stream_fixture(name)
    expected = one_feed(raw)
    got = cut_feed(raw, cuts)
    assert parsed_events(b"".join(got)) == parsed_events(b"".join(expected))
    assert b"".join(got) == b"".join(expected)


def test_a_failure_before_any_upstream_event_is_still_a_well_formed_stream() -> None:
    events = parsed_events(b"".join(translator().fail(502, "Upstream unreachable")))
    assert [kind for kind, _ in events] == ["response.created", "response.in_progress", "response.failed"]
    assert [event["sequence_number"] for _, event in events] == [0, 1, 2]
