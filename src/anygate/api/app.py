"""The ASGI application: one edge in front of the hot routes and the management app.

Every HTTP request passes these layers, in this order:
  1. errors      a GatewayError becomes the OpenAI error shape; anything else a logged 500
  2. request id  taken from ``x-request-id`` when sane, else made; in every log line and response
  3. metrics/log one access line and the request metrics when the request ends
  4. auth        deny by default: every route but ``PUBLIC_PATHS`` needs a key
  5. body limit  enforced while reading (hot routes) and by ``max_body_bytes``
  6. router      the hot routes here, as raw ASGI; everything else in the FastAPI management app
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from anygate.accounting.budgets import BudgetSource
from anygate.accounting.lifecycle import settle_exchange, start_accounting
from anygate.api.deps import PRINCIPAL_SCOPE_KEY
from anygate.api.headers import relative_locations, security_headers
from anygate.api.http import ClientDisconnected, Message, Receive, Scope, Send, buffered_json_request, send_error
from anygate.api.management import build_management_app
from anygate.api.relay import Exchange, Relay
from anygate.api.state import AppState
from anygate.auth import KeyRing, Principal, extract_token, hash_key, stored_admin_digest
from anygate.errors import AuthenticationFailed, GatewayError
from anygate.registry import ProviderRegistry
from anygate.settings import Settings
from anygate.telemetry import REQUEST_ID, Metrics
from anygate.upstream import UpstreamPool

log = logging.getLogger("anygate.access")

MODEL_ROUTES = {
    "/v1/chat/completions": "chat/completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "responses",
}
PUBLIC_PATHS = frozenset({"/health", "/health/ready", "/openapi.json", "/docs"})
PUBLIC_PREFIXES = ("/ui",)
PROXY_PATH = re.compile(r"^/proxy/([^/]+)/v1/(.+)$")
UNLISTED_MODEL = "unlisted"
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# The web console's static files ship inside the package; ``/ui`` redirects to ``/ui/``.
CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
# At shutdown, how long requests the server has just cancelled (the drain's grace period is over) may
# take to answer and settle their accounting before the ledger's last batch is written.
SETTLE_WAIT_SECONDS = 5.0


class RequestIds:
    """Unique request ids, cheaply: a random per-process prefix and a counter (uuid4 costs more)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):08x}"


