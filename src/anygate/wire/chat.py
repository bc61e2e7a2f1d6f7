"""The chat completions side of every translation: what both bridges read from and write to chat."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import orjson

from anygate.errors import UpstreamUnavailable

USER_ID_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
USER_ID_MAX = 64  # OpenAI's limit for ``user``; others allow 128, some refuse characters outside [A-Za-z0-9_-]
# OpenAI's reasoning models refuse ``max_tokens`` and want ``max_completion_tokens``; most others read only
# ``max_tokens``. The relay picks per upstream; the accounting reads either.
TokenLimitField = Literal["max_tokens", "max_completion_tokens"]
EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def chat_user(user_id: str) -> str:
    """A ``user`` every upstream accepts: the id itself when short and plain, else a stable hash of it.

    Claude Code's ``metadata.user_id`` runs past 150 characters (or is JSON); upstreams refuse that with 400.
    """
    if 0 < len(user_id) <= USER_ID_MAX and USER_ID_SAFE.issuperset(user_id):
        return user_id
    return hashlib.sha256(user_id.encode()).hexdigest()


def reasoning_effort(effort: str) -> str:
    """The closest effort every reasoning upstream knows (``low``, ``medium``, ``high``)."""
    return EFFORTS.get(effort, "medium")


def function_tool(name: str, description: str | None, parameters: dict[str, Any], strict: bool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if description:
        function["description"] = description
    function["parameters"] = parameters
    if strict:  # sent only when asked: not every upstream knows the member
        function["strict"] = True
    return {"type": "function", "function": function}


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def first_choice(chat_response: dict[str, Any]) -> dict[str, Any]:
    """The first choice of a chat completion; an answer without one is the upstream's fault (502)."""
    choices = chat_response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamUnavailable("The upstream answered without a choice", code="upstream_invalid_response")
    return choices[0]


def message_text(content: Any) -> str:
    """The text of a chat message's ``content``: a string, or the text of its parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def reasoning_text(message: dict[str, Any]) -> str:
    """Reasoning of a message or delta: ``reasoning_content`` (DeepSeek, vLLM) or ``reasoning`` (OpenRouter,
    Ollama). Some upstreams send both with the same text; one is taken, never both."""
    for name in ("reasoning_content", "reasoning"):
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def arguments_text(arguments: Any) -> str:
    """Tool-call arguments as the JSON text chat carries (a few upstreams send an object instead)."""
    if isinstance(arguments, str):
        return arguments
    if arguments is None:
        return ""
    return orjson.dumps(arguments).decode()


def parse_arguments(arguments: str) -> dict[str, Any]:
    """Tool-call arguments as an object; empty or unparsable arguments (a model's broken JSON) become ``{}``,
    which the client's schema check then reports to the model, instead of failing the whole answer."""
    if not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def count(usage: dict[str, Any], name: str) -> int | None:
    value = usage.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def cached_prompt_tokens(usage: dict[str, Any]) -> tuple[int | None, int | None]:
    """(tokens read from the prompt cache, tokens written to it) when the upstream reports them.

    OpenAI and most: ``prompt_tokens_details.cached_tokens``; DeepSeek: ``prompt_cache_hit_tokens``;
    writes: ``prompt_tokens_details.cache_write_tokens`` (OpenRouter) or ``cache_creation_input_tokens``.
    """
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    read = count(details, "cached_tokens")
    if read is None:
        read = count(usage, "prompt_cache_hit_tokens")
    written = count(details, "cache_write_tokens")
    if written is None:
        written = count(usage, "cache_creation_input_tokens")
    return read, written
