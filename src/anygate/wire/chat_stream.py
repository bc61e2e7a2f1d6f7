"""Chat completion chunks read as content blocks, one open at a time: what both stream translators render.

A chat stream carries text, reasoning and tool-call fragments (keyed by ``index``) side by side; Anthropic
and Responses streams carry one block (output item) at a time. ``ChatStreamReader`` turns chunks into block
operations (START a block, DELTA text onto it, STOP it), in order, losing nothing:

- text, reasoning or arguments for the open block stream straight into it;
- anything else starts a new block once the open one stops: text after a tool call is a new text block, a
  second tool call a new tool block;
- a tool block stops only when its arguments are complete JSON, so fragments of another call that arrive
  while it is unfinished (an upstream interleaving parallel calls) wait, in order, and go out whole when
  their turn comes; a tool block starts once its name is known;
- tool calls are told apart by ``index``, and by ``id`` where an upstream reuses an index (or sends none).

``ChatStreamTranslator`` is the loop both translators share: ``feed(events)`` reads whole SSE events,
``finish()`` closes what is open, ``fail(status, message)`` ends with the protocol's error event; subclasses
only render operations as their protocol's events. ``completion_chunk`` makes a whole chat completion one
chunk, for an upstream that answers a stream request with a completion.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

from anygate.errors import looks_like_secret
from anygate.wire.chat import arguments_text, reasoning_text
from anygate.wire.sse import event_data

START, DELTA, STOP = 0, 1, 2
TEXT, THINKING, TOOL = "text", "thinking", "tool"
DONE = b"[DONE]"


class Block:
    """One output block: ``kind`` (text, thinking, tool), its place once started, and what it received."""

    __slots__ = ("_checked", "_complete", "call_id", "closed", "index", "kind", "name", "parts", "sent")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.index = -1  # the block's place in the output, set when it starts
        self.parts: list[str] = []  # every fragment received, in order
        self.sent = 0  # how many of ``parts`` went out in DELTA operations
        self.call_id: str | None = None  # a tool call's upstream id (the renderer makes one when absent)
        self.name: str | None = None  # a tool call's function name
        self.closed = False
        self._checked = -1
        self._complete = True

    @property
    def started(self) -> bool:
        return self.index >= 0

    def text(self) -> str:
        return "".join(self.parts)

    def is_complete(self) -> bool:
        """Whether the block may stop now: always for text, for a tool when its arguments parse."""
        if self.kind != TOOL:
            return True
        if self._checked != len(self.parts):  # parsed again only when a fragment came since the last look
            self._checked = len(self.parts)
            arguments = self.text()
            try:
                if arguments.strip():  # no arguments at all: a call without parameters
                    orjson.loads(arguments)
                self._complete = True
            except orjson.JSONDecodeError:
                self._complete = False
        return self._complete

    def __repr__(self) -> str:
        return f"Block({self.kind!r}, index={self.index}, name={self.name!r}, text={self.text()!r})"


Op = tuple[int, Block, str]  # (START | DELTA | STOP, block, the delta's text or "")


class ChatStreamReader:
    """Chat chunks in, block operations out; also keeps the finish reason, the usage and an upstream error."""

    __slots__ = (
        "_last_tool",
        "_next_index",
        "_open",
        "_queue",
        "_tools",
        "error",
        "finish_reason",
        "matched_stop",
        "usage",
    )

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.matched_stop: str | None = None  # the stop sequence that ended the text, when the upstream names it
        self.usage: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self._open: Block | None = None
        self._queue: deque[Block] = deque()
        self._tools: dict[int, Block] = {}
        self._last_tool: Block | None = None
        self._next_index = 0

    def read(self, chunk: dict[str, Any]) -> list[Op]:
        out: list[Op] = []
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage:
            self.usage = usage  # the last one wins: some upstreams repeat a growing usage on every chunk
        error = chunk.get("error")
        if error:
            self.error = error if isinstance(error, dict) else {"message": str(error)}
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._read_choice(choice, out)
        return out

    def close(self) -> list[Op]:
        """Stop the open block and start and stop every waiting one, in order (the upstream has ended)."""
        out: list[Op] = []
        while self._queue:
            block = self._queue.popleft()
            if block.name is None and block.kind == TOOL:
                block.name = ""
            if self._open is not None:
                self._stop(self._open, out)
            self._start(block, out)
        if self._open is not None:
            self._stop(self._open, out)
        return out

    def _read_choice(self, choice: dict[str, Any], out: list[Op]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = reasoning_text(delta)
            if reasoning:
                self._content(THINKING, reasoning, out)
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._content(TEXT, content, out)
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                if isinstance(call, dict):
                    self._tool_fragment(call, out)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self.finish_reason = finish
        matched = choice.get("stop_reason")
        if isinstance(matched, str):
            self.matched_stop = matched

    def _content(self, kind: str, text: str, out: list[Op]) -> None:
        current = self._open
        if current is not None and current.kind == kind and not self._queue:
            current.parts.append(text)
            current.sent = len(current.parts)
            out.append((DELTA, current, text))
            return
        tail = self._queue[-1] if self._queue else None
        if tail is not None and tail.kind == kind:
            tail.parts.append(text)
        else:
            block = Block(kind)
            block.parts.append(text)
            self._queue.append(block)
        self._advance(out)

    def _tool_fragment(self, call: dict[str, Any], out: list[Op]) -> None:
        block = self._tool_block(call)
        function = call.get("function")
        arguments = ""
        if isinstance(function, dict):
            name = function.get("name")
            if isinstance(name, str) and name and block.name is None:
                block.name = name
            arguments = arguments_text(function.get("arguments"))
        if arguments and not block.closed:  # a call already stopped had complete arguments: nothing can follow
            block.parts.append(arguments)
            if block is self._open:
                block.sent = len(block.parts)
                out.append((DELTA, block, arguments))
        self._advance(out)

    def _tool_block(self, call: dict[str, Any]) -> Block:
        call_id = call.get("id")
        call_id = call_id if isinstance(call_id, str) and call_id else None
        index = call.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else None
        known = self._tools.get(index) if index is not None else self._last_tool
        if known is not None and (call_id is None or known.call_id in (None, call_id)):
            if known.call_id is None and not known.started:
                known.call_id = call_id
            return known
        block = Block(TOOL)
        block.call_id = call_id
        if index is not None:
            self._tools[index] = block
        self._last_tool = block
        self._queue.append(block)
        return block

    def _advance(self, out: list[Op]) -> None:
        queue = self._queue
        while queue:
            head = queue[0]
            if head.kind == TOOL and head.name is None:
                return
            current = self._open
            if current is not None:
                if not current.is_complete():
                    return
                self._stop(current, out)
            queue.popleft()
            self._start(head, out)

    def _start(self, block: Block, out: list[Op]) -> None:
        block.index = self._next_index
        self._next_index += 1
        self._open = block
        out.append((START, block, ""))
        if block.sent < len(block.parts):
            pending = "".join(block.parts[block.sent :])
            block.sent = len(block.parts)
            out.append((DELTA, block, pending))

    def _stop(self, block: Block, out: list[Op]) -> None:
        block.closed = True
        self._open = None
        out.append((STOP, block, ""))


def event_payload(event: bytes) -> bytes | None:
    """The data of one SSE event, or None for an event without data (a comment, a keep-alive)."""
    # The common case, ``data: {...}\n\n``, needs only slicing.
    if event.startswith(b"data: ") and event.endswith(b"\n\n") and event.find(b"\n", 6) == len(event) - 2:
        return event[6:-2]
    return event_data(event) or None


class ChatStreamTranslator:
    """The loop of a stream translator over a chat stream; subclasses render operations as their events."""

    def __init__(self) -> None:
        self._reader = ChatStreamReader()
        self._started = False
        self._finished = False

    @property
    def usage(self) -> dict[str, Any] | None:
        """The upstream's chat ``usage`` (``prompt_tokens``, ``completion_tokens``, ...), for accounting."""
        return self._reader.usage

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def is_complete(self) -> bool:
        """Whether the upstream said why it stopped (a finish reason): a stream that ends without
        ``[DONE]`` after one is whole (llama.cpp's server sends none), one that ends before it was cut."""
        return self._reader.finish_reason is not None

    def start(self) -> list[bytes]:
        """The opening events (once); ``feed`` sends them before anything else if the relay has not."""
        if self._started or self._finished:
            return []
        self._started = True
        return self._opening()

    def feed(self, events: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for event in events:
            if self._finished:
                break
            payload = event_payload(event)
            if payload is None:
                continue
            if payload.strip() == DONE:
                out.extend(self.finish())
                break
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                out.extend(self.fail(502, "The upstream sent an event that is not JSON"))
                break
            if isinstance(chunk, dict):
                out.extend(self._read(chunk))
        return out

    def finish(self) -> list[bytes]:
        """The end of the upstream's stream: stop open blocks, then the protocol's closing events."""
        if self._finished:
            return []
        out = self.start()
        self._render(self._reader.close(), out)
        out.extend(self._closing())
        self._finished = True
        return out

    def fail(self, status: int, message: str) -> list[bytes]:
        """The protocol's error event for a stream that failed midway (after the opening events, if they have
        not gone out yet); nothing more comes after it."""
        if self._finished:
            return []
        out = self.start()
        self._finished = True
        return out + self._failure(status, message)

    def _read(self, chunk: dict[str, Any]) -> list[bytes]:
        out = self.start()
        self._render(self._reader.read(chunk), out)
        error = self._reader.error
        if error is not None or self._reader.finish_reason == "error":
            out.extend(self.fail(*_upstream_failure(error or {})))
        return out

    # ------------------------------------------------------------------ what a protocol renders

    def _opening(self) -> list[bytes]:
        raise NotImplementedError

    def _render(self, ops: list[Op], out: list[bytes]) -> None:
        raise NotImplementedError

    def _closing(self) -> list[bytes]:
        raise NotImplementedError

    def _failure(self, status: int, message: str) -> list[bytes]:
        raise NotImplementedError


def completion_chunk(chat_response: dict[str, Any]) -> bytes:
    """A whole chat completion as one chunk event: each choice's message as its delta (tool calls numbered as
    a stream numbers them), with its finish reason and the usage."""
    choices = []
    for choice in chat_response.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        delta = dict(message) if isinstance(message, dict) else {}
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            delta["tool_calls"] = [{**call, "index": i} for i, call in enumerate(calls) if isinstance(call, dict)]
        choices.append({"index": choice.get("index", 0), "delta": delta, "finish_reason": choice.get("finish_reason")})
    chunk: dict[str, Any] = {"object": "chat.completion.chunk", "choices": choices}
    if isinstance(chat_response.get("usage"), dict):
        chunk["usage"] = chat_response["usage"]
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _upstream_failure(error: dict[str, Any]) -> tuple[int, str]:
    """(status, message) of an error an upstream put inside its stream (OpenRouter sends ``code`` and
    ``message``); the message is passed on only when it echoes no secret."""
    code = error.get("code")
    status = code if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599 else 502
    message = error.get("message")
    if not isinstance(message, str) or not message or looks_like_secret(message):
        message = "The upstream failed during the stream"
    return status, message
