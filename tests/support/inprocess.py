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
from collections.abc import Coroutine, Iterator
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


class BridgedTransport(httpx2.BaseTransport):
    """A sync httpx transport whose requests the app answers on the loop thread, in-process."""

    def __init__(self, app: Gateway, loop: LoopThread) -> None:
        self._asgi = httpx2.ASGITransport(app=app)
        self._loop = loop

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
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
    try:
        loop.run(app.startup())
        for secret, principal in (keys or {}).items():
            app.state.keyring.add(hash_key(secret), principal)
        loop.run(app.state.accounting.tokenizer.ready())  # its vocabularies load at start-up
        try:
            yield InProcessGateway(app, upstream, loop)
        finally:
            loop.run(app.shutdown())
    finally:
        loop.close()
