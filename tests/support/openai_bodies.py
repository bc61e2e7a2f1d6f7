"""Pure builders of the bodies and SSE events an OpenAI-compatible upstream sends.

Each builder takes a ``Turn`` (one request with every setting resolved) and returns plain data;
``fake_upstream`` serves them.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CREATED = 1_700_000_000


@dataclass(frozen=True)
class Usage:
    """Token counts the fake reports; ``total_tokens`` is derived."""

    prompt_tokens: int = 10
    completion_tokens: int = 5
    cached_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_chat(self) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return usage

    def as_responses(self) -> dict[str, Any]:
        return {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens or 0},
            "output_tokens": self.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class ToolCall:
    """A tool call the fake answers with; in a stream its arguments come in ``pieces`` fragments."""

    id: str
    name: str
    arguments: str
    pieces: int = 3

    def as_message(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}

    def deltas(self, index: int) -> list[dict[str, Any]]:
        """The chunks' ``tool_calls`` entries: the id and name first, then the arguments in pieces."""
        head = {"index": index, "id": self.id, "type": "function", "function": {"name": self.name, "arguments": ""}}
        rest = [{"index": index, "function": {"arguments": piece}} for piece in split_text(self.arguments, self.pieces)]
        return [head, *rest]


@dataclass(frozen=True)
class Turn:
    """One request to answer: its JSON body and the resolved settings of the answer."""

    body: dict[str, Any]
    number: int
    content: str
    chunks: int
    usage: Usage
    finish_reason: str = "stop"
    omit_usage: bool = False
    stream: bool | None = None  # None follows the request's "stream" flag
    created: int | None = None  # None: now
    send_done: bool = True  # False: a stream ends without "data: [DONE]"
    tool_calls: tuple[ToolCall, ...] = ()  # with them, the answer is these calls (and ``content`` if any)

    @property
    def model(self) -> str:
        return str(self.body.get("model") or "fake-model")

    @property
    def wants_stream(self) -> bool:
        return self.body.get("stream") is True if self.stream is None else self.stream

    @property
    def usage_in_stream(self) -> bool:
        options = self.body.get("stream_options")
        asked = isinstance(options, dict) and options.get("include_usage") is True
        return asked and not self.omit_usage

    @property
    def pieces(self) -> list[str]:
        return split_text(self.content, self.chunks)


def split_text(text: str, parts: int) -> list[str]:
    """Split ``text`` into ``parts`` nearly equal pieces (fewer when the text is shorter)."""
    parts = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), parts)
    ends = list(itertools.accumulate(size + (i < extra) for i in range(parts)))
    return [text[start:end] for start, end in zip([0, *ends], ends, strict=False)]


