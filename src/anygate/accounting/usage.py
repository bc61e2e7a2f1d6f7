"""Usage as the upstream reports it: from a JSON response or an SSE event, read without re-encoding.

Chat and text completions and embeddings carry ``usage: {prompt_tokens, completion_tokens}``; the
Responses API carries ``usage: {input_tokens, output_tokens}`` (in a stream, inside ``response.completed``).
The Anthropic Messages API counts its input without the prompt cache (``input_tokens`` beside
``cache_read_input_tokens`` and ``cache_creation_input_tokens``), and a stream reports it in two parts
(``message_start``, then ``message_delta``): ``chat_usage_of_anthropic`` gives it in the chat form.
An explicit zero is a zero: only a missing usage is estimated (see ``estimate``).

Token classes (``count_of``) are parts of the input and output, priced at their own prices where a price
has them: cache reads (``prompt_tokens_details.cached_tokens``, ``input_tokens_details.cached_tokens``,
DeepSeek's ``prompt_cache_hit_tokens``, Anthropic's ``cache_read_input_tokens``), cache writes
(``cache_write_tokens``, ``cache_creation_input_tokens``), audio and image tokens of either side, and the
reasoning tokens of the output. Reasoning is counted once, as output: inside ``completion_tokens`` as
OpenAI reports it; added to it only when the upstream plainly left it out (more reasoning than completion,
or a ``total_tokens`` that counts it beside). A class larger than what holds it is cut to fit, so no token
is priced twice. ``upstream_cost`` is the cost the upstream reports itself (OpenRouter's ``usage.cost``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from anygate.wire.sse import event_data

# Only an event whose usage is an object is parsed; ``"usage": null`` on every chunk is skipped unread.
USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
USAGE_NAME = b'"usage"'  # what every match of USAGE_OBJECT holds: a byte search rules most events out first


@dataclass(slots=True)  # not frozen: made per request (docs/architecture.md, Hot path)
class TokenCount:
    """Tokens of one request; ``estimated`` when anygate counted them because the upstream did not.

    ``input`` and ``output`` are every token of each side; the classes are parts of them (never added to
    them): cache reads and writes, audio and image tokens of the input; reasoning, audio and image tokens
    of the output.
    """

    input: int
    output: int
    estimated: bool = False
    cached_input: int = 0
    cache_write: int = 0
    reasoning: int = 0
    audio_input: int = 0
    audio_output: int = 0
    image_input: int = 0
    image_output: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output

    @property
    def has_priced_classes(self) -> bool:
        """Whether any token is of a class with a price of its own (reasoning is priced as output)."""
        classes = (self.cached_input, self.cache_write, self.audio_input, self.audio_output, self.image_input)
        return any(classes) or self.image_output > 0


def extract_usage(body: bytes) -> dict[str, Any] | None:
    """``usage`` of a JSON response or SSE event payload, when it holds one (Responses API included)."""
    if USAGE_NAME not in body:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return _usage_member(parsed)


def _usage_member(parsed: Any) -> dict[str, Any] | None:
    if not isinstance(parsed, dict):
        return None
    usage = parsed.get("usage")
    if usage is None and isinstance(parsed.get("response"), dict):
        usage = parsed["response"].get("usage")
    return usage if isinstance(usage, dict) else None


def chunk_usage(event: bytes) -> tuple[dict[str, Any] | None, bool]:
    """``usage`` of one SSE event when it is an object (chunks with ``"usage": null`` are never parsed), and
    whether the event is the extra chunk ``include_usage`` adds (``choices`` empty, ``usage`` an object)."""
    if USAGE_NAME not in event or not USAGE_OBJECT.search(event):
        return None, False
    try:
        parsed = orjson.loads(event_data(event))
    except orjson.JSONDecodeError:
        return None, False
    usage = _usage_member(parsed)
    if usage is None:
        return None, False
    return usage, parsed.get("choices") == [] and isinstance(parsed.get("usage"), dict)


def anthropic_event_usage(event: bytes) -> dict[str, Any] | None:
    """``usage`` of one Anthropic stream event: ``message.usage`` of ``message_start``, ``usage`` of
    ``message_delta`` (None for any other event, unparsed unless its usage is an object)."""
    if USAGE_NAME not in event or not USAGE_OBJECT.search(event):
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


ANTHROPIC_CACHE_FIELDS = ("cache_read_input_tokens", "cache_creation_input_tokens")
CLASS_FIELDS = ("prompt_tokens_details", "input_tokens_details", "completion_tokens_details",
                "output_tokens_details", "prompt_cache_hit_tokens", "cache_creation_input_tokens")  # fmt: skip


def count_of(usage: dict[str, Any] | None) -> TokenCount | None:
    """Input and output tokens of a usage object, with their classes; None when it names neither."""
    if not usage:
        return None
    given_in = _first_int(usage, ("prompt_tokens", "input_tokens"))
    given_out = _first_int(usage, ("completion_tokens", "output_tokens"))
    if given_in is None and given_out is None:
        total = _first_int(usage, ("total_tokens",))
        return TokenCount(total, 0) if total is not None else None
    if "prompt_tokens" not in usage and not usage.keys().isdisjoint(ANTHROPIC_CACHE_FIELDS):
        usage = chat_usage_of_anthropic(usage)  # Anthropic's input_tokens leaves the cache out
        given_in, given_out = usage["prompt_tokens"], usage["completion_tokens"]
    if usage.keys().isdisjoint(CLASS_FIELDS):
        return TokenCount(given_in or 0, given_out or 0)  # the common case: no classes reported
    return classified(usage, given_in or 0, given_out or 0)


def classified(usage: dict[str, Any], prompt: int, completion: int) -> TokenCount:
    """The count with its classes, each cut to what is left of its side (none priced twice)."""
    given = _details(usage, "prompt_tokens_details", "input_tokens_details")
    made = _details(usage, "completion_tokens_details", "output_tokens_details")
    reasoning = _first_int(made, ("reasoning_tokens",)) or 0
    output = completion
    total = _first_int(usage, ("total_tokens",))
    if reasoning > completion or (reasoning and total == prompt + completion + reasoning):
        output = completion + reasoning  # the upstream counted reasoning beside the completion: once, here
    left = [prompt]
    cached = _take(left, _first_int(given, ("cached_tokens",)) or _first_int(usage, ("prompt_cache_hit_tokens",)))
    written = _take(
        left, _first_int(given, ("cache_write_tokens",)) or _first_int(usage, ("cache_creation_input_tokens",))
    )
    audio_in = _take(left, _first_int(given, ("audio_tokens",)))
    image_in = _take(left, _first_int(given, ("image_tokens",)))
    left_out = [output]
    audio_out = _take(left_out, _first_int(made, ("audio_tokens",)))
    image_out = _take(left_out, _first_int(made, ("image_tokens",)))
    return TokenCount(
        prompt, output, False, cached, written, min(reasoning, output), audio_in, audio_out, image_in, image_out
    )


def _details(usage: dict[str, Any], *names: str) -> dict[str, Any]:
    for name in names:
        details = usage.get(name)
        if isinstance(details, dict):
            return details
    return {}


def _take(left: list[int], wanted: int | None) -> int:
    """As much of ``wanted`` as ``left[0]`` holds, taken from it."""
    taken = min(wanted or 0, left[0])
    left[0] -= taken
    return taken


def upstream_cost(usage: dict[str, Any] | None) -> float | None:
    """USD the upstream says the request cost (OpenRouter's ``usage.cost``), when it says so.

    With OpenRouter's own bring-your-own-key (``is_byok``), ``cost`` is OpenRouter's fee and the
    provider bills ``cost_details.upstream_inference_cost``: the request cost both.
    """
    if not usage or "cost" not in usage:
        return None
    cost = _usd(usage.get("cost"))
    if cost is None:
        return None
    details = usage.get("cost_details")
    if usage.get("is_byok") is True and isinstance(details, dict):
        cost += _usd(details.get("upstream_inference_cost")) or 0.0
    return cost


def _usd(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


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