class Gateway:
    """``create_app(settings)``'s result: an ASGI app that owns its state from startup to shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.management: FastAPI = build_management_app()
        self.management.mount("/ui", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")
        self._state: AppState | None = None
        self._relay: Relay | None = None
        self._request_ids = RequestIds()
        # Who has which budget; None: the budgets the store puts on each Principal.
        self.budget_source: BudgetSource | None = None
        self._public = PUBLIC_PATHS | ({"/metrics"} if settings.metrics_public else frozenset())
        self._in_flight = 0  # model and proxy requests not yet settled
        self._settled = asyncio.Event()  # set whenever none is in flight

    @property
    def state(self) -> AppState:
        if self._state is None:
            raise RuntimeError("the gateway has not started")
        return self._state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.handle_http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        else:
            await self.management(scope, receive, send)

    # ------------------------------------------------------------------------------ lifespan

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
        settings = self.settings
        admin_digest = hash_key(settings.admin_key.get_secret_value()) if settings.admin_key else None
        keyring = KeyRing(admin_digest or stored_admin_digest(settings.data_dir), no_auth=settings.no_auth)
        pool = UpstreamPool()
        state = AppState(settings, pool, ProviderRegistry(settings, pool), keyring, Metrics())
        self._state = state
        self._relay = Relay(state)
        self.management.state.anygate = state
        await self._open_store(state)
        state.adopt(await state.registry.discover_at_start())
        state.spawn(state.registry.refresh_forever(settings.discovery_interval), "model-discovery")
        if settings.routing.health_check_interval > 0:
            state.spawn(check_health_forever(state, settings.routing.health_check_interval), "health-checks")
        await start_accounting(state, self.budget_source)
        # What start-up made lives as long as the process: keep the collector from walking it again and
        # again under load (a full collection over it is a pause every request in flight waits for).
        gc.freeze()

    async def _open_store(self, state: AppState) -> None:
        """Open (and migrate) the store, fill the caches from it, and keep them fresh in the background."""
        from anygate.store.notify import ChangeNotifier
        from anygate.store.store import open_store
        from anygate.store.sync import StoreSync

        state.store = await open_store(self.settings)
        notifier = None
        if self.settings.redis_url:
            notifier = ChangeNotifier(self.settings.redis_url, self.settings.resolved_database_url)
        state.store_sync = sync = StoreSync(state.store, state, notifier)
        await sync.refresh()
        state.readiness_probes["store"] = state.store.db.ping
        state.readiness_probes["secrets"] = sync.check_secrets
        state.spawn(sync.poll_forever(self.settings.store_poll_interval), "store-sync")
        if notifier is not None:
            state.spawn(notifier.listen_forever(sync.refresh_safely), "store-notify")

    async def shutdown(self) -> None:
        if self._state is not None:
            await self._wait_for_requests()
            if self._state.accounting is not None:
                await self._state.accounting.close()  # the ledger's last batch, before tasks stop
            await self._state.stop()

    async def _wait_for_requests(self) -> None:
        """Let requests cancelled at the end of the drain send their last bytes and settle."""
        if self._in_flight:
            self._settled.clear()
            try:
                await asyncio.wait_for(self._settled.wait(), timeout=SETTLE_WAIT_SECONDS)
            except TimeoutError:
                log.error("requests still unsettled at shutdown", extra={"fields": {"requests": self._in_flight}})

    # ------------------------------------------------------------------------------ the edge

    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = self._request_id(scope)
        token = REQUEST_ID.set(request_id)
        path: str = scope["path"]
        exchange: Exchange | None = None
        status_holder = [0]
        try:
            principal = self._authenticate(scope, path)
            route = MODEL_ROUTES.get(path)
            proxied = PROXY_PATH.match(path) if route is None else None
            if route is not None or proxied is not None:
                assert principal is not None
                exchange = Exchange(request_id, principal, route or "proxy", started)
                self._in_flight += 1
                await self._hot(scope, receive, send, exchange, route, proxied)
            else:
                await self._management(scope, receive, send, principal, request_id, status_holder)
        except GatewayError as error:
            answered = self._has_answered(exchange, status_holder)
            status_holder[0] = error.status
            if exchange is not None:
                exchange.status, exchange.error = error.status, error.code
            if not answered:
                error.headers["x-request-id"] = request_id
                await send_error(send, error)
        except ClientDisconnected:
            status_holder[0] = 499
            if exchange is not None:
                exchange.status = 499  # the ledger and metrics record that the client left
        except Exception:
            log.exception("unhandled error")
            answered = self._has_answered(exchange, status_holder)
            status_holder[0] = 500
            if not answered:
                await send_error(send, GatewayError("Internal error", headers={"x-request-id": request_id}))
        finally:
            if exchange is not None:
                await self._settle(exchange)
            self._observe(scope, started, exchange, status_holder[0])
            REQUEST_ID.reset(token)

    async def _settle(self, exchange: Exchange) -> None:
        try:
            if self._state is not None and self._state.accounting is not None:
                await settle_exchange(self._state.accounting, exchange)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._settled.set()

    @staticmethod
    def _has_answered(exchange: Exchange | None, status_holder: list[int]) -> bool:
        """Whether a response has started: then an error can no longer be sent as JSON."""
        if exchange is not None:
            return exchange.first_byte_at is not None
        return status_holder[0] != 0

    def _request_id(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate: str = value.decode("latin-1")
                if SANE_REQUEST_ID.match(candidate):
                    return candidate
        return self._request_ids.next()

    def _authenticate(self, scope: Scope, path: str) -> Principal | None:
        if path in self._public or path.startswith(PUBLIC_PREFIXES):
            return self.state.keyring.authenticate(extract_token(scope["headers"]))
        principal = self.state.keyring.authenticate(extract_token(scope["headers"]))
        if principal is None:
            raise AuthenticationFailed("Missing or invalid API key")
        return principal

    async def _hot(
        self, scope: Scope, receive: Receive, send: Send, exchange: Exchange, route: str | None, proxied: Any
    ) -> None:
        assert self._relay is not None
        if route is not None:
            if scope["method"] != "POST":
                raise_method_not_allowed(scope)
            await self._relay.model_route(scope, receive, send, exchange)
        else:
            provider_id, endpoint = proxied.group(1), proxied.group(2)
            await self._relay.proxy_route(scope, receive, send, exchange, provider_id, endpoint)

    async def _management(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        principal: Principal | None,
        request_id: str,
        status: list[int],
    ) -> None:
        scope[PRINCIPAL_SCOPE_KEY] = principal
        # Bodies capped like the hot routes' (413), and taken as JSON whatever their content type.
        scope, receive = await buffered_json_request(scope, receive, self.settings.max_body_bytes)
        extra = [(b"x-request-id", request_id.encode()), *security_headers(scope["path"])]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*relative_locations(message.get("headers", [])), *extra]
                status[0] = message["status"]
            await send(message)

        await self.management(scope, receive, send_with_id)

    def _observe(self, scope: Scope, started: float, exchange: Exchange | None, status: int) -> None:
        elapsed = time.perf_counter() - started
        metrics = self.state.metrics if self._state is not None else None
        if exchange is not None:
            status = exchange.status or status
            if metrics is not None:
                self._measure(metrics, exchange, status, elapsed)
            fields = {
                "provider": exchange.provider_id or "",
                "model": exchange.model or "",
                "key": exchange.principal.key_id,
                "stream": exchange.stream,
            }
            if exchange.error is not None:
                fields["error"] = exchange.error
        else:
            if metrics is not None:
                metrics.requests.labels("management", "", "", str(status)).inc()
            fields = {}
        if log.isEnabledFor(logging.INFO):
            line = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                **fields,
            }
            # One access line a request: made and handled directly, without logging's search of the
            # stack for the caller (a third of a line's cost, and the formatter shows no caller).
            log.handle(log.makeRecord(log.name, logging.INFO, "", 0, "request", (), None, extra={"fields": line}))

    def _measure(self, metrics: Metrics, exchange: Exchange, status: int, elapsed: float) -> None:
        provider, model = exchange.provider_id or "", self._model_label(exchange)
        status_label = str(status)
        requests, latency = metrics.request_series(exchange.route, provider, model, status_label)
        requests.inc()
        latency.observe(elapsed)
        if exchange.stream and exchange.first_byte_at is not None:
            metrics.time_to_first_token.labels(provider, model).observe(exchange.first_byte_at - exchange.started)
        self._count_tokens(metrics, exchange, provider, model)

    def _model_label(self, exchange: Exchange) -> str:
        """The model as a metric label: a model its provider lists, else ``unlisted``. A client may send
        any name (through ``/proxy``, or to a provider whose list is unknown); label values must stay few."""
        if not exchange.model or not exchange.provider_id:
            return ""
        if self.state.registry.index.lists_model(exchange.provider_id, exchange.model):
            return exchange.model
        return UNLISTED_MODEL

    @staticmethod
    def _count_tokens(metrics: Metrics, exchange: Exchange, provider: str, model: str) -> None:
        usage = exchange.usage
        if not usage:
            return
        for field, direction in (("prompt_tokens", "input"), ("completion_tokens", "output")):
            value = usage.get(field)
            if isinstance(value, int) and value > 0:
                metrics.token_counter(provider, model, direction).inc(value)


async def check_health_forever(state: AppState, interval: float) -> None:
    """Active health: probe every provider's model list (no request is charged to any key)."""
    while True:
        await asyncio.sleep(interval)
        await state.check_providers()


def raise_method_not_allowed(scope: Scope) -> None:
    from anygate.errors import RouteNotFound

    raise RouteNotFound(f"{scope['method']} {scope['path']}")


def create_app(settings: Settings) -> Gateway:
    return Gateway(settings)