def sse(payload: Any, event: str | None = None) -> bytes:
    """One SSE event: ``[event: NAME\\n]data: JSON\\n\\n`` (a str payload is sent as is)."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {data}\n\n".encode()


# model listings and quota --------------------------------------------------------------------


def priced_model(model_id: str, prompt: str = "0.000001", completion: str = "0.000002") -> dict[str, Any]:
    """An OpenRouter-style model entry with per-token USD prices as strings."""
    pricing = {"prompt": prompt, "completion": completion}
    return {"id": model_id, "context_length": 8192, "pricing": pricing}


def model_entry(model: str | Mapping[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {"object": "model", "created": CREATED, "owned_by": "fake-upstream"}
    return {**base, "id": model} if isinstance(model, str) else {**base, **model}


def ollama_tag(model_id: str) -> dict[str, Any]:
    details = {"format": "gguf", "family": "llama", "parameter_size": "8B", "quantization_level": "Q4_0"}
    return {
        "name": model_id,
        "model": model_id,
        "modified_at": "2024-01-01T00:00:00Z",
        "size": 4_661_224_676,
        "digest": "0" * 64,
        "details": details,
    }


def default_quota() -> dict[str, Any]:
    """The neutral quota shape (``/quota``)."""
    tokens = {"limit": 5_000_000, "used": 250_000, "remaining": 4_750_000, "resets_at": None}
    cost = {"currency": "USD", "limit": 5.0, "used": 0.42, "remaining": 4.58}
    return {"key": "fake-key", "tokens": tokens, "cost": cost}


def default_key_info() -> dict[str, Any]:
    """The OpenRouter key shape (``/key``)."""
    usage = {"usage": 0.42, "usage_daily": 0.1, "usage_weekly": 0.2, "usage_monthly": 0.42}
    byok = {f"byok_{name}": 0.0 for name in usage}
    flags = {"is_free_tier": False, "is_management_key": False, "is_provisioning_key": False}
    data = {
        "label": "sk-or-v1-fak...e00",
        "limit": 10.0,
        "limit_remaining": 9.58,
        "limit_reset": "monthly",
        **usage,
        **byok,
        "include_byok_in_limit": False,
        **flags,
        "creator_user_id": None,
        "expires_at": None,
        "rate_limit": {"requests": -1, "interval": "10s", "note": "fake"},
    }
    return {"data": data}


# completions -----------------------------------------------------------------------------------


def envelope(turn: Turn, kind: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    """A chat/text completion or chunk, carrying ``usage`` the way OpenAI does."""
    prefix = "chatcmpl" if kind.startswith("chat") else "cmpl"
    body = {
        "id": f"{prefix}-fake-{turn.number}",
        "object": kind,
        "created": int(time.time()) if turn.created is None else turn.created,
        "model": turn.model,
        "system_fingerprint": "fp_fake",
        "choices": choices,
    }
    if not turn.wants_stream and not turn.omit_usage:
        body["usage"] = turn.usage.as_chat()
    elif turn.usage_in_stream:
        body["usage"] = None  # every chunk carries "usage": null when usage was asked for
    return body


def usage_chunks(turn: Turn, kind: str) -> list[dict[str, Any]]:
    """The closing ``choices: []`` chunk with usage, only when the request asked for it."""
    if not turn.usage_in_stream:
        return []
    return [{**envelope(turn, kind, []), "usage": turn.usage.as_chat()}]


def chat_completion(turn: Turn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.content or None, "refusal": None}
    if turn.tool_calls:
        message["tool_calls"] = [call.as_message() for call in turn.tool_calls]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": turn.finish_reason}
    return envelope(turn, "chat.completion", [choice])


def chat_chunks(turn: Turn) -> list[dict[str, Any]]:
    """Role chunk, one chunk per content piece, the finish_reason chunk, then usage if asked."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return envelope(turn, "chat.completion.chunk", [choice])

    deltas = [chunk({"content": piece}) for piece in turn.pieces]
    for index, call in enumerate(turn.tool_calls):
        deltas += [chunk({"tool_calls": [fragment]}) for fragment in call.deltas(index)]
    return [
        chunk({"role": "assistant", "content": "", "refusal": None}),
        *deltas,
        chunk({}, turn.finish_reason),
        *usage_chunks(turn, "chat.completion.chunk"),
    ]


def text_choice(text: str, finish: str | None) -> dict[str, Any]:
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}


def text_completion(turn: Turn) -> dict[str, Any]:
    return envelope(turn, "text_completion", [text_choice(turn.content, turn.finish_reason)])


def text_chunks(turn: Turn) -> list[dict[str, Any]]:
    choices = [text_choice(piece, None) for piece in turn.pieces]
    choices.append(text_choice("", turn.finish_reason))
    chunks = [envelope(turn, "text_completion", [choice]) for choice in choices]
    return chunks + usage_chunks(turn, "text_completion")


