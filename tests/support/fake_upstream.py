"""A scriptable fake OpenAI-compatible upstream, served on a real socket or in memory.

Every request is recorded in ``FakeUpstream.requests``. Each request consumes the first queued
``Reply`` whose ``path`` matches (FIFO); with nothing queued the route's default behaviour answers:

    async with FakeUpstream() as up:             # inside an event loop: an aiohttp server on 127.0.0.1
        up.script(Reply.rate_limited(retry_after=2), Reply(content="ok"))

    with FakeUpstream.start_in_thread() as up:   # sync tests: its own loop in a daemon thread
        client = OpenAI(base_url=up.base_url, api_key="k")

    up = FakeUpstream().in_memory()              # no socket: the gateway reaches it through
    app = create_app(settings, up.transport())   # FakeTransport (tests/support/fake_transport.py)

What to answer is decided once, in ``FakeUpstream.answer`` (an ``Answer``: status, headers, a body or
SSE events, and the failures to play); the aiohttp server and the in-memory transport only deliver it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import reprlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web
from multidict import CIMultiDict

from .openai_bodies import (
    CREATED,
    ToolCall,
    Turn,
    Usage,
    anthropic_events,
    anthropic_message,
    chat_chunks,
    chat_completion,
    default_key_info,
    default_quota,
    embeddings,
    model_entry,
    ollama_tag,
    priced_model,
    response_events,
    response_object,
    sse,
    text_chunks,
    text_completion,
)

__all__ = ["Answer", "FakeUpstream", "RecordedRequest", "Reply", "ToolCall", "Usage", "priced_model"]

IN_MEMORY_URL = "http://upstream.test"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


@dataclass(frozen=True, repr=False)
class Reply:
    """One scripted answer. ``json`` or ``body`` makes it a fixed response; otherwise the route's
    default answer is produced with the overrides below (content, usage, pacing, failures)."""

    status: int = 200  # on a default answer, a status other than 200 replaces the route's
    json: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content: str | None = None
    chunks: int | None = None  # content deltas in a stream (None: the upstream's setting)
    usage: Usage | None = None
    omit_usage: bool = False  # no usage at all, even when the request asked (like llama.cpp)
    finish_reason: str = "stop"
    stream: bool | None = None  # None follows the request's own "stream" flag
    send_done: bool = True  # False: the stream ends without "data: [DONE]"
    raw_events: Sequence[bytes] | None = None  # written verbatim as the SSE stream, any route
    first_byte_delay: float = 0.0  # seconds before the status line and headers
    event_delay: float | None = None  # seconds between SSE events (None: the upstream's setting)
    hang_before_headers: bool = False  # until the client leaves or the server closes
    hang_after_events: int | None = None  # 0: headers sent, then nothing
    reset_before_headers: bool = False  # reset the TCP connection (RST) with no response
    reset_after_events: int | None = None  # reset the TCP connection after K events
    stable: bool = False  # the same id and "created" for every answer: two runs give the same bytes
    tool_calls: Sequence[ToolCall] = ()  # chat answers (whole or streamed) call these tools

    def __repr__(self) -> str:
        default = Reply()
        changed = [
            f"{f.name}={reprlib.repr(getattr(self, f.name))}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        ]
        return f"Reply({', '.join(changed)})"

    @property
    def is_fixed(self) -> bool:
        return self.json is not None or self.body is not None

    @classmethod
    def error(
        cls,
        status: int,
        message: str = "Fake upstream error",
        *,
        type: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An OpenAI-style error body: ``{"error": {message, type, param, code}}``."""
        kind = type or ERROR_TYPES.get(status, "server_error")
        error = {"message": message, "type": kind, "param": None, "code": code}
        return cls(status=status, json={"error": error}, headers=headers or {})

    @classmethod
    def rate_limited(cls, retry_after: float = 2) -> Reply:
        headers = {"Retry-After": f"{retry_after:g}"}
        return cls.error(429, "Rate limit reached", code="rate_limit_exceeded", headers=headers)

    @classmethod
    def invalid_json(cls, status: int = 200) -> Reply:
        return cls(status=status, body=b'{"id": "chatcmpl-broken", "choices": [')

    @classmethod
    def huge(cls, size: int) -> Reply:
        """A well-formed completion whose content alone is ``size`` bytes."""
        return cls(content="x" * size)


