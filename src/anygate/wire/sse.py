"""Incremental Server-Sent Events framing: bytes in, whole events out, as the bytes they arrived as.

The relay forwards whole events so that a failure after the first event can be reported as one more
event without cutting another in half. Nothing is decoded or re-encoded on the way.

An event ends with a blank line: two line endings in a row, each ``\\r\\n``, ``\\n`` or ``\\r``. The
splitter is linear in its input: each byte is scanned a bounded number of times, however the stream is
cut into chunks (the scan resumes where it stopped, a few bytes back for a terminator split across
chunks). An event ending in ``\\r`` at the very end of what has arrived waits for the next byte, which
may be the ``\\n`` of a ``\\r\\n``: so any cut of a stream gives the same events. An event larger than
``max_event_bytes`` (or an unfinished one that has grown past it) raises ``UpstreamEventTooLarge``:
the buffer never grows without bound.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from anygate.errors import UpstreamEventTooLarge

DONE_EVENT = b"data: [DONE]\n\n"
DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024

# Two line endings in a row. A ``\r`` followed by ``\n`` is one ``\r\n`` ending, never two endings.
_LINE_END = rb"(?:\r\n|\n|\r(?!\n))"
_BLANK_LINE = re.compile(_LINE_END + _LINE_END)
_LONGEST_TERMINATOR = 4  # \r\n\r\n
CR, LF = 0x0D, 0x0A


class EventSplitter:
    """``feed(bytes) -> [event bytes]``, each ending with its blank line; ``flush()`` returns the rest."""

    __slots__ = ("_buffer", "_max_event_bytes", "_resume", "_saw_cr")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._buffer = bytearray()  # the unfinished event (empty between events)
        self._resume = 0  # where the next search for a terminator starts in the buffer
        self._saw_cr = False  # until a \r arrives, the only terminator is \n\n (found by one C call)
        self._max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        if not self._buffer and not self._saw_cr and b"\r" not in chunk:
            # The common case: whole events ending in \n\n, each found by one split (the same events as
            # the search below finds, left to right), when the chunk ends where its last event does.
            parts = chunk.split(b"\n\n")
            if not parts[-1] and max(map(len, parts)) + 2 <= self._max_event_bytes:
                return [part + b"\n\n" for part in parts[:-1]]
        if self._buffer:
            self._buffer += chunk
            data: bytes | bytearray = self._buffer
            search = self._resume
        else:
            data, search = chunk, 0  # the common case: a chunk of whole events, scanned without a copy
        if not self._saw_cr and b"\r" in chunk:
            self._saw_cr = True
        events: list[bytes] = []
        start = 0
        while (end := self._event_end(data, search)) >= 0:
            if end - start > self._max_event_bytes:
                self._reset()
                raise UpstreamEventTooLarge(self._max_event_bytes, events)
            events.append(bytes(data[start:end]))  # a slice of a bytes chunk: no second copy
            start = search = end
        if len(data) - start > self._max_event_bytes:  # an unfinished event already too large
            self._reset()
            raise UpstreamEventTooLarge(self._max_event_bytes, events)
        self._keep(data, start)
        return events

    def _keep(self, data: bytes | bytearray, start: int) -> None:
        """Keep ``data[start:]``, the unfinished event, and where to search it again once more arrives: a
        terminator that more bytes complete starts at most three bytes before its end."""
        rest = len(data) - start
        if data is self._buffer:
            del self._buffer[:start]  # O(1) for a bytearray's head
        elif rest:
            self._buffer += data[start:]
        resume = max(0, rest - _LONGEST_TERMINATOR + 1)
        if resume and self._buffer[resume - 1] == CR and self._buffer[resume] == LF:
            resume -= 1  # never resume between the two bytes of one \r\n
        self._resume = resume

    def _event_end(self, data: bytes | bytearray, search: int) -> int:
        """Index just past the first terminator at or after ``search``, or -1 (none yet, or one whose last
        ``\\r`` ends ``data``: the next byte may be its ``\\n``)."""
        if not self._saw_cr:
            found = data.find(b"\n\n", search)
            return -1 if found < 0 else found + 2
        match = _BLANK_LINE.search(data, search)
        if match is None:
            return -1
        end = match.end()
        return -1 if end == len(data) and data[end - 1] == CR else end

    def flush(self) -> bytes:
        rest = bytes(self._buffer)
        self._reset()
        return rest

    def _reset(self) -> None:
        self._buffer = bytearray()
        self._resume = 0


async def event_batches(chunks: AsyncIterator[bytes], splitter: EventSplitter) -> AsyncIterator[list[bytes]]:
    """The whole events of a stream of chunks: one list for each chunk that completes any.

    An event over the splitter's limit raises ``UpstreamEventTooLarge``, after the events before it."""
    async for chunk in chunks:
        try:
            events = splitter.feed(chunk)
        except UpstreamEventTooLarge as too_large:
            if too_large.events:
                yield too_large.events
                too_large.events = []
            raise
        if events:
            yield events


def event_data(event: bytes) -> bytes:
    """The joined ``data:`` lines of one event (SSE: one optional space after the colon)."""
    parts: list[bytes] = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(parts)


def is_done(event: bytes) -> bool:
    return event_data(event).strip() == b"[DONE]"


def has_done(events: list[bytes]) -> bool:
    """Whether any of ``events`` is ``[DONE]`` (a loop, not a generator: it runs for every batch of a stream)."""
    for event in events:  # noqa: SIM110
        if b"[DONE]" in event and is_done(event):
            return True
    return False


def error_event(body: bytes) -> bytes:
    return b"data: " + body + b"\n\n"
