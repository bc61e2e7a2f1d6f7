"""The FastAPI application for everything off the hot path, with errors mapped to the OpenAI shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from anygate import __version__
from anygate.api import (
    routes_audit,
    routes_creds,
    routes_info,
    routes_keys,
    routes_litellm,
    routes_providers,
    routes_quota,
    routes_reissue,
    routes_requests,
    routes_signin,
    routes_teams,
    routes_users,
)
from anygate.api.openapi import build_openapi
from anygate.errors import GatewayError, MethodNotAllowed, NotFound, RouteNotFound, ServiceUnavailable
from anygate.management.validation import describe_validation
from anygate.store.crypto import SecretKeyError


def error_response(error: GatewayError) -> Response:
    return Response(error.body_bytes(), status_code=error.status, media_type="application/json", headers=error.headers)


async def on_gateway_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def on_unexpected_error(_: Request, exc: Exception) -> Response:
    # Starlette sends this answer and re-raises; the edge logs the exception once.
    return error_response(GatewayError("Internal error"))


async def on_secret_key_error(_: Request, exc: Exception) -> Response:
    # A stored secret this worker cannot decrypt (a replica with another ANYGATE_SECRET_KEY): say so.
    assert isinstance(exc, SecretKeyError)
    return error_response(ServiceUnavailable(str(exc), code="secret_key_mismatch"))


async def on_validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(describe_validation(exc.errors()))


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response(RouteNotFound(request.url.path))
    if exc.status_code == 405:
        allowed = allowed_methods(request, exc.headers or {})
        return error_response(MethodNotAllowed(request.method, request.url.path, allowed))
    error = GatewayError(str(exc.detail))
    error.status = exc.status_code
    return error_response(error)


def allowed_methods(request: Request, headers: Mapping[str, str]) -> set[str]:
    """Every method some route answers at this path (Starlette's ``Allow`` names only the first route's,
    and a path such as ``/v1/keys`` has one route per method), with the ``Allow`` the answerer gave."""
    given = {m.strip() for m in headers.get("Allow", headers.get("allow", "")).split(",") if m.strip()}
    path = request.url.path
    matching = [
        route
        for route in iter_route_contexts(request.app.routes)
        if route.path and route.methods and compile_path(route.path)[0].match(path)
    ]
    # A path spelled out by a route (``/v1/providers/health-check``) is that resource, not an id of the
    # routes with a parameter that also match it.
    literal = [route for route in matching if route.path == path]
    for route in literal or matching:
        given |= route.methods or set()
    return given


class ShadowedPaths:
    """A path a route spells out (``/v1/providers/health-check``) is that resource, even where a route with a
    parameter (``/v1/providers/{provider_id}``) matches it too: asked with a method only the other answers,
    it is a 405 naming its own methods, not a request about a provider called ``health-check``."""

    def __init__(self, app: ASGIApp, routes_of: FastAPI) -> None:
        self.app = app
        self._routes_of = routes_of
        self._allowed: dict[str, set[str]] | None = None  # made at the first request, once every route is in

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            allowed = self.shadowed().get(scope["path"])
            if allowed is not None and scope["method"] not in allowed:
                refusal = MethodNotAllowed(scope["method"], scope["path"], allowed)
                await error_response(refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def shadowed(self) -> dict[str, set[str]]:
        """Each literal path some route with a parameter also matches, with the methods its own routes take."""
        if self._allowed is None:
            routes = [
                (route.path, route.methods)
                for route in iter_route_contexts(self._routes_of.routes)
                if route.path and route.methods
            ]
            patterns = [compile_path(path)[0] for path, _ in routes if "{" in path]
            allowed: dict[str, set[str]] = {}
            for path, methods in routes:
                if "{" not in path and any(pattern.match(path) for pattern in patterns):
                    allowed.setdefault(path, set()).update(methods)
            self._allowed = allowed
        return self._allowed


class ManagementApp(FastAPI):
    metrics_public = True  # whether the document says /metrics needs no key

    def openapi(self) -> dict[str, Any]:
        return build_openapi(self, self.metrics_public)


def build_management_app(metrics_public: bool = True) -> FastAPI:
    app = ManagementApp(
        title="anygate",
        version=__version__,
        description="One OpenAI-compatible API in front of any OpenAI-compatible upstream.",
        docs_url="/docs",
        redoc_url=None,
    )
    app.metrics_public = metrics_public
    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(SecretKeyError, on_secret_key_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected_error)
    app.include_router(routes_info.router)
    for module in (
        routes_providers,
        routes_keys,
        routes_users,
        routes_teams,
        routes_reissue,
        routes_audit,
        routes_creds,
    ):
        app.include_router(module.router)
    app.include_router(routes_quota.router)
    app.include_router(routes_requests.router)
    app.include_router(routes_litellm.router)
    app.include_router(routes_signin.router)
    app.add_middleware(ShadowedPaths, routes_of=app)
    return app


__all__ = ["build_management_app", "error_response", "NotFound"]
