"""Token estimates, only for upstreams that report no usage (llama.cpp's server ignores include_usage).

bpe-openai bundles its vocabularies, so this works air-gapped. Encodings are loaded once per process,
lazily, the first time an upstream leaves usage out.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import orjson

from anygate.accounting.usage import TokenCount
from anygate.sse import event_data

PER_MESSAGE_OVERHEAD = 3  # role and separators, as OpenAI counts chat messages
O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")


@lru_cache(maxsize=4)
def encoding(name: str) -> Any:
    # bpe-openai loads its bundled vocabularies through a deprecated importlib.resources call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai

        return bpe_openai.get_encoding(name)


def encoding_name(model: str | None) -> str:
    bare = (model or "").rsplit("/", 1)[-1].lower()
    return "o200k_base" if bare.startswith(O200K_PREFIXES) else "cl100k_base"


def count_text(text: str, model: str | None = None) -> int:
    return len(encoding(encoding_name(model)).encode(text)) if text else 0


def prompt_text(payload: dict[str, Any]) -> tuple[str, int]:
    """The text of a request's input and the number of chat messages in it."""
    parts: list[str] = []
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                parts.extend(_texts(message.get("content")))
        return "\n".join(parts), len(messages)
    for field in ("prompt", "input"):
        parts.extend(_texts(payload.get(field)))
    return "\n".join(parts), 0


def _texts(content: Any) -> Iterable[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for item in content:
            if isinstance(item, str):
                yield item
            elif isinstance(item, dict) and isinstance(item.get("text"), str):
                yield item["text"]


def estimate_prompt(payload: dict[str, Any], model: str | None = None) -> int:
    text, messages = prompt_text(payload)
    return count_text(text, model) + PER_MESSAGE_OVERHEAD * messages


def completion_text(body: bytes) -> str:
    """The generated text of a JSON completion (chat, text or Responses API)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    return "".join(_generated(parsed))


def stream_text(events: Iterable[bytes]) -> str:
    """The generated text of SSE events (content deltas, text deltas, Responses API deltas)."""
    parts: list[str] = []
    for event in events:
        data = event_data(event)
        if not data or data.strip() == b"[DONE]":
            continue
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(parsed, dict) and parsed.get("type") == "response.output_text.delta":
            delta = parsed.get("delta")
            parts.append(delta if isinstance(delta, str) else "")
        else:
            parts.extend(_generated(parsed))
    return "".join(parts)


def _generated(parsed: Any) -> Iterable[str]:
    if not isinstance(parsed, dict):
        return
    for choice in parsed.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        for holder in (choice.get("message"), choice.get("delta")):
            if isinstance(holder, dict) and isinstance(holder.get("content"), str):
                yield holder["content"]
        if isinstance(choice.get("text"), str):
            yield choice["text"]
    for item in parsed.get("output") or []:
        if isinstance(item, dict):
            for part in item.get("content") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield part["text"]


def estimate(payload: dict[str, Any], generated: str, model: str | None = None) -> TokenCount:
    """An estimated count for a request whose upstream reported no usage."""
    return TokenCount(estimate_prompt(payload, model), count_text(generated, model), estimated=True)
