"""A chat completions stream as an Anthropic Messages stream.

    translator = AnthropicStreamTranslator(requested_model, stop_sequences=(), input_tokens=0, new_id=random_id)
    translator.start() -> [message_start]             (optional: feed sends it first if not yet sent)
    translator.feed(upstream_events) -> [events]      (whole upstream SSE events, ``data: [DONE]`` included)
    translator.finish() -> [events]                   (the upstream ended: close blocks, message_delta, message_stop)
    translator.fail(status, message) -> [error event] (the stream failed midway)
    translator.usage                                  (the upstream's chat usage, for accounting)

Events out are ``event: <type>\\ndata: <json>\\n\\n``: ``message_start``; per block ``content_block_start``,
``content_block_delta`` (``text_delta``, ``thinking_delta``, ``input_json_delta``), ``content_block_stop``;
then ``message_delta`` (``stop_reason``, ``usage``) and ``message_stop``. ``data: [DONE]`` ends the message
at once; an upstream that closes without it still gets a well-formed end from ``finish``. An error the
upstream puts in its stream ends it with an Anthropic ``error`` event. ``PING_EVENT`` is what the relay sends
while the upstream is silent.

``message_start`` reports ``input_tokens`` as given (an estimate, or 0): the upstream reports usage only at
the end, so ``message_delta`` carries the real ``input_tokens`` and ``output_tokens`` (the SDK takes both).

``AnthropicPassage`` has the same interface for a stream that is already in the Anthropic form (an upstream
that speaks the Messages API): its events pass unchanged; it only watches for the end (``message_stop``, or
the upstream's own ``error`` event) and makes the ``error`` event of a stream that fails midway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from anygate.wire.anthropic_errors import error_event
from anygate.wire.anthropic_response import anthropic_usage, stop_reason_of
from anygate.wire.chat_stream import DELTA, START, TEXT, THINKING, Block, ChatStreamTranslator, Op
from anygate.wire.ids import IdFactory, random_id

PING_EVENT = b'event: ping\ndata: {"type":"ping"}\n\n'
MESSAGE_STOP_EVENT = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
DELTA_TYPES = {TEXT: (b"text_delta", b"text"), THINKING: (b"thinking_delta", b"thinking")}
TOOL_DELTA = (b"input_json_delta", b"partial_json")


def sse_event(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class AnthropicStreamTranslator(ChatStreamTranslator):
    """One Anthropic message stream made from one chat completions stream."""

    def __init__(
        self,
        requested_model: str,
        *,
        stop_sequences: Sequence[str] = (),
        input_tokens: int = 0,
        new_id: IdFactory = random_id,
    ) -> None:
        super().__init__()
        self._model = requested_model
        self._stops = tuple(stop_sequences)
        self._input_tokens = input_tokens
        self._new_id = new_id
        self._has_tool_use = False
        self._delta_heads: dict[int, bytes] = {}  # block index -> the bytes before a delta's JSON string

    def _opening(self) -> list[bytes]:
        message: dict[str, Any] = {
            "id": self._new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return [sse_event("message_start", {"type": "message_start", "message": message})]

    def _render(self, ops: list[Op], out: list[bytes]) -> None:
        for action, block, text in ops:
            if action == DELTA:
                # The hot path: a delta is a fixed head per block, the text as a JSON string, and a tail.
                out.append(self._delta_heads[block.index] + orjson.dumps(text) + b"}}\n\n")
            elif action == START:
                out.append(self._block_start(block))
            else:
                del self._delta_heads[block.index]
                out.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": block.index}))

    def _block_start(self, block: Block) -> bytes:
        index, kind = block.index, block.kind
        content: dict[str, Any]
        if kind == TEXT:
            content = {"type": "text", "text": ""}
        elif kind == THINKING:
            content = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            self._has_tool_use = True
            call_id = block.call_id or self._new_id("toolu")
            block.call_id = call_id
            content = {"type": "tool_use", "id": call_id, "name": block.name or "", "input": {}}
        delta_type, field = DELTA_TYPES.get(kind, TOOL_DELTA)
        self._delta_heads[index] = (
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,"delta":{"type":"%s","%s":'
            % (index, delta_type, field)
        )
        start = {"type": "content_block_start", "index": index, "content_block": content}
        return sse_event("content_block_start", start)

    def _closing(self) -> list[bytes]:
        reader = self._reader
        stop_reason, stop_sequence = stop_reason_of(
            reader.finish_reason, has_tool_use=self._has_tool_use, matched=reader.matched_stop, stops=self._stops
        )
        usage = anthropic_usage(reader.usage)
        if reader.usage is None:
            usage["input_tokens"] = self._input_tokens
        delta = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
        message_delta = {"type": "message_delta", "delta": delta, "usage": usage}
        return [sse_event("message_delta", message_delta), MESSAGE_STOP_EVENT]

    def _failure(self, status: int, message: str) -> list[bytes]:
        return [error_event(status, message)]


ENDING_EVENTS = frozenset({b"message_stop", b"error"})


def event_name(event: bytes) -> bytes:
    """The type an ``event:`` first line names (``b""`` when the event starts otherwise)."""
    if not event.startswith(b"event:"):
        return b""
    end = event.find(b"\n")
    return event[6 : end if end >= 0 else len(event)].strip()


class AnthropicPassage:
    """An Anthropic stream passed through as it is, with the translators' interface (``feed`` gives the
    events back unchanged)."""

    __slots__ = ("_ended", "_finished")

    def __init__(self) -> None:
        self._ended = False  # message_stop (or the upstream's own error event) went by
        self._finished = False

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def is_complete(self) -> bool:
        return self._ended

    def start(self) -> list[bytes]:
        return []

    def feed(self, events: list[bytes]) -> list[bytes]:
        for event in events:
            if event.startswith(b"event:") and event_name(event) in ENDING_EVENTS:
                self._ended = self._finished = True
        return events

    def finish(self) -> list[bytes]:
        self._finished = True
        return []

    def fail(self, status: int, message: str) -> list[bytes]:
        if self._finished:
            return []
        self._finished = True
        return [error_event(status, message)]
