"""The edge: the pure-ASGI layers every HTTP request passes, in this order, then the router.

  1. request id  taken from ``x-request-id`` when sane, else made; in every log line and response
     (tracing    an OpenTelemetry server span, only when tracing is on: ``api/tracing_layer.py``)
  2. access      one access line and the request metrics when the request ends (``api/access.py``)
  3. accounting  a model request is recorded in the ledger and settled, however it ended
  4. errors      a GatewayError becomes the OpenAI error shape (Anthropic's for a request in the Anthropic
                 API: ``api/dialects.py``); anything else a logged 500
  5. auth        deny by default: every route but the public ones needs a key, or a console session (a
                 sealed cookie, ``signin/``) whose state-changing requests carry its CSRF token
  6. router      the model routes and ``/proxy`` as raw ASGI (``api/model_routes.py``); everything else
                 the management app, its body read whole and capped. ``/openai/v1/...`` and
                 ``/anthropic/v1/...`` are the routes of ``/v1/...``

Bodies are capped while they are read (413), on both sides of the router. The layers share one
``RequestContext`` per request, kept in the ASGI scope.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from anygate.accounting.service import Accounting
from anygate.api.access import observe
from anygate.api.dialects import COUNT_TOKENS_PATH, LEGACY_PREFIXES, send_error_in_dialect, without_legacy_prefix
from anygate.api.headers import answer_error_headers, relative_locations, security_headers
from anygate.api.http import (
    PRINCIPAL_SCOPE_KEY,
    ASGIApp,
    ClientDisconnected,
    Message,
    Receive,
    Scope,
    Send,
    buffered_json_request,
)
from anygate.api.model_routes import ModelCall, ModelRoutes
from anygate.api.sessions import SESSION_SCOPE_KEY, check_csrf, session_cookie
from anygate.api.state import AppState
from anygate.api.tracing_layer import TracingLayer
from anygate.auth import KeyRing, Principal, extract_token
from anygate.errors import AuthenticationFailed, GatewayError, MethodNotAllowed
from anygate.exchange import Exchange
from anygate.signin.service import SignIn
from anygate.telemetry import REQUEST_ID

log = logging.getLogger("anygate.access")

CONTEXT_KEY = "anygate.request"
MODEL_ROUTES = {
    "/v1/chat/completions": "chat/completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
}
HEALTH_PATH = "/health"
READY_PATH = "/health/ready"
# GET answered by the router, not the management app (``/health/ready`` for all but the admin, whose answer
# has the detail the management app gives)
SIMPLE_ROUTES = frozenset({HEALTH_PATH, READY_PATH, "/metrics"})
HEALTHY = b'{"status":"ok"}'
READY = b'{"status":"ready"}'
NOT_READY = b'{"status":"not_ready"}'
JSON_TYPE = b"application/json"
METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
PUBLIC_PATHS = frozenset(
    {
        "/",
        "/health",
        "/health/ready",
        "/openapi.json",
        "/docs",
        "/auth/oidc",
        "/auth/oidc/login",
        "/auth/oidc/callback",
        "/auth/session",
        "/auth/session/logout",
    }
)
PUBLIC_PREFIXES = ("/ui",)
ISSUER_REDIRECT_PATH = "/auth/oidc/login"
PROXY_PATH = re.compile(r"^/proxy/([^/]+)/v1/(.+)$")
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(slots=True)
class RequestContext:
    """One HTTP request as the layers see it."""

    request_id: str
    started: float  # time.perf_counter()
    principal: Principal | None = None
    status: int = 0  # the response's, once it has started
    call: ModelCall | None = None  # a model request: its record and accounting

    @property
    def has_answered(self) -> bool:
        """Whether a response has started: then an error can no longer be sent as JSON."""
        if self.call is not None:
            return self.call.exchange.has_answered
        return self.status != 0


def context_of(scope: Scope) -> RequestContext:
    context: RequestContext = scope[CONTEXT_KEY]
    return context


class RequestIds:
    """Unique request ids, cheaply: a random per-process prefix and a counter (uuid4 costs more)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):08x}"