def embeddings(turn: Turn) -> dict[str, Any]:
    """One 8-dimensional vector per input (a string, or a list of strings or token arrays)."""
    raw = turn.body.get("input", "")
    count = len(raw) if isinstance(raw, list) and raw and not isinstance(raw[0], int) else 1
    data = [{"object": "embedding", "index": i, "embedding": [0.125 * (i + 1)] * 8} for i in range(count)]
    body: dict[str, Any] = {"object": "list", "data": data, "model": turn.model}
    if not turn.omit_usage:
        body["usage"] = {"prompt_tokens": turn.usage.prompt_tokens, "total_tokens": turn.usage.prompt_tokens}
    return body


# the Responses API -----------------------------------------------------------------------------


def response_message(turn: Turn, *, done: bool) -> dict[str, Any]:
    """The one output message: empty while in progress, with the whole text when done."""
    content = [{"type": "output_text", "text": turn.content, "annotations": []}] if done else []
    return {
        "type": "message",
        "id": f"msg_fake_{turn.number}",
        "role": "assistant",
        "status": "completed" if done else "in_progress",
        "content": content,
    }


def response_object(turn: Turn, *, done: bool) -> dict[str, Any]:
    """A Responses API object, ``in_progress`` (no output yet) or ``completed``."""
    usage = turn.usage.as_responses() if done and not turn.omit_usage else None
    output = [response_message(turn, done=True)] if done else []
    return {
        "id": f"resp_fake_{turn.number}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed" if done else "in_progress",
        "model": turn.model,
        "output": output,
        "usage": usage,
    }


def response_events(turn: Turn) -> list[bytes]:
    """The Responses stream: named events, each with a ``sequence_number``, and no [DONE]."""
    where = {"item_id": f"msg_fake_{turn.number}", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": turn.content, "annotations": []}
    in_progress, completed = response_message(turn, done=False), response_message(turn, done=True)
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": response_object(turn, done=False)}),
        ("response.output_item.added", {"output_index": 0, "item": in_progress}),
        ("response.content_part.added", {**where, "part": {**part, "text": ""}}),
        *(("response.output_text.delta", {**where, "delta": piece}) for piece in turn.pieces),
        ("response.output_text.done", {**where, "text": turn.content}),
        ("response.content_part.done", {**where, "part": part}),
        ("response.output_item.done", {"output_index": 0, "item": completed}),
        ("response.completed", {"response": response_object(turn, done=True)}),
    ]
    return [sse({"type": name, "sequence_number": number, **data}, name) for number, (name, data) in enumerate(events)]


# the Anthropic Messages API ---------------------------------------------------------------------


def anthropic_usage(turn: Turn) -> dict[str, Any]:
    """Anthropic's usage: ``input_tokens`` without the cache reads (``cached_tokens`` here)."""
    cached = turn.usage.cached_tokens or 0
    return {
        "input_tokens": turn.usage.prompt_tokens - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": turn.usage.completion_tokens,
    }


def anthropic_message(turn: Turn) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": turn.content}] if turn.content else []
    for call in turn.tool_calls:
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": json.loads(call.arguments)})
    return {
        "id": f"msg_fake_{turn.number}",
        "type": "message",
        "role": "assistant",
        "model": turn.model,
        "content": content,
        "stop_reason": "tool_use" if turn.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": anthropic_usage(turn),
    }


def anthropic_events(turn: Turn) -> list[bytes]:
    """An Anthropic stream as the Messages API sends it: usage in ``message_start`` (input) and in
    ``message_delta`` (output only), a ``ping``, and no ``[DONE]``."""
    start = {**anthropic_message(turn), "content": [], "stop_reason": None}
    start["usage"] = {**anthropic_usage(turn), "output_tokens": 1}
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"message": start}), ("ping", {})]
    if turn.content:
        events.append(("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
        for piece in turn.pieces:
            events.append(("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}}))
        events.append(("content_block_stop", {"index": 0}))
    delta = {"stop_reason": "end_turn", "stop_sequence": None}
    events.append(("message_delta", {"delta": delta, "usage": {"output_tokens": turn.usage.completion_tokens}}))
    events.append(("message_stop", {}))
    return [sse({"type": name, **data}, name) for name, data in events]
