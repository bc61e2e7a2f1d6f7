"""``Gateway``: the ASGI app ``create_app(settings)`` makes. It owns its state from start-up to shutdown.

Its lifespan builds the ``AppState`` and the edge (``api/edge.py``) at start-up, and at shutdown lets the
requests the drain cancelled answer and settle, writes the ledger's last batch, stops the background work
and closes the store and the transport. Every HTTP request goes through the edge; anything else (a
websocket) to the management app, which answers it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from anygate.accounting.budgets import BudgetSource
from anygate.api.edge import InFlight, build_edge
from anygate.api.http import ASGIApp, Receive, Scope, Send
from anygate.api.state import AppState
from anygate.app.startup import build_state, start_background
from anygate.app.store_sync import StoreSync
from anygate.settings import Settings
from anygate.telemetry import flush_logs
from anygate.transport import Transport

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("anygate.app")

# The web console's static files ship inside the package; ``/ui`` redirects to ``/ui/``.
CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
# At shutdown, how long requests the server has just cancelled (the drain's grace period is over) may
# take to answer and settle their accounting before the ledger's last batch is written.
SETTLE_WAIT_SECONDS = 5.0
# The collector's thresholds once started (young generation, then how many of its collections make one of the
# next): Python's default is (700, 10, 10).
GC_THRESHOLDS = (10_000, 10, 10)


class Gateway:
    def __init__(
        self, settings: Settings, transport: Transport | None = None, budget_source: BudgetSource | None = None
    ) -> None:
        self.settings = settings
        self._transport = transport  # None: the network's (made at start-up)
        # Who has which budget; None: the budgets the store puts on each key (tests give their own).
        self.budget_source = budget_source
        self.management = ManagementOnDemand(settings.metrics_public)
        self._in_flight = InFlight()
        self._state: AppState | None = None
        self._store_sync: StoreSync | None = None
        self._edge: ASGIApp | None = None

    def __repr__(self) -> str:
        return f"Gateway(started={self._state is not None})"

    @property
    def state(self) -> AppState:
        if self._state is None:
            raise RuntimeError("the gateway has not started")
        return self._state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            assert self._edge is not None, "requests arrive only after the lifespan's start-up"
            await self._edge(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        else:
            await self.management(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        transport = self._transport or network_transport()
        state, store_sync = await build_state(self.settings, transport, self.budget_source)
        self._state = state
        self.management.state = state
        self._edge = build_edge(state, self.management, self._in_flight)
        self._store_sync = store_sync
        await start_background(state, store_sync)
        # What start-up made lives as long as the process: keep the collector from walking it again and
        # again under load (a full collection over it is a pause every request in flight waits for). Its
        # garbage is collected first: frozen, it would never be.
        gc.collect()
        gc.freeze()
        # A request allocates a few hundred objects, most of them gone when it ends: at the default threshold
        # (700) the young generation is collected every couple of requests, each time walking the objects of
        # the requests still in flight and promoting them to be walked again. Collected ten times less often,
        # the collector's share of a request's CPU falls from about a tenth to a few percent (docs/benchmarks.md).
        gc.set_threshold(*GC_THRESHOLDS)

    async def shutdown(self) -> None:
        state, store_sync = self._state, self._store_sync
        if state is None or store_sync is None:
            return
        if not await self._in_flight.wait(SETTLE_WAIT_SECONDS):
            log.error("requests still unsettled at shutdown", extra={"fields": {"requests": self._in_flight.count}})
        await state.accounting.close()  # the ledger's last batch, before the background work stops
        await state.background.stop()
        if state.tracing is not None:
            await asyncio.to_thread(state.tracing.shutdown)  # the last spans, exported (blocking I/O)
        await state.transport.aclose()
        await store_sync.close()
        await state.store.close()
        flush_logs()


class ManagementOnDemand:
    """The management app (``api/management.py``: FastAPI, the request models, the OpenAPI document and the
    console's files), made for the first request that is not a model request. A gateway that only serves
    model requests never imports FastAPI: ~12 MiB of memory it does not hold (docs/benchmarks.md)."""

    def __init__(self, metrics_public: bool) -> None:
        self.metrics_public = metrics_public
        self.state: AppState | None = None  # set at start-up, before any request
        self._app: FastAPI | None = None
        self._building = asyncio.Lock()

    def __repr__(self) -> str:
        return f"ManagementOnDemand(built={self._app is not None})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if app is None:
            async with self._building:
                if self._app is None:
                    # Importing and building take a moment: in a thread, so model requests go on meanwhile.
                    self._app = await asyncio.to_thread(self.build)
            app = self._app
        await app(scope, receive, send)

    def build(self) -> FastAPI:
        from starlette.staticfiles import StaticFiles

        from anygate.api.management import build_management_app

        app = build_management_app(self.metrics_public)
        app.mount("/ui", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")
        app.state.anygate = self.state
        return app


def network_transport() -> Transport:
    from anygate.transport.network import NetworkTransport

    return NetworkTransport()


def create_app(
    settings: Settings, transport: Transport | None = None, budget_source: BudgetSource | None = None
) -> Gateway:
    """The gateway. ``transport`` replaces the network under every upstream (tests use an in-memory one);
    ``budget_source`` replaces the budgets the store keeps (tests give fixed ones)."""
    return Gateway(settings, transport, budget_source)
