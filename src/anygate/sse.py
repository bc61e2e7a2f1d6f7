"""Incremental Server-Sent Events framing: bytes in, whole events out, as the bytes they arrived as.

The relay forwards whole events so that a failure after the first event can be reported as one more
event without cutting another in half. Nothing is decoded or re-encoded on the way.
"""

from __future__ import annotations

DONE_EVENT = b"data: [DONE]\n\n"
_SEPARATORS = (b"\n\n", b"\r\n\r\n", b"\r\r")


class EventSplitter:
    """``feed(bytes) -> [event bytes]``, each ending with its blank line; ``flush()`` returns the rest."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._buffer + chunk if self._buffer else chunk
        events: list[bytes] = []
        start = 0
        separators = _SEPARATORS if b"\r" in data else _SEPARATORS[:1]
        while True:
            end = _event_end(data, start, separators)
            if end < 0:
                break
            events.append(data[start:end])
            start = end
        self._buffer = data[start:]
        return events

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest


def _event_end(data: bytes, start: int, separators: tuple[bytes, ...]) -> int:
    """Index just past the first event terminator at or after ``start``, or -1."""
    best = -1
    for separator in separators:
        found = data.find(separator, start)
        if found >= 0 and (best < 0 or found + len(separator) < best):
            best = found + len(separator)
    return best


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


def error_event(body: bytes) -> bytes:
    return b"data: " + body + b"\n\n"
