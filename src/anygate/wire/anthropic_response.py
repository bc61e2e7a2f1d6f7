"""A chat completion as an Anthropic message, and the mappings the stream translator shares.

    chat_to_anthropic(chat_response, requested_model, *, stop_sequences=(), new_id=random_id) -> dict

- ``reasoning_content``/``reasoning`` becomes a ``thinking`` block (first, with an empty signature), the
  text a ``text`` block, each tool call a ``tool_use`` block whose ``input`` is the parsed arguments and
  whose id is the upstream's (so the client's ``tool_result`` finds it on the next turn) or a new ``toolu_``.
- ``stop_reason``: ``length`` -> ``max_tokens``; tool calls -> ``tool_use`` (some upstreams say ``stop``
  for them); ``content_filter`` or a refusal -> ``refusal``; ``stop`` -> ``stop_sequence`` when the
  upstream names which of the client's ``stop_sequences`` matched (vLLM's ``stop_reason``), else ``end_turn``.
- ``usage``: Anthropic counts input without cache reads, so ``input_tokens`` is ``prompt_tokens`` less the
  cached (and cache-written) tokens, which are reported as ``cache_read_input_tokens`` and
  ``cache_creation_input_tokens`` when the upstream reports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anygate.wire.chat import (
    arguments_text,
    cached_prompt_tokens,
    count,
    first_choice,
    message_text,
    parse_arguments,
    reasoning_text,
)
from anygate.wire.ids import IdFactory, random_id

TOOL_FINISH_REASONS = frozenset({None, "stop", "tool_calls", "function_call"})


def chat_to_anthropic(
    chat_response: dict[str, Any],
    requested_model: str,
    *,
    stop_sequences: Sequence[str] = (),
    new_id: IdFactory = random_id,
) -> dict[str, Any]:
    """The Anthropic message for a chat completion (``requested_model`` is the name the client asked for)."""
    choice = first_choice(chat_response)
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    content: list[dict[str, Any]] = []
    thinking = reasoning_text(message)
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    text = message_text(message.get("content"))
    refusal = message.get("refusal")
    refused = not text and isinstance(refusal, str) and bool(refusal)
    if text or refused:
        content.append({"type": "text", "text": text or refusal})
    content.extend(_tool_uses(message.get("tool_calls"), new_id))
    has_tool_use = any(block["type"] == "tool_use" for block in content)
    stop_reason, stop_sequence = stop_reason_of(
        choice.get("finish_reason"), has_tool_use=has_tool_use, matched=choice.get("stop_reason"), stops=stop_sequences
    )
    usage = chat_response.get("usage")
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": requested_model,
        "content": content,
        "stop_reason": "refusal" if refused else stop_reason,
        "stop_sequence": stop_sequence,
        "usage": anthropic_usage(usage if isinstance(usage, dict) else None),
    }


def _tool_uses(tool_calls: Any, new_id: IdFactory) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for call in tool_calls if isinstance(tool_calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        call_id = call.get("id")
        name = function.get("name")
        blocks.append(
            {
                "type": "tool_use",
                "id": call_id if isinstance(call_id, str) and call_id else new_id("toolu"),
                "name": name if isinstance(name, str) else "",
                "input": parse_arguments(arguments_text(function.get("arguments"))),
            }
        )
    return blocks


def stop_reason_of(
    finish_reason: Any, *, has_tool_use: bool, matched: Any = None, stops: Sequence[str] = ()
) -> tuple[str, str | None]:
    """(``stop_reason``, ``stop_sequence``) for a chat ``finish_reason``."""
    if finish_reason == "length":
        return "max_tokens", None
    if has_tool_use and finish_reason in TOOL_FINISH_REASONS:
        return "tool_use", None
    if finish_reason == "content_filter":
        return "refusal", None
    if isinstance(matched, str) and matched in stops:
        return "stop_sequence", matched
    return "end_turn", None


def anthropic_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Anthropic ``usage`` from chat ``usage`` (zeros when the upstream reported none)."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    prompt = count(usage, "prompt_tokens") or 0
    read, written = cached_prompt_tokens(usage)
    mapped: dict[str, Any] = {
        "input_tokens": max(0, prompt - (read or 0) - (written or 0)),
        "output_tokens": count(usage, "completion_tokens") or 0,
    }
    if written is not None:
        mapped["cache_creation_input_tokens"] = written
    if read is not None:
        mapped["cache_read_input_tokens"] = read
    return mapped
