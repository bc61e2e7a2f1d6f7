"""An in-memory transport: the gateway reaches a FakeUpstream with no socket in between.

It delivers the fake's ``Answer`` as the network would, through the same ``Transport`` interface and
with the same failures the aiohttp transport raises for them (``anygate.transport.aiohttp_transport``):
a wait past the first-byte or read timeout is ``UpstreamTimeout``, a reset before the headers is a
closed connection, a reset in the body an incomplete response. A response given back before its end is
counted in ``FakeUpstream.disconnects``, as the server counts a client that went away.

A ``FakeNetwork`` holds several in-memory upstreams, each at its own origin, behind one transport: for a
gateway with several providers, or whose providers are added while it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from anygate.errors import UpstreamTimeout, UpstreamUnavailable
from anygate.transport import Headers, OutgoingRequest

if TYPE_CHECKING:
    from .fake_upstream import Answer, FakeUpstream


class FakeTransport:
    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self.sent: list[OutgoingRequest] = []  # every request, as the transport got it

    async def send(self, request: OutgoingRequest) -> FakeResponse:
        self.sent.append(request)
        answer = self.upstream.answer(request.method, request.url, request.headers, request.body or b"")
        try:
            await asyncio.wait_for(self._headers_of(answer, request), request.timeouts.first_byte)
        except TimeoutError:
            raise UpstreamTimeout(f"{request.origin} did not answer in time") from None
        return FakeResponse(answer, request, self.upstream)

    async def _headers_of(self, answer: Answer, request: OutgoingRequest) -> None:
        if answer.first_byte_delay:
            await asyncio.sleep(answer.first_byte_delay)
        if answer.hang_before_headers:
            await self.upstream.hang()
        if answer.reset_before_headers or answer.hang_before_headers:
            raise UpstreamUnavailable(f"{request.origin} closed the connection")

    async def aclose(self) -> None:
        return None


class FakeNetwork:
    """In-memory upstreams by origin (``http://upstream-1.test``, ``http://upstream-2.test``...); a
    request to any other origin fails as a refused connection does."""

    def __init__(self) -> None:
        self.transports: dict[str, FakeTransport] = {}

    def add(self, upstream: FakeUpstream) -> FakeUpstream:
        """``upstream`` in memory at an origin of its own; returned, for ``up = network.add(FakeUpstream())``."""
        upstream.in_memory(f"http://upstream-{len(self.transports) + 1}.test")
        self.transports[upstream.url] = FakeTransport(upstream)
        return upstream

    async def send(self, request: OutgoingRequest) -> FakeResponse:
        parts = urlsplit(request.url)
        transport = self.transports.get(f"{parts.scheme}://{parts.netloc}")
        if transport is None:
            raise UpstreamUnavailable(f"{request.origin} refused the connection")
        return await transport.send(request)

    async def aclose(self) -> None:
        return None


class FakeResponse:
    def __init__(self, answer: Answer, request: OutgoingRequest, upstream: FakeUpstream) -> None:
        self.status = answer.status
        self.headers = Headers((k.lower().encode(), v.encode()) for k, v in answer.headers.items())
        self._answer = answer
        self._origin = request.origin
        self._upstream = upstream
        self._read_timeout = request.timeouts.first_byte
        total = request.timeouts.total
        self._deadline = None if total is None else asyncio.get_running_loop().time() + total
        self._finished = False
        self._given = 0  # events handed out
        self._closed = False

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        answer = self._answer
        if not answer.is_stream:
            self._finished = True
            if answer.body:
                yield answer.body
            return
        for index, event in enumerate(answer.events):
            await self._before_event(index)
            self._given = index + 1
            yield event
        await self._before_event(len(answer.events))
        self._finished = True

    @property
    def ended(self) -> bool:
        """As a network response's: every event handed out, and nothing scripted after the last (a hang or
        a reset there is the network's failure, found by the next read)."""
        answer = self._answer
        if self._finished or not answer.is_stream:
            return self._finished
        last = len(answer.events)
        return self._given == last and last not in (answer.hang_after_events, answer.reset_after_events)

    async def _before_event(self, index: int) -> None:
        """Wait as the upstream paces its events; a stop scripted here fails the read as the network would."""
        answer = self._answer
        delay = answer.event_delay if 0 < index < len(answer.events) else 0.0
        wait = self._read_timeout
        if self._deadline is not None:
            wait = min(wait, self._deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait_for(self._wait(index, delay), max(wait, 0.0))
        except TimeoutError:
            raise UpstreamTimeout(f"{self._origin} did not answer in time") from None

    async def _wait(self, index: int, delay: float) -> None:
        if index == self._answer.hang_after_events:
            await self._upstream.hang()
            raise UpstreamUnavailable(f"{self._origin} closed the connection")
        if index == self._answer.reset_after_events:
            raise UpstreamUnavailable(f"{self._origin} sent an incomplete response")
        if delay:
            await asyncio.sleep(delay)

    def set_read_timeout(self, seconds: float) -> None:
        self._read_timeout = max(seconds, 0.001)

    async def aclose(self) -> None:
        if not self._closed and not self._finished and not self._upstream.is_closing:
            self._upstream.disconnects += 1
        self._closed = True
