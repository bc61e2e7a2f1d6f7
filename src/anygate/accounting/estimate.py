"""Token estimates, only for upstreams that report no usage (llama.cpp's server ignores include_usage),
and for the prompt a budget reserves before a request goes upstream.

The vocabulary (cl100k_base, shipped with anygate, so this works air-gapped; see ``bpe``) is loaded the
first time a count is needed: a process whose requests never need an estimate (no token or USD budget,
no tpm limit, upstreams that report usage) never holds it. Loading takes ~0.15 s of CPU, in a thread: a
request that needs a count before then awaits ``ready`` without blocking anything else, and ``count``
itself is synchronous and fast. Every model is counted with it: OpenAI's newer models use o200k_base,
which splits text into as many or fewer tokens, so their estimates err towards reserving more (they report
their usage, so what is charged is theirs).

A coding agent sends its whole conversation again with every turn: the same system prompt, tool
definitions and earlier messages, 100-500 KB, one new message more. Counting 200 KB takes ~18 ms of the
event loop, so a prompt's long parts are counted one by one and their counts remembered (``PartCounts``):
a turn then costs what its new parts cost.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import re
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import orjson

from anygate.accounting.bpe import MergeBudget, Vocabulary
from anygate.accounting.usage import TokenCount
from anygate.auth import Principal
from anygate.wire.sse import event_data

PER_MESSAGE_OVERHEAD = 3  # role and separators, as OpenAI counts chat messages


class Counter(Protocol):
    def count(self, text: str, budget: MergeBudget | None = None) -> int: ...


Loader = Callable[[], Counter]  # blocking: loads the vocabulary


@functools.cache
def load_vocabulary() -> Counter:
    """Blocking: read the bundled vocabulary (runs in a thread, never on the event loop). Read once per
    process: it never changes, and every app in the process (tests run many) counts with the same one."""
    return Vocabulary.load()


# A prompt part at least this long (characters) is counted alone and its count remembered; shorter ones
# count in a few microseconds together, and would only churn what is remembered.
LONG_PART = 1_024
# Tokens counted for the newline that joins a long part to the rest. Byte-pair encoding does not add up
# across a join: a piece that straddles it counts as two, but a newline after a run of whitespace can also
# merge with it and cost one more (`` \r\r\n`` is one token, `` \r\r\n\n`` three). Two covers the most a
# join was seen to add, over 60,000 random joins of letters, symbols and whitespace.
JOIN_TOKENS = 2
REMEMBERED_BYTES = 16 * 1024 * 1024  # of long parts' text, at most: the least recently used are forgotten first
ENTRY_BYTES = 256  # what remembering a part costs besides its text: its owner, key, count, the ordering's node


class PartCounts:
    """The token counts of long prompt parts, by whose they are and their whole text (no digest that two
    texts could share), least recently used forgotten first. What is remembered is bounded by the memory
    its texts hold; a part larger than a quarter of that is counted every time."""

    def __init__(self, limit: int = REMEMBERED_BYTES) -> None:
        self._counts: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._bytes = 0
        self._limit = limit

    def __len__(self) -> int:
        return len(self._counts)

    @property
    def size(self) -> int:
        """What the remembered counts hold: their texts and bookkeeping, in bytes."""
        return self._bytes

    def get(self, owner: str, part: str) -> int | None:
        known = self._counts.get((owner, part))
        if known is not None:
            self._counts.move_to_end((owner, part))  # the most recently used, now
        return known

    def remember(self, owner: str, part: str, tokens: int) -> None:
        size = sys.getsizeof(part) + ENTRY_BYTES
        if size > self._limit // 4 or (owner, part) in self._counts:
            return
        self._counts[owner, part] = tokens
        self._bytes += size
        while self._bytes > self._limit:
            (_, oldest), _ = self._counts.popitem(last=False)
            self._bytes -= sys.getsizeof(oldest) + ENTRY_BYTES


def counting_owner(principal: Principal) -> str:
    """Whose remembered part counts a caller's estimates use (``PartCounts``): its user's, else its key's
    (keys made from one key may be handed to different people). Shared more widely, how fast a long part
    counts would tell a caller whether someone else sent it."""
    if principal.user_id is not None:
        return f"user:{principal.user_id}"
    return f"key:{principal.key_id}"


class Tokenizer:
    """Counts tokens; its vocabulary is loaded off the event loop, once, when first needed.

    ``ready(model)`` waits until the vocabulary ``model`` needs is loaded, loading it if nobody is;
    ``count`` needs it loaded. ``loader`` replaces the bundled vocabulary (tests).
    """

    def __init__(self, loader: Loader | None = None, remembered_bytes: int = REMEMBERED_BYTES) -> None:
        self._loader = loader or load_vocabulary
        self._vocabulary: Counter | None = None
        self._loading: asyncio.Future[Counter] | None = None
        self._parts = PartCounts(remembered_bytes)

    def __repr__(self) -> str:
        return f"Tokenizer(loaded={self._vocabulary is not None})"

    @property
    def is_loaded(self) -> bool:
        return self._vocabulary is not None

    def is_ready_for(self, model: str | None) -> bool:
        return self._vocabulary is not None

    async def ready(self, model: str | None = None) -> None:
        """Load the vocabulary in a thread; whoever asks meanwhile waits for the same load."""
        if self._vocabulary is not None:
            return
        if self._loading is None:
            self._loading = asyncio.ensure_future(asyncio.to_thread(self._loader))
        self._vocabulary = await asyncio.shield(self._loading)

    def load_now(self) -> Tokenizer:
        """Load the vocabulary in this thread: for command-line tools and tests, never on the loop."""
        if self._vocabulary is None:
            self._vocabulary = self._loader()
        return self

    def count(self, text: str, model: str | None = None) -> int:
        if not text:
            return 0
        if self._vocabulary is None:
            raise RuntimeError("the vocabulary is not loaded yet: await ready() first")
        return self._vocabulary.count(text)

    @property
    def remembered_parts(self) -> int:
        return len(self._parts)

    @property
    def remembered_bytes(self) -> int:
        return self._parts.size

    def count_parts(self, parts: list[str], model: str | None = None, owner: str = "") -> int:
        """The tokens of ``parts`` joined by newlines, as one text. Each long part, and each run of short ones
        joined until it is as long, is counted alone and its count remembered for ``owner``
        (``counting_owner``), with ``JOIN_TOKENS`` for the newline that joined it: the estimate errs high,
        by up to two tokens a long part. A conversation sent again with one message more forms the same
        runs, and only its new ones are counted. One call's counts share one ``MergeBudget``, as one text's
        would."""
        if self._vocabulary is None:
            raise RuntimeError("the vocabulary is not loaded yet: await ready() first")
        total, budget = 0, MergeBudget()
        run: list[str] = []
        run_length = 0
        for part in parts:
            if len(part) >= LONG_PART:
                total += self._remembered_count(owner, part, budget) + JOIN_TOKENS
                continue
            run.append(part)
            run_length += len(part) + 1
            if run_length >= LONG_PART:
                total += self._remembered_count(owner, "\n".join(run), budget) + JOIN_TOKENS
                run, run_length = [], 0
        if run:  # what is left is short: counted, not remembered
            total += self._vocabulary.count("\n".join(run), budget)
        return total

    def _remembered_count(self, owner: str, part: str, budget: MergeBudget) -> int:
        tokens = self._parts.get(owner, part)
        if tokens is None:
            assert self._vocabulary is not None
            tokens = self._vocabulary.count(part, budget)
            if budget.left > 0:  # counted whole, none of it as a token a byte: worth remembering
                self._parts.remember(owner, part, tokens)
        return tokens


def prompt_text(payload: dict[str, Any]) -> tuple[str, int]:
    """``prompt_parts`` as one text."""
    parts, messages = prompt_parts(payload)
    return "\n".join(parts), messages


def prompt_parts(payload: dict[str, Any]) -> tuple[list[str], int]:
    """The texts of a request's input and the number of chat messages in it: in any of the APIs anygate
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
        return parts, len(messages)
    for field in ("prompt", "input"):
        parts.extend(_texts(payload.get(field)))
    return parts, 0


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


