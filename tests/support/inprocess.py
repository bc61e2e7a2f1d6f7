"""The gateway in-process: driven through ASGI, with a FakeUpstream in memory behind it. No socket.

    up = FakeUpstream().in_memory()
    with inprocess_gateway(gateway_settings(fake_provider(up)), up) as gw:
        with gw.sdk() as client:                  # the official SDK, as against a served gateway
            client.chat.completions.create(...)
        gw.client().get("/v1/models")             # an httpx client with the admin key

The app runs its lifespan on an event loop in a background thread; the clients' requests are handed to
that loop (httpx's ``ASGITransport``), so sync tests and the sync SDK work unchanged. Responses arrive
whole: what needs a stream read as it arrives, a disconnect or a signal stays on a real socket
(``tests/support/gateway.py``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anthropic
import httpx2
import openai

from anygate.accounting.budgets import BudgetSource
from anygate.app import Gateway, create_app
from anygate.auth import Principal, hash_key
from anygate.settings import Settings
from anygate.transport import Transport

from .fake_upstream import FakeUpstream
from .gateway import ADMIN_KEY

T = TypeVar("T")
BASE_URL = "http://anygate.test"


class LoopThread:
    """An event loop running in a daemon thread; ``run(coroutine)`` waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gateway-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class Chunks(httpx2.AsyncByteStream):
    """A request body sent as the chunks a sync iterator gave (each its own ASGI ``http.request`` message)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


class BridgedTransport(httpx2.BaseTransport):
    """A sync httpx transport whose requests the app answers on the loop thread, in-process."""

    def __init__(self, app: Gateway, loop: LoopThread) -> None:
        self._asgi = httpx2.ASGITransport(app=app)
        self._loop = loop

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if not isinstance(request.stream, httpx2.AsyncByteStream):
            request.stream = Chunks(list(request.stream))  # type: ignore[arg-type]  # a sync iterator: chunked
        return self._loop.run(self._answer(request))

    async def _answer(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._asgi.handle_async_request(request)
        body = await response.aread()
        return httpx2.Response(response.status_code, headers=response.headers, content=body, request=request)


@dataclass
class InProcessGateway:
    app: Gateway
    upstream: FakeUpstream | None
    loop: LoopThread

    url = BASE_URL

    def transport(self) -> BridgedTransport:
        """For an httpx client of the test's own making (``httpx2.Client(transport=gw.transport())``)."""
        return BridgedTransport(self.app, self.loop)

    def client(self, key: str | None = ADMIN_KEY, **options: Any) -> httpx2.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx2.Client(base_url=BASE_URL, headers=headers, transport=self.transport(), **options)

    def async_client(self, key: str | None = ADMIN_KEY, **options: Any) -> httpx2.AsyncClient:
        """An async httpx client for coroutines run on the gateway's loop (``gw.run(...)``): requests sent
        at once are served at once, as by a server (``asyncio.gather`` of many, one held open meanwhile)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        transport = httpx2.ASGITransport(app=self.app)
        return httpx2.AsyncClient(base_url=BASE_URL, headers=headers, transport=transport, **options)

    def created(self, path: str, body: dict[str, Any], key: str | None = ADMIN_KEY) -> dict[str, Any]:
        """``POST path`` with ``key`` (the admin's by default), which must answer 201: what it made."""
        with self.client(key) as http:
            answer = http.post(path, json=body)
        assert answer.status_code == 201, answer.text
        made: dict[str, Any] = answer.json()
        return made

    def sdk(self, key: str = ADMIN_KEY, **options: Any) -> openai.OpenAI:
        """The official SDK against the in-process gateway, its own retries off."""
        options.setdefault("max_retries", 0)
        options.setdefault("http_client", httpx2.Client(transport=self.transport()))
        options.setdefault("base_url", f"{BASE_URL}/v1")
        return openai.OpenAI(api_key=key, **options)

    def anthropic(self, key: str = ADMIN_KEY, base_path: str = "", **options: Any) -> anthropic.Anthropic:
        """The official Anthropic SDK against the in-process gateway (``base_path``: ``/anthropic``), its
        own retries off."""
        options.setdefault("max_retries", 0)
        options.setdefault("http_client", httpx2.Client(transport=self.transport()))
        return anthropic.Anthropic(base_url=f"{BASE_URL}{base_path}", api_key=key, **options)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the gateway's loop (to reach its state between requests)."""
        return self.loop.run(coroutine)


@contextmanager
def inprocess_gateway(
    settings: Settings,
    upstream: FakeUpstream | None = None,
    transport: Transport | None = None,
    *,
    keys: dict[str, Principal] | None = None,
    budget_source: BudgetSource | None = None,
) -> Iterator[InProcessGateway]:
    """The gateway started (lifespan and all) with ``upstream`` in memory as its only network (or
    ``transport``: a real one, for upstreams and proxies on loopback sockets); ``keys`` maps secrets to
    the callers they stand for, ``budget_source`` gives their budgets (as the store would)."""
    loop = LoopThread()
    if transport is None and upstream is not None:
        transport = upstream.transport()
    app = create_app(settings, transport, budget_source)
    lifespan = Lifespan(app)
    try:
        loop.run(lifespan.start())
        for secret, principal in (keys or {}).items():
            app.state.keyring.add(hash_key(secret), principal)
        loop.run(app.state.accounting.tokenizer.ready())  # its vocabularies load at start-up
        try:
            yield InProcessGateway(app, upstream, loop)
        finally:
            loop.run(lifespan.stop())
    finally:
        loop.close()


class Lifespan:
    """The app's ASGI lifespan, driven as a server drives it (a failed start-up is logged by the app and
    raised here as the server reports it)."""

    def __init__(self, app: Gateway) -> None:
        self.app = app
        self._task: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[dict[str, Any]] | None = None
        self._outbox: asyncio.Queue[dict[str, Any]] | None = None

    async def start(self) -> None:
        inbox, outbox = self._inbox, self._outbox = asyncio.Queue(), asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.create_task(self.app(scope, inbox.get, outbox.put))  # type: ignore[arg-type]
        await inbox.put({"type": "lifespan.startup"})
        answer = await outbox.get()
        if answer["type"] == "lifespan.startup.failed":
            await self._task
            raise RuntimeError(f"the gateway did not start: {answer['message']}")

    async def stop(self) -> None:
        assert self._task is not None and self._inbox is not None and self._outbox is not None
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._outbox.get()
        await self._task