@dataclass(frozen=True, repr=False)
class RecordedRequest:
    """What reached the upstream; header names are lowercase, ``json`` is None if unparsable."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any

    def __repr__(self) -> str:
        size = len(self.body)
        return f"<RecordedRequest {self.method} {self.path} model={self.model!r} {size} B>"

    @property
    def model(self) -> str | None:
        model = self.json.get("model") if isinstance(self.json, dict) else None
        return model if isinstance(model, str) else None


# the answer -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the fake sends for one request, whoever delivers it (the aiohttp server or FakeTransport)."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None  # a whole body; else ``events`` are streamed
    events: Sequence[bytes] = ()
    event_delay: float = 0.0
    first_byte_delay: float = 0.0
    hang_before_headers: bool = False
    reset_before_headers: bool = False
    hang_after_events: int | None = None
    reset_after_events: int | None = None

    @property
    def is_stream(self) -> bool:
        return self.body is None


def json_answer(payload: Any, status: int = 200) -> Answer:
    return Answer(status, {"Content-Type": "application/json"}, json.dumps(payload).encode())


def not_found() -> Answer:
    return Answer(404, {"Content-Type": "text/plain"}, b"404 page not found")


# the fake ------------------------------------------------------------------------------------------

Route = Callable[["FakeUpstream", Turn], Answer]


class FakeUpstream:
    """The fake. Settings are plain attributes and may change while it runs."""

    def __init__(
        self,
        *,
        content: str = "Hello from the fake upstream!",
        chunks: int = 3,
        event_delay: float = 0.0,
        usage: Usage | None = None,
        models: Sequence[str | Mapping[str, Any]] = ("fake-model",),
        has_models_endpoint: bool = True,
        has_tags_endpoint: bool = True,
        server_ssl: ssl.SSLContext | None = None,
        host_name: str = "127.0.0.1",
        has_responses_endpoint: bool = True,
    ) -> None:
        """``server_ssl``: serve HTTPS with this context; ``host_name``: the host ``url`` names (a name a
        test resolves to loopback, for the certificate's sake)."""
        self.server_ssl = server_ssl
        self.host_name = host_name
        self.content = content
        self.chunks = chunks
        self.event_delay = event_delay
        self.usage = usage or Usage()
        self.models: list[str | Mapping[str, Any]] = list(models)
        self.has_models_endpoint = has_models_endpoint
        self.has_tags_endpoint = has_tags_endpoint
        self.has_responses_endpoint = has_responses_endpoint  # False: /v1/responses is a 404, as on most
        # Top-level request fields refused with 400 "Unrecognized request argument supplied: <field>",
        # as strict OpenAI-compatible servers do (e.g. {"stream_options"}).
        self.rejected_fields: set[str] = set()
        # Like a model that never stops early: usage reports every answer (n, best_of) generated up to the
        # largest output limit the request sent, or up to ``model_max_output`` each when it sent none.
        self.generate_to_limit = False
        self.model_max_output = 32_768
        self.quota: dict[str, Any] = default_quota()
        self.key_info: dict[str, Any] = default_key_info()
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0  # answers cut short because the client went away
        self._queue: list[tuple[str | None, Reply]] = []
        self._lock = threading.Lock()  # script() may be called from another thread
        self._counter = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._base: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self._base or "not started"
        return f"<FakeUpstream {where} requests={len(self.requests)} queued={len(self._queue)}>"

    @property
    def url(self) -> str:
        if self._base is None:
            raise RuntimeError("FakeUpstream is not started")
        return self._base

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def script(self, *replies: Reply, path: str | None = None) -> None:
        """Queue replies, consumed one per request; ``path`` limits them to one route."""
        with self._lock:
            self._queue.extend((path, reply) for reply in replies)

    def script_many(self, replies: Iterable[Reply], path: str | None = None) -> None:
        self.script(*replies, path=path)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            for index, (wanted, reply) in enumerate(self._queue):
                if wanted in (None, path):
                    del self._queue[index]
                    return reply
        return Reply()

    # deciding the answer ---------------------------------------------------------------------

    def answer(self, method: str, url: str, headers: Mapping[str, str], raw: bytes) -> Answer:
        """Record the request and decide its answer (scripted, refused, or the route's default)."""
        parts = urlsplit(url)
        parsed = _parse_json(raw)
        lowered = {name.lower(): value for name, value in headers.items()}
        self.requests.append(RecordedRequest(method, parts.path, dict(parse_qsl(parts.query)), lowered, raw, parsed))
        refused = self._refused_field(parsed)
        if refused is not None:
            error = {"message": f"Unrecognized request argument supplied: {refused}", "type": "invalid_request_error"}
            return json_answer({"error": {**error, "param": None, "code": None}}, status=400)
        reply = self._next_reply(parts.path)
        return self._scripted(reply, ROUTES.get((method, parts.path)), self._turn(reply, parsed))

    def _scripted(self, reply: Reply, route: Route | None, turn: Turn) -> Answer:
        """A fixed or raw reply answers any path; otherwise the route's default answer, with the reply's
        status, headers and failures (an unknown route is a 404)."""
        failures = {
            "first_byte_delay": reply.first_byte_delay,
            "hang_before_headers": reply.hang_before_headers,
            "reset_before_headers": reply.reset_before_headers,
            "hang_after_events": reply.hang_after_events,
            "reset_after_events": reply.reset_after_events,
            "event_delay": self.event_delay if reply.event_delay is None else reply.event_delay,
        }
        if reply.is_fixed:
            body = reply.body if reply.body is not None else json.dumps(reply.json).encode()
            return Answer(reply.status, _headers(reply.headers), body, **failures)
        if reply.raw_events is not None:
            return Answer(reply.status, _stream_headers(reply.headers), None, reply.raw_events, **failures)
        answer = route(self, turn) if route is not None else not_found()
        headers = {**answer.headers, **reply.headers}
        status = reply.status if reply.status != 200 else answer.status
        return Answer(status, headers, answer.body, answer.events, **failures)

    def _refused_field(self, parsed: Any) -> str | None:
        if not self.rejected_fields or not isinstance(parsed, dict):
            return None
        return next((name for name in sorted(self.rejected_fields) if name in parsed), None)

    def _turn(self, reply: Reply, parsed: Any) -> Turn:
        number = next(self._counter)
        return Turn(
            body=parsed if isinstance(parsed, dict) else {},
            number=0 if reply.stable else number,
            created=CREATED if reply.stable else None,
            content=self.content if reply.content is None else reply.content,
            chunks=reply.chunks or self.chunks,
            usage=reply.usage or self._usage_for(parsed),
            finish_reason=reply.finish_reason,
            omit_usage=reply.omit_usage,
            stream=reply.stream,
            send_done=reply.send_done,
            tool_calls=tuple(reply.tool_calls),
        )

    def _usage_for(self, parsed: Any) -> Usage:
        if not self.generate_to_limit or not isinstance(parsed, dict):
            return self.usage
        limits = [parsed.get(name) for name in ("max_tokens", "max_completion_tokens", "max_output_tokens")]
        per_answer = max((v for v in limits if isinstance(v, int)), default=self.model_max_output)
        answers = max((v for v in (parsed.get("n"), parsed.get("best_of")) if isinstance(v, int)), default=1)
        return Usage(self.usage.prompt_tokens, per_answer * answers)

    # routes: the default answers -------------------------------------------------------------

    def _chat(self, turn: Turn) -> Answer:
        if turn.wants_stream:
            return _events([sse(chunk) for chunk in chat_chunks(turn)], turn)
        return json_answer(chat_completion(turn))

    def _completions(self, turn: Turn) -> Answer:
        if turn.wants_stream:
            return _events([sse(chunk) for chunk in text_chunks(turn)], turn)
        return json_answer(text_completion(turn))

    def _responses(self, turn: Turn) -> Answer:
        if not self.has_responses_endpoint:
            return not_found()
        if turn.wants_stream:
            return Answer(200, _stream_headers({}), None, response_events(turn))
        return json_answer(response_object(turn, done=True))

    def _messages(self, turn: Turn) -> Answer:
        """The Anthropic Messages API (an upstream that speaks it natively)."""
        if turn.wants_stream:
            return Answer(200, _stream_headers({}), None, anthropic_events(turn))
        return json_answer(anthropic_message(turn))

    def _embeddings(self, turn: Turn) -> Answer:
        return json_answer(embeddings(turn))

    def _models(self, turn: Turn) -> Answer:
        if not self.has_models_endpoint:
            return not_found()
        return json_answer({"object": "list", "data": [model_entry(m) for m in self.models]})

    def _tags(self, turn: Turn) -> Answer:
        if not self.has_tags_endpoint:
            return not_found()
        return json_answer({"models": [ollama_tag(model_entry(m)["id"]) for m in self.models]})

    def _quota(self, turn: Turn) -> Answer:
        return json_answer(self.quota)

    def _key(self, turn: Turn) -> Answer:
        return json_answer(self.key_info)

    # in memory ---------------------------------------------------------------------------------

    def in_memory(self, url: str = IN_MEMORY_URL) -> Self:
        """Serve without a socket, at ``url``: reach it through ``transport()`` (or a ``FakeNetwork``)."""
        self._base = url
        self._closing = asyncio.Event()
        return self

    def transport(self) -> Any:
        """An in-memory transport that delivers this fake's answers (``tests/support/fake_transport.py``)."""
        from .fake_transport import FakeTransport

        return FakeTransport(self)

    async def hang(self) -> None:
        """Wait until the client leaves (the answer is cancelled) or the fake closes."""
        if self._closing is None:
            self._closing = asyncio.Event()
        await self._closing.wait()

    @property
    def is_closing(self) -> bool:
        return self._closing is not None and self._closing.is_set()

    # on a socket ---------------------------------------------------------------------------------

    async def start(self) -> Self:
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.server_ssl).start()
        self._runner = runner
        scheme = "https" if self.server_ssl is not None else "http"
        self._base = f"{scheme}://{self.host_name}:{runner.addresses[0][1]}"
        return self

    async def close(self) -> None:
        if self._closing is not None:
            self._closing.set()  # hanging answers give up and drop their connection
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @classmethod
    def start_in_thread(cls, **options: Any) -> Self:
        """Build and start a fake served by its own event loop in a daemon thread."""
        return cls(**options).run_in_thread()

    def run_in_thread(self) -> Self:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fake-upstream", daemon=True)
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)

    def stop(self) -> None:
        """Stop a fake started with ``run_in_thread`` or ``start_in_thread``."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self if self._thread else self.run_in_thread()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp server: deliver the answer, failures included."""
        answer = self.answer(request.method, str(request.rel_url), request.headers, await request.read())
        try:
            return await self._deliver(request, answer)
        except asyncio.CancelledError:
            if not self.is_closing:
                self.disconnects += 1
            raise

    async def _deliver(self, request: web.Request, answer: Answer) -> web.StreamResponse:
        if answer.first_byte_delay:
            await asyncio.sleep(answer.first_byte_delay)
        if answer.hang_before_headers:
            await self.hang()
        if answer.reset_before_headers or answer.hang_before_headers:
            return _abort(request)
        if not answer.is_stream:
            return web.Response(status=answer.status, body=answer.body, headers=CIMultiDict(answer.headers))
        response = web.StreamResponse(status=answer.status, headers=CIMultiDict(answer.headers))
        await response.prepare(request)
        try:
            for index, event in enumerate(answer.events):
                if await self.stops_at(answer, index):
                    return _abort(request, response)
                if index and answer.event_delay:
                    await asyncio.sleep(answer.event_delay)
                await response.write(event)
            if await self.stops_at(answer, len(answer.events)):
                return _abort(request, response)
            await response.write_eof()
        except ConnectionResetError:
            self.disconnects += 1
        return response

    async def stops_at(self, answer: Answer, index: int) -> bool:
        """Whether the stream is cut before event ``index`` (after hanging, if so scripted)."""
        if index == answer.hang_after_events:
            await self.hang()
            return True
        return index == answer.reset_after_events


ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/v1/chat/completions"): FakeUpstream._chat,
    ("POST", "/v1/completions"): FakeUpstream._completions,
    ("POST", "/v1/embeddings"): FakeUpstream._embeddings,
    ("POST", "/v1/responses"): FakeUpstream._responses,
    ("POST", "/v1/messages"): FakeUpstream._messages,
    ("GET", "/v1/models"): FakeUpstream._models,
    ("GET", "/api/tags"): FakeUpstream._tags,
    **{("GET", f"{prefix}/quota"): FakeUpstream._quota for prefix in ("", "/v1")},
    **{("GET", f"{prefix}/key"): FakeUpstream._key for prefix in ("", "/v1")},
}


def _events(events: list[bytes], turn: Turn) -> Answer:
    done = [sse("[DONE]")] if turn.send_done else []
    return Answer(200, _stream_headers({}), None, events + done)


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _headers(extra: Mapping[str, str], content_type: str = "application/json") -> dict[str, str]:
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": content_type})
    headers.update(extra)
    return dict(headers)


def _stream_headers(extra: Mapping[str, str]) -> dict[str, str]:
    headers = _headers(extra, "text/event-stream")
    headers.setdefault("Cache-Control", "no-cache")
    return headers


def _abort(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
    """Reset the TCP connection: SO_LINGER 0 makes the close send an RST, not a FIN."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return response if response is not None else web.Response()
