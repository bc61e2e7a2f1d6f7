"""How much a request may generate: read from its body, reserved, and written back when a budget needs it.

A request generates ``outputs`` answers (``n``; also ``best_of``, which the upstream generates and bills in
full: text completions have it, and vLLM takes it on chat completions too), each at most ``per_output``
tokens: the largest of the output-limit fields it sends (``max_tokens``, ``max_completion_tokens``,
``max_output_tokens``, by route), since an upstream may honour any of them. The reservation is
``per_output x outputs`` (``DEFAULT_PER_OUTPUT`` per answer when no limit is sent).

Under a hard token or USD budget the upstream must never generate more than was reserved, so every limit
field the request sent is written down to the per-answer allowance, and a request that sent none gets
the route's field. Without such a budget the body goes upstream untouched (unless a rate limit clamped
the reservation: then the limit is written the same way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anygate.errors import InvalidRequest

DEFAULT_PER_OUTPUT = 4096  # reserved per answer when the request sends no limit; settled to what it used
MAX_OUTPUTS = 128
OUTPUT_LIMIT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "chat/completions": ("max_completion_tokens", "max_tokens"),
    "completions": ("max_tokens",),
    "responses": ("max_output_tokens",),
    "messages": ("max_tokens",),  # the Anthropic Messages API (required there)
}
OUTPUT_MULTIPLIERS: Mapping[str, tuple[str, ...]] = {
    "chat/completions": ("n", "best_of"),
    "completions": ("n", "best_of"),
}
# OpenAI's reasoning models refuse ``max_tokens``; every other chat upstream takes it.
MAX_COMPLETION_TOKENS_MODELS = ("o1", "o3", "o4", "gpt-5")


@dataclass(slots=True)  # not frozen: made per request (docs/architecture.md, Hot path)
class OutputRequest:
    """What a request asks to generate."""

    fields: tuple[str, ...] = ()  # the output-limit fields its body has (null ones included)
    per_output: int | None = None  # the largest limit among them; None: it sends none
    outputs: int = 1

    @property
    def reserved_per_output(self) -> int:
        return self.per_output if self.per_output is not None else DEFAULT_PER_OUTPUT

    @property
    def reserved(self) -> int:
        return self.reserved_per_output * self.outputs


def requested_output(route: str, payload: Mapping[str, Any]) -> OutputRequest:
    """The request's outputs and limits; 400 for a value that is not a positive integer (``n`` and
    ``best_of`` at most ``MAX_OUTPUTS``). A null value is the same as none."""
    names = OUTPUT_LIMIT_FIELDS.get(route)
    if names is None:
        return OutputRequest()
    fields: tuple[str, ...] = ()
    per_output: int | None = None
    for name in names:
        if name in payload:
            fields += (name,)
            if payload[name] is not None:
                limit = positive_int(payload, name)
                per_output = limit if per_output is None else max(per_output, limit)
    outputs = 1
    for name in OUTPUT_MULTIPLIERS.get(route, ()):
        if payload.get(name) is not None:
            outputs = max(outputs, positive_int(payload, name, MAX_OUTPUTS))
    return OutputRequest(fields, per_output, outputs)


def positive_int(payload: Mapping[str, Any], name: str, maximum: int | None = None) -> int:
    value = payload[name]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1 and (maximum is None or value <= maximum):
        return value
    upper = f" to {maximum}" if maximum is not None else ""
    raise InvalidRequest(f"'{name}' must be an integer from 1{upper}", param=name, code="invalid_value")


def limit_changes(
    route: str, payload: Mapping[str, Any], wanted: OutputRequest, allowed_total: int | None, enforce: bool, model: str
) -> dict[str, int]:
    """The limit fields to write into the body: each field it has, down to the per-answer allowance, or
    the route's own field when it has none. Nothing unless ``enforce`` (a hard budget holds the
    output) or a limit clamped the reservation (``allowed_total``, every answer's tokens together)."""
    if route not in OUTPUT_LIMIT_FIELDS or (allowed_total is None and not enforce):
        return {}
    cap = wanted.reserved_per_output
    if allowed_total is not None:
        cap = min(cap, max(1, allowed_total // wanted.outputs))
    if not wanted.fields:
        return {default_limit_field(route, model): cap}
    return {name: cap for name in wanted.fields if payload[name] is None or payload[name] > cap}


def default_limit_field(route: str, model: str) -> str:
    bare = model.rsplit("/", 1)[-1].lower()
    if route == "chat/completions" and bare.startswith(MAX_COMPLETION_TOKENS_MODELS):
        return "max_completion_tokens"
    return OUTPUT_LIMIT_FIELDS[route][-1]
