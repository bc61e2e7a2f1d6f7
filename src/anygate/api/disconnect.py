"""Cancelling a request's work as soon as its client goes away."""

from __future__ import annotations

import asyncio
from typing import Any

from anygate.api.http import ClientDisconnected, Receive
from anygate.client_gone import ClientGone
from anygate.exchange import Exchange

# Most requests are answered sooner than this: they never pay for a watcher task. A client that leaves
# earlier is noticed once this much time (and at most half as much again) has passed.
WATCH_AFTER_SECONDS = 0.05
SWEEP_SECONDS = WATCH_AFTER_SECONDS / 2


class DisconnectWatches:
    """The watches of one app not watching yet, oldest first, and the one timer that starts the watchers of
    those ``WATCH_AFTER_SECONDS`` old, every ``SWEEP_SECONDS`` while any is waiting.

    A timer a request (made when it starts, cancelled when it ends, nearly always before firing) cost
    ~2 µs of every request; an entry in this dict costs a tenth of that, and under load the sweep's timer
    fires 40 times a second whatever the rate of requests."""

    __slots__ = ("_waiting", "_timer", "_loop")

    def __init__(self) -> None:
        self._waiting: dict[DisconnectWatch, float] = {}  # in the order they came: by when they came
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the timer's

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, watch: DisconnectWatch, loop: asyncio.AbstractEventLoop) -> None:
        self._waiting[watch] = loop.time()
        if self._timer is None or self._loop is not loop:  # (an app served by another loop before: tests)
            self._loop, self._timer = loop, loop.call_later(WATCH_AFTER_SECONDS, self._sweep, loop)

    def discard(self, watch: DisconnectWatch) -> None:
        self._waiting.pop(watch, None)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            return  # a timer left on a loop this app is no longer served by
        self._timer = None
        due = loop.time() - WATCH_AFTER_SECONDS
        ready = []
        for watch, came in self._waiting.items():
            if came > due:
                break  # the rest came later still
            ready.append(watch)
        for watch in ready:
            del self._waiting[watch]
            watch.start_watching()
        if self._waiting:
            self._timer = loop.call_later(SWEEP_SECONDS, self._sweep, loop)
        else:
            self._loop = None  # nothing waits: the next watch arms a timer on its own loop


class DisconnectWatch:
    """Cancels the request's task when the client goes away, so its upstream request stops at once.

    anygate's server says so itself (``gone``: the scope's ``ClientGone``), the moment the connection is
    lost. Under another server only ``receive`` tells (uvicorn's ``send`` ignores a gone client silently),
    so a watcher waits on it (the request body has been read by then), from ``WATCH_AFTER_SECONDS`` into the
    request on (its app's ``DisconnectWatches`` starts it). On exit the watcher is stopped before anything
    else runs.
    """

    __slots__ = ("_receive", "_exchange", "_watches", "_gone", "_task", "_watcher", "fired", "_closed")

    def __init__(
        self, receive: Receive, exchange: Exchange, watches: DisconnectWatches, gone: ClientGone | None = None
    ) -> None:
        self._receive = receive
        self._exchange = exchange
        self._watches = watches
        self._gone = gone
        self._task: asyncio.Task[Any] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.fired = False
        self._closed = False

    async def __aenter__(self) -> DisconnectWatch:
        self._task = asyncio.current_task()
        if self._gone is not None:
            self._gone.listen(self._client_left)  # no watcher, ever: the server tells
        else:
            self._watches.add(self, asyncio.get_running_loop())
        return self

    def start_watching(self) -> None:
        if not self._closed:
            self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._client_left()

    def _client_left(self) -> None:
        if not self._closed and self._task is not None:
            self.fired = self._exchange.client_gone = True
            self._task.cancel()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._closed = True
        task, self._task = self._task, None
        if self._gone is not None:
            self._gone.listen(None)
        self._watches.discard(self)
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
