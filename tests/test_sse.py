"""Incremental SSE framing: whole events out, as the bytes they arrived as, however the bytes are cut."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anygate.sse import DONE_EVENT, EventSplitter, error_event, event_data, is_done


def feed_all(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    splitter = EventSplitter()
    events = [event for chunk in chunks for event in splitter.feed(chunk)]
    return events, splitter.flush()


@pytest.mark.parametrize(
    ("chunks", "events", "rest"),
    [
        ([b"data: a\n\n"], [b"data: a\n\n"], b""),
        ([b"data: a\n\ndata: b\n\n"], [b"data: a\n\n", b"data: b\n\n"], b""),
        ([b"data: a", b"\n", b"\n"], [b"data: a\n\n"], b""),
        ([b"data: a\n", b"\ndata: b\n\n"], [b"data: a\n\n", b"data: b\n\n"], b""),
        ([b"da", b'ta: {"x"', b":1}\n\nda"], [b'data: {"x":1}\n\n'], b"da"),
        ([b"event: e\ndata: 1\n\n"], [b"event: e\ndata: 1\n\n"], b""),
        ([b"data: a\r\n\r\n"], [b"data: a\r\n\r\n"], b""),
        ([b"data: a\r\n", b"\r\n"], [b"data: a\r\n\r\n"], b""),
        ([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"], [b"data: a\r\n\r\n", b"data: b\r\n\r\n"], b""),
        ([b"data: a\r\rdata: b\r\r"], [b"data: a\r\r", b"data: b\r\r"], b""),
        ([b": keep-alive\n\ndata: x\n\n"], [b": keep-alive\n\n", b"data: x\n\n"], b""),
        ([b"data: unfinished\n"], [], b"data: unfinished\n"),
        ([b""], [], b""),
    ],
)
def test_events_split_across_chunks(chunks: list[bytes], events: list[bytes], rest: bytes) -> None:
    assert feed_all(chunks) == (events, rest)


def test_flush_empties_the_buffer() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: par") == []
    assert splitter.flush() == b"data: par"
    assert splitter.flush() == b""
    assert splitter.feed(b"data: new\n\n") == [b"data: new\n\n"]


LINE = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30)
EVENT_BODY = st.lists(LINE.map(lambda s: "data: " + s), min_size=1, max_size=3)


@given(
    bodies=st.lists(EVENT_BODY, max_size=6),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_any_cut_of_the_stream_gives_the_same_events(bodies: list[list[str]], newline: str, cuts: list[int]) -> None:
    events = [(newline.join(lines) + newline + newline).encode() for lines in bodies]
    stream = b"".join(events)
    positions = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *positions], [*positions, len(stream)], strict=True)]
    assert feed_all(chunks) == (events, b"")


def test_one_byte_at_a_time() -> None:
    stream = b'data: {"a":1}\r\n\r\ndata: [DONE]\r\n\r\n'
    events, rest = feed_all([stream[i : i + 1] for i in range(len(stream))])
    assert events == [b'data: {"a":1}\r\n\r\n', b"data: [DONE]\r\n\r\n"]
    assert rest == b""


@pytest.mark.parametrize(
    ("event", "data"),
    [
        (b"data: hello\n\n", b"hello"),
        (b"data:hello\n\n", b"hello"),
        (b"data:  two spaces\n\n", b" two spaces"),
        (b"data: a\ndata: b\n\n", b"a\nb"),
        (b"event: response.created\ndata: {}\n\n", b"{}"),
        (b"data: a\r\ndata: b\r\n\r\n", b"a\nb"),
        (b": comment\n\n", b""),
        (b"id: 7\nretry: 10\n\n", b""),
    ],
)
def test_event_data(event: bytes, data: bytes) -> None:
    assert event_data(event) == data


@pytest.mark.parametrize(
    ("event", "done"),
    [
        (DONE_EVENT, True),
        (b"data:[DONE]\n\n", True),
        (b"data: [DONE]\r\n\r\n", True),
        (b'data: {"choices":[]}\n\n', False),
        (b"data: [DONE] extra\n\n", False),
        (b": [DONE]\n\n", False),
    ],
)
def test_is_done(event: bytes, done: bool) -> None:
    assert is_done(event) is done


def test_error_event_is_one_whole_event() -> None:
    body = b'{"error":{"message":"boom","type":"upstream_error","param":null,"code":"x"}}'
    event = error_event(body)
    assert feed_all([event]) == ([event], b"")
    assert event_data(event) == body
    assert not is_done(event)
