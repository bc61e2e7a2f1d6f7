"""Usage as the upstream reports it: from a JSON response or an SSE event, read without re-encoding.

Chat and text completions and embeddings carry ``usage: {prompt_tokens, completion_tokens}``; the
Responses API carries ``usage: {input_tokens, output_tokens}`` (in a stream, inside ``response.completed``).
The Anthropic Messages API counts its input without the prompt cache (``input_tokens`` beside
``cache_read_input_tokens`` and ``cache_creation_input_tokens``), and a stream reports it in two parts
(``message_start``, then ``message_delta``): ``chat_usage_of_anthropic`` gives it in the chat form.
An explicit zero is a zero: only a missing usage is estimated (see ``estimate``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from anygate.wire.sse import event_data

# Only an event whose usage is an object is parsed; ``"usage": null`` on every chunk is skipped unread.
USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


@dataclass(frozen=True, slots=True)
class TokenCount:
    """Tokens of one request; ``estimated`` when anygate counted them because the upstream did not."""

    input: int
    output: int
    estimated: bool = False

    @property
    def total(self) -> int:
        return self.input + self.output


def extract_usage(body: bytes) -> dict[str, Any] | None:
    """``usage`` of a JSON response or SSE event payload, when it holds one (Responses API included)."""
    if b'"usage"' not in body:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    usage = parsed.get("usage")
    if usage is None and isinstance(parsed.get("response"), dict):
        usage = parsed["response"].get("usage")
    return usage if isinstance(usage, dict) else None


def event_usage(event: bytes) -> dict[str, Any] | None:
    """``usage`` of one SSE event when it is an object (never parses chunks with ``"usage": null``)."""
    if not USAGE_OBJECT.search(event):
        return None
    return extract_usage(event_data(event))


def anthropic_event_usage(event: bytes) -> dict[str, Any] | None:
    """``usage`` of one Anthropic stream event: ``message.usage`` of ``message_start``, ``usage`` of
    ``message_delta`` (None for any other event, unparsed unless its usage is an object)."""
    if not USAGE_OBJECT.search(event):
        return None
    try:
        parsed = orjson.loads(event_data(event))
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    holder = parsed.get("message") if parsed.get("type") == "message_start" else parsed
    usage = holder.get("usage") if isinstance(holder, dict) else None
    return usage if isinstance(usage, dict) else None


def chat_usage_of_anthropic(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic ``usage`` in the chat form: ``prompt_tokens`` counts the cache reads and writes that
    Anthropic's ``input_tokens`` leaves out (reported in ``prompt_tokens_details``)."""
    fresh = _first_int(usage, ("input_tokens",)) or 0
    read = _first_int(usage, ("cache_read_input_tokens",)) or 0
    written = _first_int(usage, ("cache_creation_input_tokens",)) or 0
    output = _first_int(usage, ("output_tokens",)) or 0
    prompt = fresh + read + written
    chat: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}
    if read or written:
        chat["prompt_tokens_details"] = {"cached_tokens": read, "cache_write_tokens": written}
    return chat


def is_usage_only_event(event: bytes) -> bool:
    """The extra chunk ``include_usage`` adds: ``choices`` empty and ``usage`` an object."""
    if not USAGE_OBJECT.search(event):
        return False
    try:
        parsed = orjson.loads(event_data(event))
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and parsed.get("choices") == [] and isinstance(parsed.get("usage"), dict)


def count_of(usage: dict[str, Any] | None) -> TokenCount | None:
    """Input and output tokens of a usage object; None when it names neither."""
    if not usage:
        return None
    given_in = _first_int(usage, ("prompt_tokens", "input_tokens"))
    given_out = _first_int(usage, ("completion_tokens", "output_tokens"))
    if given_in is None and given_out is None:
        total = _first_int(usage, ("total_tokens",))
        return TokenCount(total, 0) if total is not None else None
    return TokenCount(given_in or 0, given_out or 0)


def _first_int(usage: dict[str, Any], names: tuple[str, ...]) -> int | None:
    for name in names:
        value = usage.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def wants_stream_usage(payload: dict[str, Any]) -> bool:
    """Whether the client itself asked for usage in its stream."""
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def with_stream_usage(payload: dict[str, Any]) -> dict[str, Any]:
    """The request asking the upstream for usage on its stream (``stream_options.include_usage``)."""
    options = payload.get("stream_options")
    merged = {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
    return {**payload, "stream_options": merged}
