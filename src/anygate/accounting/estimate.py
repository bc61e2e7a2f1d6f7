"""Token estimates, only for upstreams that report no usage (llama.cpp's server ignores include_usage),
and for the prompt a budget reserves before a request goes upstream.

bpe-openai bundles its vocabularies, so this works air-gapped. Loading them takes seconds of CPU (most of
it importing the package), so it never runs on the event loop: a ``Tokenizer`` loads them in a thread at
start-up (``load``, owned background work, and readiness waits for it), a request that needs a count
before then awaits ``ready`` without blocking anything else, and ``count`` itself is synchronous and fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from anygate.accounting.usage import TokenCount
from anygate.errors import NotReady
from anygate.wire.sse import event_data

PER_MESSAGE_OVERHEAD = 3  # role and separators, as OpenAI counts chat messages
O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")
ENCODINGS = ("cl100k_base", "o200k_base")

Loader = Callable[[str], Any]  # an encoding's name -> an object with ``encode(text) -> list[int]``


def load_encoding(name: str) -> Any:
    """Blocking: the first call imports bpe-openai and reads its vocabulary (seconds of CPU).

    It runs in a thread, so it must not touch the process's warning filters (``catch_warnings`` is not
    thread-safe); bpe-openai's DeprecationWarning is ignored by Python's default filters anyway."""
    import bpe_openai

    return bpe_openai.get_encoding(name)


def encoding_name(model: str | None) -> str:
    bare = (model or "").rsplit("/", 1)[-1].lower()
    return "o200k_base" if bare.startswith(O200K_PREFIXES) else "cl100k_base"


class Tokenizer:
    """Counts tokens; its vocabularies are loaded off the event loop, once.

    ``load()`` loads every vocabulary (at start-up); ``ready(model)`` waits until the one ``model`` needs
    is loaded, loading it if nobody is; ``count`` needs it loaded. ``loader`` replaces bpe-openai (tests).
    """

    def __init__(self, loader: Loader | None = None) -> None:
        self._loader = loader or load_encoding
        self._encodings: dict[str, Any] = {}
        self._loading: dict[str, asyncio.Future[Any]] = {}

    def __repr__(self) -> str:
        return f"Tokenizer(loaded={sorted(self._encodings)})"

    @property
    def is_ready(self) -> bool:
        return len(self._encodings) == len(ENCODINGS)

    def is_ready_for(self, model: str | None) -> bool:
        return encoding_name(model) in self._encodings

    async def load(self) -> None:
        for name in ENCODINGS:
            await self._load(name)

    async def ready(self, model: str | None = None) -> None:
        name = encoding_name(model)
        if name not in self._encodings:
            await self._load(name)

    async def _load(self, name: str) -> None:
        """Load one vocabulary in a thread; whoever asks meanwhile waits for the same load."""
        loading = self._loading.get(name)
        if loading is None:
            loading = self._loading[name] = asyncio.ensure_future(asyncio.to_thread(self._loader, name))
        self._encodings[name] = await asyncio.shield(loading)

    def load_now(self) -> Tokenizer:
        """Load every vocabulary in this thread: for command-line tools and tests, never on the loop."""
        for name in ENCODINGS:
            self._encodings.setdefault(name, self._loader(name))
        return self

    async def check_ready(self) -> None:
        """Readiness: not ready until every vocabulary is loaded."""
        if not self.is_ready:
            raise NotReady("loading the tokenizer's vocabularies")

    def count(self, text: str, model: str | None = None) -> int:
        if not text:
            return 0
        encoding = self._encodings.get(encoding_name(model))
        if encoding is None:
            raise RuntimeError(f"the {encoding_name(model)} vocabulary is not loaded yet: await ready() first")
        return len(encoding.encode(text))


def prompt_text(payload: dict[str, Any]) -> tuple[str, int]:
    """The text of a request's input and the number of chat messages in it: in any of the APIs anygate
    serves (chat, text completions, embeddings, Responses, Anthropic Messages), everything the model reads
    as text: the system prompt or instructions, each message's or input item's text (tool calls and their
    results included), and the tool definitions."""
    parts: list[str] = []
    for field in ("system", "instructions"):  # Anthropic's system prompt, the Responses API's instructions
        parts.extend(_texts(payload.get(field)))
    tools = payload.get("tools")
    if isinstance(tools, list) and tools:
        parts.append(orjson.dumps(tools).decode())
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                parts.extend(_texts(message.get("content")))
        return "\n".join(parts), len(messages)
    for field in ("prompt", "input"):
        parts.extend(_texts(payload.get(field)))
    return "\n".join(parts), 0


MAX_NESTING = 6  # blocks inside blocks (a tool result's content): deeper than any API nests them


def _texts(content: Any, depth: int = 0) -> Iterable[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list) and depth < MAX_NESTING:
        for item in content:
            if isinstance(item, str):
                yield item
            elif isinstance(item, dict):
                yield from _item_texts(item, depth + 1)


def _item_texts(item: dict[str, Any], depth: int) -> Iterable[str]:
    """A content part's or an input item's text, with what it holds: a tool result's or a message item's
    ``content``, a call's ``output``, and a tool call's ``input`` (Anthropic) or ``arguments`` (Responses)."""
    text = item.get("text")
    if isinstance(text, str):
        yield text
    for nested in ("content", "output"):
        if nested in item:
            yield from _texts(item[nested], depth)
    for raw in ("input", "arguments"):
        value = item.get(raw)
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            yield orjson.dumps(value).decode()


def estimate_prompt(tokenizer: Tokenizer, payload: dict[str, Any], model: str | None = None) -> int:
    text, messages = prompt_text(payload)
    return tokenizer.count(text, model) + PER_MESSAGE_OVERHEAD * messages


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
        kind = parsed.get("type") if isinstance(parsed, dict) else None
        if kind == "response.output_text.delta":
            delta = parsed.get("delta")
            parts.append(delta if isinstance(delta, str) else "")
        elif kind == "content_block_delta":  # an Anthropic stream's text (or thinking) delta
            delta = parsed.get("delta")
            parts.extend(_texts([delta]))
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
    content = parsed.get("content")  # an Anthropic message's blocks
    if isinstance(content, list):
        yield from _texts(content)


def estimate(tokenizer: Tokenizer, payload: dict[str, Any], generated: str, model: str | None = None) -> TokenCount:
    """An estimated count for a request whose upstream reported no usage."""
    prompt = estimate_prompt(tokenizer, payload, model)
    return TokenCount(prompt, tokenizer.count(generated, model), estimated=True)
