"""Cancelling a request's work as soon as its client goes away."""

from __future__ import annotations

import asyncio
from typing import Any

from anygate.api.http import ClientDisconnected, Receive
from anygate.exchange import Exchange

# Most requests are answered sooner than this: they never pay for a watcher task. A client that leaves
# earlier is noticed once this much time has passed.
WATCH_AFTER_SECONDS = 0.05


class DisconnectWatch:
    """Cancels the request's task when the client goes away, so its upstream request stops at once.

    uvicorn's ``send`` ignores a gone client silently; only ``receive`` tells, so a watcher waits on it
    (the request body has been read by then), from ``WATCH_AFTER_SECONDS`` into the request on. On exit
    the watcher is stopped before anything else runs.
    """

    __slots__ = ("_receive", "_exchange", "_task", "_timer", "_watcher", "fired", "_closed")

    def __init__(self, receive: Receive, exchange: Exchange) -> None:
        self._receive = receive
        self._exchange = exchange
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.fired = False
        self._closed = False

    async def __aenter__(self) -> DisconnectWatch:
        self._task = asyncio.current_task()
        self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER_SECONDS, self._start_watching)
        return self

    def _start_watching(self) -> None:
        if not self._closed:
            self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self._closed and self._task is not None:
            self.fired = self._exchange.client_gone = True
            self._task.cancel()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._closed = True
        task, self._task = self._task, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._watcher is not None:
            # Let go of, not only cancelled: a cancelled task keeps its CancelledError, whose traceback keeps
            # ``_watch``'s frame and so this watch; holding the task here would close a cycle through it that
            # keeps every object of the request (its task's frames, the exchange, the ticket) until a full
            # collection: ~60 KiB a stream of garbage under load (docs/benchmarks.md).
            self._watcher.cancel()
            self._watcher = None
        if self.fired and exc_type is asyncio.CancelledError and task is not None:
            task.uncancel()
            raise ClientDisconnected from exc