def estimate_prompt(tokenizer: Tokenizer, payload: dict[str, Any], model: str | None = None, owner: str = "") -> int:
    """The prompt's tokens, as a reservation counts them; ``owner``: whose remembered part counts to use."""
    parts, messages = prompt_parts(payload)
    return tokenizer.count_parts(parts, model, owner) + PER_MESSAGE_OVERHEAD * messages + unseen_tokens(payload)


# An image part, as a large image costs: OpenAI's high detail tops out near 1,500 tokens (85 + 170 a tile),
# Anthropic's about 1,600 (1.15 megapixels / 750). Settling charges what the upstream reports.
IMAGE_PART_TOKENS = 1_600
IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})
# Audio, by its size: speech bills near 25 tokens a second (gpt-4o audio: about 1,500 a minute), and no
# common format carries a second in under 2,500 bytes, so one token per 100 bytes reserves more than it costs.
AUDIO_BYTES_PER_TOKEN = 100
AUDIO_PART_TYPES = frozenset({"input_audio"})
# A document (PDF) is billed per page, as text (up to about 3,000 tokens) and as an image (about 1,600).
# Its pages are counted where the file says them plainly, else every byte is taken for a token (a page of
# text is rarely under 5,000 bytes): reservations err high, settling charges what the upstream reports.
DOCUMENT_PAGE_TOKENS = 4_600
DOCUMENT_PART_TYPES = frozenset({"file", "input_file", "document"})
_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def unseen_tokens(payload: dict[str, Any]) -> int:
    """What a prompt reads that is not text: token ids (``prompt``/``input`` as an array of integers, or of
    such arrays: a token each) and image parts (``IMAGE_PART_TOKENS`` each). Without them a hard budget
    would reserve next to nothing for a request that reads thousands of tokens."""
    total = 0
    for field in ("prompt", "input", "messages"):
        total += _unseen(payload.get(field), 0)
    return total


