"""Incremental SSE framing: whole events out, as the bytes they arrived as, however the bytes are cut."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anygate.errors import UpstreamEventTooLarge
from anygate.wire.sse import DONE_EVENT, EventSplitter, error_event, event_data, is_done


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
        ([b"data: a\r\rdata: b\r\rx"], [b"data: a\r\r", b"data: b\r\r"], b"x"),
        # A last \r may be the first half of \r\n: the event waits for the next byte (or the flush).
        ([b"data: a\r\rdata: b\r\r"], [b"data: a\r\r"], b"data: b\r\r"),
        ([b"data: a\r\n\r", b"\ndata: b\n\r"], [b"data: a\r\n\r\n"], b"data: b\n\r"),
        ([b"data: a\n\r\ndata: b\r\n\n"], [b"data: a\n\r\n", b"data: b\r\n\n"], b""),
        ([b"data: a\r\ndata: b\r\n", b"\r\n"], [b"data: a\r\ndata: b\r\n\r\n"], b""),
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
NEWLINE = st.sampled_from(["\n", "\r\n", "\r"])


def cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    positions = sorted({min(c, len(stream)) for c in cuts})
    return [stream[a:b] for a, b in zip([0, *positions], [*positions, len(stream)], strict=True)]


def reference_events(stream: bytes) -> tuple[list[bytes], bytes]:
    """The SSE framing, read slowly from the whole stream: every line ending found one by one."""
    events: list[bytes] = []
    start = position = 0
    blank = True  # at the start of an event, a first line ending is not a terminator yet
    previous_ending = False
    while position < len(stream):
        byte = stream[position : position + 1]
        if byte in (b"\r", b"\n"):
            width = 2 if stream[position : position + 2] == b"\r\n" else 1
            if byte == b"\r" and position + 1 == len(stream):
                break  # maybe the first half of \r\n: undecided until the next byte
            position += width
            if previous_ending and not blank:
                events.append(stream[start:position])
                start, blank, previous_ending = position, True, False
                continue
            previous_ending, blank = True, False
        else:
            previous_ending, blank = False, False
            position += 1
    return events, stream[start:]


@given(
    bodies=st.lists(EVENT_BODY, max_size=6),
    newline=NEWLINE,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_any_cut_of_the_stream_gives_the_same_events(bodies: list[list[str]], newline: str, cuts: list[int]) -> None:
    events = [(newline.join(lines) + newline + newline).encode() for lines in bodies]
    stream = b"".join(events)
    whole = feed_all([stream])
    assert feed_all(cut(stream, cuts)) == whole
    if newline == "\r" and events:  # the last \r may yet be followed by \n: that event waits for the flush
        assert whole == (events[:-1], events[-1])
    else:
        assert whole == (events, b"")


@given(
    stream=st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"data: x", b":"]), max_size=40).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
def test_any_bytes_cut_anywhere_give_the_events_of_one_feed_and_lose_nothing(stream: bytes, cuts: list[int]) -> None:
    events, rest = feed_all(cut(stream, cuts))
    assert (events, rest) == feed_all([stream]) == reference_events(stream)
    assert b"".join(events) + rest == stream


@given(
    stream=st.lists(st.sampled_from([b"\n", b"a", b"data: x", b":"]), max_size=40).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
def test_chunks_of_whole_events_split_in_one_call_give_the_same_events(stream: bytes, cuts: list[int]) -> None:
    # Without a \r, a chunk that ends where an event does is split at once (runs of \n of any length:
    # the same events, left to right, as the search finds).
    assert feed_all([stream]) == reference_events(stream) == feed_all(cut(stream, cuts))


class CountingSplitter(EventSplitter):
    """Counts the bytes every search for a terminator may look at."""

    looked_at = 0

    def _event_end(self, data: bytes | bytearray, search: int) -> int:
        self.looked_at += len(data) - search
        return super()._event_end(data, search)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_a_long_unfinished_event_is_scanned_once_not_once_per_chunk(newline: bytes) -> None:
    """Fed a byte at a time, an event of n bytes costs n short searches; rescanning it from its start on
    every chunk would look at n * n / 2 bytes."""
    splitter = CountingSplitter()
    event = b"data: " + b"x" * 20_000 + newline * 2
    events = [e for i in range(len(event)) for e in splitter.feed(event[i : i + 1])]
    assert events == [event]
    assert len(event) <= splitter.looked_at < 5 * len(event)  # every byte looked at, a bounded number of times


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_an_event_over_the_limit_raises_with_the_events_before_it_however_it_is_cut(newline: bytes) -> None:
    small = b"data: ok" + newline * 2
    big = b"data: " + b"y" * 200 + newline * 2
    stream = small + big + small
    for size in (1, 7, 64, len(stream)):
        splitter = EventSplitter(max_event_bytes=100)
        seen: list[bytes] = []
        with pytest.raises(UpstreamEventTooLarge) as raised:
            for start in range(0, len(stream), size):
                seen += splitter.feed(stream[start : start + size])
        assert seen + raised.value.events == [small]
        assert raised.value.status == 502 and raised.value.code == "upstream_event_too_large"
        assert splitter.flush() == b""  # nothing of the huge event is kept


def test_an_unfinished_event_over_the_limit_raises_before_it_ends() -> None:
    splitter = EventSplitter(max_event_bytes=1000)
    splitter.feed(b"data: " + b"z" * 900)
    with pytest.raises(UpstreamEventTooLarge):
        splitter.feed(b"z" * 200)
    with pytest.raises(UpstreamEventTooLarge) as raised:  # after whole events in the same chunk
        EventSplitter(max_event_bytes=1000).feed(b"data: a\n\ndata: " + b"z" * 2000)
    assert raised.value.events == [b"data: a\n\n"]


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
