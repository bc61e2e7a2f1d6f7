"""A chat completions stream as a Responses API stream.

    translator = ResponsesStreamTranslator(request, new_id=random_id, now=time.time)
    translator.start() -> [response.created, response.in_progress]   (optional: feed sends them first)
    translator.feed(upstream_events) -> [events]      (whole upstream SSE events, ``data: [DONE]`` included)
    translator.finish() -> [events]                   (the upstream ended: close items, response.completed)
    translator.fail(status, message) -> [response.failed]
    translator.usage                                  (the upstream's chat usage, for accounting)

``request`` is the client's Responses request. Events out are ``event: <type>\\ndata: <json>\\n\\n``, each with
a ``sequence_number`` counting from 0:

- text: ``response.output_item.added`` (a ``message``), ``response.content_part.added``,
  ``response.output_text.delta``..., ``response.output_text.done``, ``response.content_part.done``,
  ``response.output_item.done``;
- reasoning: the same with a ``reasoning`` item and ``response.reasoning_text.delta``/``.done``;
- a tool call: ``response.output_item.added`` (a ``function_call``), ``response.function_call_arguments.delta``...,
  ``response.function_call_arguments.done``, ``response.output_item.done``; a call of a freeform (``custom``)
  tool is sent whole when complete, as a ``custom_tool_call`` with ``response.custom_tool_call_input.delta``
  and ``.done`` (its input must be unwrapped from the complete arguments);
- the end: ``response.completed`` (or ``response.incomplete`` when the upstream hit the token limit) with the
  whole response and its usage; a failure midway: ``response.failed`` with the error.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from anygate.wire.chat_stream import DELTA, START, TEXT, THINKING, TOOL, Block, ChatStreamTranslator, Op
from anygate.wire.ids import IdFactory, random_id
from anygate.wire.responses_request import custom_tool_names
from anygate.wire.responses_response import (
    Clock,
    call_item,
    custom_tool_input,
    message_item,
    output_text_part,
    reasoning_item,
    response_object,
    response_status,
    responses_usage,
)

DELTA_EVENTS = {
    TEXT: b"response.output_text.delta",
    THINKING: b"response.reasoning_text.delta",
}
CALL_DELTA_EVENT = b"response.function_call_arguments.delta"


class ResponsesStreamTranslator(ChatStreamTranslator):
    """One Responses API stream made from one chat completions stream."""

    def __init__(self, request: dict[str, Any], *, new_id: IdFactory = random_id, now: Clock = time.time) -> None:
        super().__init__()
        self._request = request
        self._new_id = new_id
        self._custom_tools = custom_tool_names(request)
        self._response_id = new_id("resp")
        self._now = now
        self._created_at = int(now())
        self._sequence = 0
        self._output: list[dict[str, Any]] = []  # finished items, in output order
        self._items: dict[int, dict[str, Any]] = {}  # block index -> its item while the block is open
        self._delta_heads: dict[int, tuple[bytes, bytes]] = {}  # block index -> the bytes around a delta's number

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **payload}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _response(self, status: str, **fields: Any) -> dict[str, Any]:
        return response_object(self._request, self._response_id, self._created_at, status=status, **fields)

    def _opening(self) -> list[bytes]:
        response = self._response("in_progress", output=[])
        return [
            self._event("response.created", {"response": response}),
            self._event("response.in_progress", {"response": response}),
        ]

    def _render(self, ops: list[Op], out: list[bytes]) -> None:
        for action, block, text in ops:
            if action == DELTA:
                heads = self._delta_heads.get(block.index)
                if heads is not None:  # a freeform tool call has none: it goes out whole when it stops
                    # The hot path: fixed bytes per block around the sequence number and the text.
                    out.append(heads[0] + b"%d" % self._sequence + heads[1] + orjson.dumps(text) + b"}\n\n")
                    self._sequence += 1
            elif action == START:
                self._start(block, out)
            else:
                self._stop(block, out)

    # ------------------------------------------------------------------ blocks as output items

    def _start(self, block: Block, out: list[bytes]) -> None:
        index = block.index
        if block.kind == TEXT:
            item = message_item(self._new_id("msg"), "in_progress", [])
            part = output_text_part("")
        elif block.kind == THINKING:
            item = reasoning_item(self._new_id("rs"), None, "in_progress")
            part = {"type": "reasoning_text", "text": ""}
        else:
            block.call_id = block.call_id or self._new_id("call")
            custom = (block.name or "") in self._custom_tools
            self._items[index] = call_item(self._new_id, block.call_id, block.name or "", "", custom_tool=custom)
            if not custom:
                out.append(self._item_added(index, {**self._items[index], "status": "in_progress"}))
                self._delta_heads[index] = self._delta_head(CALL_DELTA_EVENT, index, self._items[index]["id"], False)
            return
        self._items[index] = item
        out.append(self._item_added(index, item))
        part_address = {"item_id": item["id"], "output_index": index, "content_index": 0}
        out.append(self._event("response.content_part.added", {**part_address, "part": part}))
        self._delta_heads[index] = self._delta_head(DELTA_EVENTS[block.kind], index, item["id"], True)

    def _item_added(self, index: int, item: dict[str, Any]) -> bytes:
        return self._event("response.output_item.added", {"output_index": index, "item": item})

    def _delta_head(self, kind: bytes, index: int, item_id: str, has_content: bool) -> tuple[bytes, bytes]:
        before = b"event: " + kind + b'\ndata: {"type":"' + kind + b'","sequence_number":'
        after = b',"item_id":' + orjson.dumps(item_id) + b',"output_index":%d' % index
        if has_content:
            after += b',"content_index":0'
        if kind == DELTA_EVENTS[TEXT]:
            after += b',"logprobs":[]'
        return before, after + b',"delta":'

    def _stop(self, block: Block, out: list[bytes]) -> None:
        index = block.index
        item = self._items.pop(index)
        self._delta_heads.pop(index, None)
        text = block.text()
        address = {"item_id": item["id"], "output_index": index}
        if block.kind != TOOL:
            item = self._content_done(block.kind, item, address, text, out)
        elif item["type"] == "custom_tool_call":
            item = {**item, "input": custom_tool_input(text)}
            out.append(self._item_added(index, {**item, "input": ""}))
            out.append(self._event("response.custom_tool_call_input.delta", {**address, "delta": item["input"]}))
            out.append(self._event("response.custom_tool_call_input.done", {**address, "input": item["input"]}))
        else:
            item = {**item, "arguments": text}
            done = {**address, "name": item["name"], "arguments": text}
            out.append(self._event("response.function_call_arguments.done", done))
        self._output.append(item)
        out.append(self._event("response.output_item.done", {"output_index": index, "item": item}))

    def _content_done(
        self, kind: str, item: dict[str, Any], address: dict[str, Any], text: str, out: list[bytes]
    ) -> dict[str, Any]:
        """The ``.done`` events of a message's text or a reasoning item's text; the finished item."""
        part_address = {**address, "content_index": 0}
        if kind == TEXT:
            part = output_text_part(text)
            out.append(self._event("response.output_text.done", {**part_address, "text": text, "logprobs": []}))
        else:
            part = {"type": "reasoning_text", "text": text}
            out.append(self._event("response.reasoning_text.done", {**part_address, "text": text}))
        out.append(self._event("response.content_part.done", {**part_address, "part": part}))
        return {**item, "status": "completed", "content": [part]}

    # ------------------------------------------------------------------ the end

    def _closing(self) -> list[bytes]:
        status, incomplete = response_status(self._reader.finish_reason)
        usage = responses_usage(self._reader.usage)
        completed_at = int(self._now()) if status == "completed" else None
        response = self._response(
            status, output=self._output, usage=usage, incomplete_details=incomplete, completed_at=completed_at
        )
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return [self._event(kind, {"response": response})]

    def _failure(self, status: int, message: str) -> list[bytes]:
        error = {"code": "rate_limit_exceeded" if status == 429 else "server_error", "message": message}
        response = self._response("failed", output=self._output, error=error)
        return [self._event("response.failed", {"response": response})]
