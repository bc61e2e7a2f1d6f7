"""A chat completion as a Responses API response, and the pieces the stream translator shares.

    chat_to_responses(chat_response, request, *, new_id=random_id, now=time.time) -> dict

``request`` is the client's Responses request (already accepted by ``responses_to_chat``): the response
names its model and echoes its settings (tools, tool_choice, instructions, ...), as the Responses API does.

- Output items, in order: ``reasoning`` (the upstream's reasoning text as ``reasoning_text`` content),
  ``message`` (``output_text``, or ``refusal``), then one ``function_call`` per tool call (``call_id`` the
  upstream's id, or a new ``call_``), or ``custom_tool_call`` for calls of the request's freeform tools.
- ``status``: ``completed``; ``incomplete`` with ``incomplete_details.reason`` ``max_output_tokens``
  (finish ``length``) or ``content_filter``.
- ``usage``: ``input_tokens`` = ``prompt_tokens`` (the Responses API counts cached input inside it, and
  reports it in ``input_tokens_details.cached_tokens``), ``output_tokens`` = ``completion_tokens``
  (``output_tokens_details.reasoning_tokens`` when reported), ``total_tokens``; None when the upstream
  reported none.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from anygate.wire.chat import (
    arguments_text,
    cached_prompt_tokens,
    count,
    first_choice,
    message_text,
    reasoning_text,
)
from anygate.wire.ids import IdFactory, random_id
from anygate.wire.responses_request import custom_tool_names

INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}
Clock = Callable[[], float]


def chat_to_responses(
    chat_response: dict[str, Any],
    request: dict[str, Any],
    *,
    new_id: IdFactory = random_id,
    now: Clock = time.time,
) -> dict[str, Any]:
    """The Responses API response for a chat completion made from ``request``."""
    choice = first_choice(chat_response)
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    output: list[dict[str, Any]] = []
    reasoning = reasoning_text(message)
    if reasoning:
        output.append(reasoning_item(new_id("rs"), reasoning, "completed"))
    text = message_text(message.get("content"))
    refusal = message.get("refusal")
    if text:
        output.append(message_item(new_id("msg"), "completed", [output_text_part(text)]))
    elif isinstance(refusal, str) and refusal:
        output.append(message_item(new_id("msg"), "completed", [{"type": "refusal", "refusal": refusal}]))
    custom = custom_tool_names(request)
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            name = function.get("name")
            name = name if isinstance(name, str) else ""
            call_id = call.get("id")
            call_id = call_id if isinstance(call_id, str) and call_id else new_id("call")
            arguments = arguments_text(function.get("arguments"))
            output.append(call_item(new_id, call_id, name, arguments, custom_tool=name in custom))
    status, incomplete = response_status(choice.get("finish_reason"))
    usage = chat_response.get("usage")
    created_at = int(now())
    return response_object(
        request,
        new_id("resp"),
        created_at,
        status=status,
        output=output,
        usage=responses_usage(usage if isinstance(usage, dict) else None),
        incomplete_details=incomplete,
        completed_at=created_at if status == "completed" else None,
    )


def response_object(
    request: dict[str, Any],
    response_id: str,
    created_at: int,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    incomplete_details: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """A Responses ``response`` object echoing the request's settings."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "completed_at": completed_at,
        "status": status,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": _echo(request, "instructions", str),
        "max_output_tokens": _echo(request, "max_output_tokens", int),
        "model": request.get("model"),
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls") is not False,
        "previous_response_id": None,
        "reasoning": _echo(request, "reasoning", dict),
        "store": False,
        "temperature": _echo(request, "temperature", int | float),
        "text": _echo(request, "text", dict) or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": _echo(request, "tools", list) or [],
        "top_p": _echo(request, "top_p", int | float),
        "truncation": "disabled",
        "usage": usage,
        "metadata": _echo(request, "metadata", dict) or {},
    }


def _echo(request: dict[str, Any], name: str, kind: Any) -> Any:
    value = request.get(name)
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def response_status(finish_reason: Any) -> tuple[str, dict[str, Any] | None]:
    """(``status``, ``incomplete_details``) for a chat ``finish_reason``."""
    reason = INCOMPLETE_REASONS.get(finish_reason) if isinstance(finish_reason, str) else None
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def responses_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    prompt = count(usage, "prompt_tokens") or 0
    completion = count(usage, "completion_tokens") or 0
    read, written = cached_prompt_tokens(usage)
    details = usage.get("completion_tokens_details")
    reasoning = count(details, "reasoning_tokens") if isinstance(details, dict) else None
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": read or 0, "cache_write_tokens": written or 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning or 0},
        "total_tokens": count(usage, "total_tokens") or prompt + completion,
    }


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def reasoning_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {"id": item_id, "type": "reasoning", "summary": [], "content": content, "status": status}


def call_item(new_id: IdFactory, call_id: str, name: str, arguments: str, *, custom_tool: bool) -> dict[str, Any]:
    """A ``function_call`` item, or a ``custom_tool_call`` for a freeform tool (its raw ``input`` unwrapped)."""
    if custom_tool:
        return {
            "id": new_id("ctc"),
            "type": "custom_tool_call",
            "call_id": call_id,
            "name": name,
            "input": custom_tool_input(arguments),
        }
    return {
        "id": new_id("fc"),
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def custom_tool_input(arguments: str) -> str:
    """The raw input of a freeform tool from the ``{"input": ...}`` its function wrapper was called with
    (the arguments themselves when the model did not follow the wrapper)."""
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(parsed, dict) and isinstance(parsed.get("input"), str):
        return str(parsed["input"])
    return arguments