class InFlight:
    """Model requests not yet settled, so that shutdown can wait for their accounting."""

    __slots__ = ("count", "_settled")

    def __init__(self) -> None:
        self.count = 0
        self._settled = asyncio.Event()

    def started(self) -> None:
        self.count += 1

    def finished(self) -> None:
        self.count -= 1
        if not self.count:
            self._settled.set()

    async def wait(self, timeout: float) -> bool:
        """Wait until none is in flight; False when some still are after ``timeout`` seconds."""
        if not self.count:
            return True
        self._settled.clear()
        try:
            await asyncio.wait_for(self._settled.wait(), timeout=timeout)
        except TimeoutError:
            return False
        return True


# ------------------------------------------------------------------------------------------ the layers


class RequestIdLayer:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = RequestContext(self._request_id(scope), time.perf_counter())
        scope[CONTEXT_KEY] = context
        token = REQUEST_ID.set(context.request_id)
        try:
            await self.app(scope, receive, send)
        finally:
            REQUEST_ID.reset(token)

    def _request_id(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate: str = value.decode("latin-1")
                if SANE_REQUEST_ID.match(candidate):
                    return candidate
        return self._ids.next()


class AccessLayer:
    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            context = context_of(scope)
            exchange = context.call.exchange if context.call is not None else None
            observe(self.state, scope, time.perf_counter() - context.started, exchange, context.status)


class AccountingLayer:
    def __init__(self, app: ASGIApp, accounting: Accounting, in_flight: InFlight) -> None:
        self.app = app
        self.accounting = accounting
        self.in_flight = in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            call = context_of(scope).call
            if call is not None:
                try:
                    await self.accounting.settle(call.exchange, call.ticket)
                finally:
                    self.in_flight.finished()


class ErrorsLayer:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = context_of(scope)
        try:
            await self.app(scope, receive, send)
        except GatewayError as error:
            await self._answer(scope, context, send, error)
        except ClientDisconnected:
            self._record(context, 499, None)  # the ledger and metrics record that the client left
        except Exception:
            log.exception("unhandled error")
            await self._answer(scope, context, send, GatewayError("Internal error"))

    async def _answer(self, scope: Scope, context: RequestContext, send: Send, error: GatewayError) -> None:
        answered = context.has_answered
        self._record(context, error.status, error.code)
        if not answered:
            error.headers["x-request-id"] = context.request_id
            call = context.call
            if call is not None or error.status == 429:
                answer_error_headers(error, call.ticket.admission if call is not None and call.ticket else None)
            await send_error_in_dialect(scope, send, error)

    @staticmethod
    def _record(context: RequestContext, status: int, code: str | None) -> None:
        context.status = status
        if context.call is not None:
            context.call.exchange.status, context.call.exchange.error = status, code


class AuthLayer:
    """A key in the headers wins; without one, a console session's cookie (read without I/O: a sealed
    payload, and the caller from the key ring's cache), whose state-changing requests must prove they come
    from the console (``api/sessions.check_csrf``)."""

    def __init__(self, app: ASGIApp, keyring: KeyRing, public: frozenset[str], signin: SignIn | None) -> None:
        self.app = app
        self.keyring = keyring
        self.public = public
        self.signin = signin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        token = extract_token(scope["headers"])
        principal = self.keyring.authenticate(token)
        if token is None and self.signin is not None:
            cookie = session_cookie(scope["headers"])
            session = self.signin.read_session(cookie) if cookie is not None else None
            if session is not None:
                signed_in = self.keyring.signed_in(session.user_id)
                if signed_in is not None:
                    check_csrf(scope, session)
                    principal = signed_in
                    scope[SESSION_SCOPE_KEY] = session
        if principal is None and path not in self.public and not path.startswith(PUBLIC_PREFIXES):
            raise AuthenticationFailed("Missing or invalid API key")
        context_of(scope).principal = principal
        await self.app(scope, receive, send)


class Router:
    def __init__(self, state: AppState, management: ASGIApp, in_flight: InFlight) -> None:
        self.state = state
        self.management = management
        self.in_flight = in_flight
        self.routes = ModelRoutes(state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        route = MODEL_ROUTES.get(path)
        if route is None and path.startswith(LEGACY_PREFIXES):
            scope = without_legacy_prefix(scope)
            path = scope["path"]
            route = MODEL_ROUTES.get(path)
        proxied = PROXY_PATH.match(path) if route is None else None
        if route is None and proxied is None:
            if path == COUNT_TOKENS_PATH:
                await self._count_tokens(scope, receive, send)
            elif path in SIMPLE_ROUTES and scope["method"] == "GET" and not self._wants_detail(scope, path):
                await self._answer_simply(scope, send, path)
            else:
                await self._management(scope, receive, send)
            return
        context = context_of(scope)
        assert context.principal is not None  # the auth layer let no anonymous request through
        if context.principal.via_session:
            raise AuthenticationFailed("Model requests need an API key; a console session is for the console")
        exchange = Exchange(context.request_id, context.principal, route or "proxy", context.started)
        context.call = call = ModelCall(exchange)
        self.in_flight.started()
        if route is not None:
            if scope["method"] != "POST":
                raise MethodNotAllowed(scope["method"], path, ("POST",))
            await self.routes.model_route(scope, receive, send, call)
        else:
            assert proxied is not None
            await self.routes.proxy_route(scope, receive, send, call, proxied.group(1), proxied.group(2))

    async def _count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = context_of(scope)
        assert context.principal is not None  # the auth layer let no anonymous request through
        if context.principal.via_session:
            raise AuthenticationFailed("Model requests need an API key; a console session is for the console")
        if scope["method"] != "POST":
            raise MethodNotAllowed(scope["method"], scope["path"], ("POST",))
        await self.routes.count_tokens(scope, receive, send, context.principal, context.request_id)
        context.status = 200

    @staticmethod
    def _wants_detail(scope: Scope, path: str) -> bool:
        """The admin's ``/health/ready`` names every check and provider: the management app answers it."""
        principal = context_of(scope).principal
        return path == READY_PATH and principal is not None and principal.is_admin

    async def _answer_simply(self, scope: Scope, send: Send, path: str) -> None:
        """``GET /health``, ``/health/ready`` (naming nothing) and ``/metrics``, answered as the management app
        answers them (which still documents them): a liveness or readiness probe or a Prometheus scrape never
        has that app made (``ManagementOnDemand``). Who may read them the auth layer has decided already, as
        for the management app."""
        context = context_of(scope)
        status = 200
        if path == HEALTH_PATH:
            body, content_type = HEALTHY, JSON_TYPE
        elif path == READY_PATH:
            checks = await self.state.readiness.check()
            ready = all(check == "ok" for check in checks.values())
            body, content_type, status = (READY, JSON_TYPE, 200) if ready else (NOT_READY, JSON_TYPE, 503)
        else:
            body, content_type = self.state.metrics.render(), METRICS_TYPE
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", content_type)]
        headers += [(b"x-request-id", context.request_id.encode()), *security_headers(path)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        context.status = status

    async def _management(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = context_of(scope)
        scope[PRINCIPAL_SCOPE_KEY] = context.principal
        # Bodies capped like the model routes' (413), and taken as JSON whatever their content type.
        scope, receive = await buffered_json_request(scope, receive, self.state.settings.max_body_bytes)
        extra = [(b"x-request-id", context.request_id.encode()), *security_headers(scope["path"])]
        # The one redirect to another site: sign-in's, to the issuer's authorization endpoint (from its
        # discovery document, never from the request).
        to_issuer = scope["path"] == ISSUER_REDIRECT_PATH

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                message["headers"] = [*(headers if to_issuer else relative_locations(headers)), *extra]
                context.status = message["status"]
            await send(message)

        await self.management(scope, receive, send_with_id)


def build_edge(state: AppState, management: ASGIApp, in_flight: InFlight) -> ASGIApp:
    """The layers above, outermost first, around the router."""
    public = PUBLIC_PATHS | ({"/metrics"} if state.settings.metrics_public else frozenset())
    app: Any = Router(state, management, in_flight)
    app = AuthLayer(app, state.keyring, public, state.signin)
    app = ErrorsLayer(app)
    app = AccountingLayer(app, state.accounting, in_flight)
    app = AccessLayer(app, state)
    if state.tracing is not None:  # absent, not idle, when tracing is off
        app = TracingLayer(app, state.tracing, state.registry, context_of)
    app = RequestIdLayer(app)
    edge: ASGIApp = app
    return edge
