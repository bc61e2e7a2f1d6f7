"""What the translation tests share: fixtures, deterministic ids, SSE parsing, and the SDKs as validators."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import orjson
import pydantic
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming

from anygate.wire.ids import IdFactory
from anygate.wire.sse import EventSplitter

FIXTURES = Path(__file__).parent / "fixtures"
STREAMS = FIXTURES / "streams"
CHAT_REQUEST = pydantic.TypeAdapter(CompletionCreateParamsNonStreaming)


def fixture_json(name: str) -> dict[str, Any]:
    return orjson.loads((FIXTURES / name).read_bytes())


def stream_fixture(name: str) -> bytes:
    return (STREAMS / name).read_bytes()


def counting_ids() -> IdFactory:
    """``msg_0``, ``toolu_1``, ...: the same sequence on every run."""
    counter = itertools.count()
    return lambda prefix: f"{prefix}_{next(counter)}"


def whole_events(raw: bytes) -> list[bytes]:
    """The upstream's bytes as the whole events ``EventSplitter`` yields (in one piece)."""
    splitter = EventSplitter()
    events = splitter.feed(raw)
    assert splitter.flush() == b"", "a recorded stream ends with a whole event"
    return events


def parsed_events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """``(event type, data)`` of each ``event: ...\\ndata: ...\\n\\n`` event; both lines are required."""
    events = []
    for event in body.split(b"\n\n"):
        if not event:
            continue
        kind, data = event.split(b"\n")
        assert kind.startswith(b"event: ") and data.startswith(b"data: "), event
        payload = orjson.loads(data[6:])
        assert payload["type"] == kind[7:].decode(), event
        events.append((kind[7:].decode(), payload))
    return events


def chat_chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    chunk["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    return b"data: " + orjson.dumps({**chunk, **extra}) + b"\n\n"


def usage_chunk(usage: dict[str, Any]) -> bytes:
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}
    return b"data: " + orjson.dumps({**chunk, "usage": usage}) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def assert_valid_chat_request(chat: dict[str, Any]) -> None:
    """The openai SDK's own request types accept every member of ``chat``, and drop none of them (a member
    they do not know would disappear in validation)."""
    validated = _materialize(CHAT_REQUEST.validate_python({**chat, "stream": False}))
    assert validated == {**chat, "stream": False}


def _materialize(value: Any) -> Any:
    """Validated data with pydantic's lazily validated iterables walked (which validates them)."""
    if isinstance(value, dict):
        return {key: _materialize(item) for key, item in value.items()}
    if value is None or isinstance(value, str | bytes | int | float | bool):
        return value
    return [_materialize(item) for item in value]


def _answering(body: bytes, status: int, content_type: str) -> httpx2.Client:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, headers={"content-type": content_type}, content=body)

    return httpx2.Client(transport=httpx2.MockTransport(answer))


@contextmanager
def anthropic_client(body: bytes, status: int = 200, content_type: str = "text/event-stream") -> Iterator[Any]:
    """The official Anthropic SDK, whose every request is answered with ``body``: it parses what we make."""
    with (
        _answering(body, status, content_type) as http,
        anthropic.Anthropic(
            api_key="sk-ant-test", base_url="http://gateway.test", http_client=http, max_retries=0
        ) as client,
    ):
        yield client


@contextmanager
def openai_client(body: bytes, status: int = 200, content_type: str = "text/event-stream") -> Iterator[Any]:
    with (
        _answering(body, status, content_type) as http,
        openai.OpenAI(api_key="sk-test", base_url="http://gateway.test/v1", http_client=http, max_retries=0) as client,
    ):
        yield client