def _unseen(content: Any, depth: int) -> int:
    if not isinstance(content, list) or depth >= MAX_NESTING:
        return 0
    total = 0
    for item in content:
        if isinstance(item, int) and not isinstance(item, bool):
            total += 1  # a token id
        elif isinstance(item, list):
            total += _unseen(item, depth + 1)  # an array of token ids (one input of several)
        elif isinstance(item, dict):
            kind = item.get("type")
            if kind in IMAGE_PART_TYPES:
                total += IMAGE_PART_TOKENS
            elif kind in AUDIO_PART_TYPES:
                total += _decoded_size(_inline_data(item)) // AUDIO_BYTES_PER_TOKEN
            elif kind in DOCUMENT_PART_TYPES:
                total += _document_tokens(_inline_data(item))
            for nested in ("content", "output"):
                value = item.get(nested)
                if isinstance(value, list):  # (most are text: no call to find nothing in it)
                    total += _unseen(value, depth + 1)
    return total


def _inline_data(part: dict[str, Any]) -> str:
    """The base64 a part carries inline: chat's ``input_audio.data`` and ``file.file_data``, the Responses
    API's ``file_data``, Anthropic's ``source.data`` (a ``data:`` URL's prefix left on)."""
    for holder in (part, part.get("input_audio"), part.get("file"), part.get("source")):
        if isinstance(holder, dict):
            for name in ("data", "file_data"):
                value = holder.get(name)
                if isinstance(value, str):
                    return value
    return ""


def _decoded_size(data: str) -> int:
    return (len(data) - data.find(",") - 1) * 3 // 4 if data.startswith("data:") else len(data) * 3 // 4


def _document_tokens(data: str) -> int:
    if not data:
        return DOCUMENT_PAGE_TOKENS  # a file by id or URL: its size is not known here, count a page
    try:
        content = base64.b64decode(data.partition(",")[2] if data.startswith("data:") else data)
    except (ValueError, binascii.Error):
        return _decoded_size(data)
    pages = len(_PAGE.findall(content))
    return pages * DOCUMENT_PAGE_TOKENS if pages else len(content)


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
        if isinstance(kind, str) and kind.startswith("response.") and kind.endswith(".delta"):
            # the Responses API's deltas: output text, function call arguments, reasoning, refusals
            delta = parsed.get("delta")
            parts.append(delta if isinstance(delta, str) else "")
        elif kind == "content_block_delta":  # an Anthropic stream's text, thinking or tool input delta
            delta = parsed.get("delta")
            if isinstance(delta, dict):
                parts.extend(v for name in ANTHROPIC_DELTA_FIELDS if isinstance(v := delta.get(name), str))
        else:
            parts.extend(_generated(parsed))
    return "".join(parts)


ANTHROPIC_DELTA_FIELDS = ("text", "thinking", "partial_json")
# What a chat message or delta generates besides its text: reasoning (``reasoning_content``: DeepSeek,
# vLLM; ``reasoning``: OpenRouter, Ollama) and refusals; tool calls' arguments are read apart.
GENERATED_FIELDS = ("content", "reasoning_content", "reasoning", "refusal")


def _message_texts(holder: dict[str, Any]) -> Iterable[str]:
    """Everything a chat message or delta generated: its text, reasoning, refusal and tool calls' arguments."""
    for name in GENERATED_FIELDS:
        value = holder.get(name)
        if isinstance(value, str):
            yield value
    calls = holder.get("tool_calls")
    functions = [c.get("function") for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []
    functions.append(holder.get("function_call"))  # the legacy single call
    for function in functions:
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            yield function["arguments"]


def _generated(parsed: Any) -> Iterable[str]:
    if not isinstance(parsed, dict):
        return
    for choice in parsed.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        for holder in (choice.get("message"), choice.get("delta")):
            if isinstance(holder, dict):
                yield from _message_texts(holder)
        if isinstance(choice.get("text"), str):
            yield choice["text"]
    for item in parsed.get("output") or []:  # a Responses answer: messages, function calls, reasoning
        if isinstance(item, dict):
            if isinstance(item.get("arguments"), str):
                yield item["arguments"]
            for parts in (item.get("content"), item.get("summary")):
                for part in parts if isinstance(parts, list) else []:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        yield part["text"]
    content = parsed.get("content")  # an Anthropic message's blocks
    if isinstance(content, list):
        yield from _texts(content)
        yield from (b["thinking"] for b in content if isinstance(b, dict) and isinstance(b.get("thinking"), str))


def estimate(
    tokenizer: Tokenizer, payload: dict[str, Any], generated: str, model: str | None = None, owner: str = ""
) -> TokenCount:
    """An estimated count for a request whose upstream reported no usage."""
    prompt = estimate_prompt(tokenizer, payload, model, owner)
    return TokenCount(prompt, tokenizer.count(generated, model), estimated=True)
