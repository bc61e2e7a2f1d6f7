"""The hot path: forward a request to its upstream and relay the answer back as bytes.

The request body goes upstream as the client sent it (only ``model`` rewritten when the upstream knows
the model by another id). The response, or each SSE event, comes back as the bytes the upstream sent.
A stream that fails after its first event ends with one SSE error event and no ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from anygate.accounting.service import Metering, tap_stream
from anygate.accounting.usage import extract_usage
from anygate.api.http import Receive, Scope, Send, parse_json_object, read_body, send_bytes
from anygate.auth import Principal
from anygate.errors import (
    GatewayError,
    InvalidRequest,
    MissingProviderKey,
    PermissionDenied,
    RouteNotFound,
    UpstreamStatusError,
)
from anygate.models import Target
from anygate.sse import EventSplitter, error_event
from anygate.upstream import UPSTREAM_ERRORS, backoff_delay, translate_client_error

if TYPE_CHECKING:
    from anygate.api.state import AppState
    from anygate.registry import ProviderRuntime

log = logging.getLogger("anygate.relay")

# Never sent upstream: hop-by-hop headers, the client's credentials, and what identifies the client.
DROPPED_HEADERS = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"accept-encoding",
        b"authorization",
        b"x-api-key",
        b"api-key",
        b"cookie",
        b"forwarded",
        b"x-real-ip",
        b"true-client-ip",
        b"x-client-ip",
        b"x-request-id",
        b"x-anygate-timeout",
    }
)
DROPPED_PREFIXES = (b"cf-", b"x-forwarded-", b"x-amzn-", b"x-envoy-")
PASSED_RESPONSE_HEADERS = frozenset(
    {b"content-type", b"retry-after", b"openai-processing-ms", b"openai-model", b"openai-version"}
)
PASSED_RESPONSE_PREFIXES = (b"x-ratelimit-",)
EVENT_STREAM = "text/event-stream"


@dataclass(slots=True)
class Exchange:
    """One request through the gateway, as metrics and the usage ledger see it."""

    request_id: str
    principal: Principal
    route: str
    started: float
    requested_model: str | None = None
    provider_id: str | None = None
    model: str | None = None
    status: int = 0
    stream: bool = False
    usage: dict[str, Any] | None = None
    first_byte_at: float | None = None
    error: str | None = None
    byok: bool = False
    metering: Metering | None = None  # accounting's state of this request (anygate.accounting.service)


def forwarded_headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in DROPPED_HEADERS or name.startswith(DROPPED_PREFIXES):
            continue
        headers[name.decode("latin-1")] = value.decode("latin-1")
    headers["accept-encoding"] = "identity"
    return headers


def response_headers(response: aiohttp.ClientResponse, request_id: bytes) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-request-id", request_id)]
    for name, value in response.raw_headers:
        lowered = name.lower()
        if lowered in PASSED_RESPONSE_HEADERS or lowered.startswith(PASSED_RESPONSE_PREFIXES):
            headers.append((lowered, value))
    return headers


class Relay:
    """Forwards model-routed and provider-scoped requests for one app."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    # ------------------------------------------------------------------------------ entry points

    async def model_route(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        body = await read_body(scope, receive, self.state.settings.max_body_bytes)
        payload = parse_json_object(body)
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            message = "Missing required parameter: 'model'" if model is None else "'model' must be a non-empty string"
            raise InvalidRequest(message, param="model", code="invalid_model")
        exchange.requested_model = model
        exchange.stream = payload.get("stream") is True
        targets = self.state.registry.resolve(model)
        allowed = [t for t in targets if exchange.principal.may_use(t.provider_id, t.model)]
        if not allowed:
            raise PermissionDenied(f"This key may not use model '{model}'", param="model", code="model_not_allowed")
        if self.state.accounting is not None:  # accounting: reserve (429), clamp max_tokens, ask stream usage
            body, payload = await self.state.accounting.before(exchange, body, payload, allowed[0])
        await self.dispatch(scope, send, exchange, allowed, body, payload)

    async def proxy_route(
        self, scope: Scope, receive: Receive, send: Send, exchange: Exchange, provider_id: str, endpoint: str
    ) -> None:
        runtime = self.state.registry.find(provider_id)
        method = scope["method"]
        if runtime is None or (method, endpoint) not in runtime.proxy_endpoints:
            raise RouteNotFound(scope["path"])
        if not exchange.principal.may_use(runtime.id, "*") and exchange.principal.providers is not None:
            raise PermissionDenied(f"This key may not use provider '{provider_id}'", code="provider_not_allowed")
        body = await read_body(scope, receive, self.state.settings.max_body_bytes) if method != "GET" else b""
        payload: dict[str, Any] = {}
        if body:
            payload = parse_json_object(body)
            exchange.requested_model = model = payload.get("model") if isinstance(payload.get("model"), str) else None
            exchange.stream = payload.get("stream") is True
            if model and not exchange.principal.may_use(runtime.id, model):
                raise PermissionDenied(f"This key may not use model '{model}'", param="model", code="model_not_allowed")
        target = Target(runtime.id, exchange.requested_model or "")
        if self.state.accounting is not None:  # accounting: reserve (429), clamp max_tokens, ask stream usage
            body, payload = await self.state.accounting.before(exchange, body, payload, target, endpoint)
        await self.attempt_target(scope, send, exchange, runtime, target, endpoint, body, payload, rewrite=False)

    # ------------------------------------------------------------------------------ dispatch loop

    async def dispatch(
        self,
        scope: Scope,
        send: Send,
        exchange: Exchange,
        targets: list[Target],
        body: bytes,
        payload: dict[str, Any],
    ) -> None:
        """Try each target in turn, retrying retryable failures with backoff, until one answers."""
        endpoint = exchange.route
        last_error: GatewayError | None = None
        for target in targets:
            runtime = self.state.registry.get(target.provider_id)
            for attempt in range(runtime.config.max_retries + 1):
                try:
                    await self.attempt_target(scope, send, exchange, runtime, target, endpoint, body, payload)
                    return
                except GatewayError as exc:
                    if exchange.first_byte_at is not None or not exc.retryable:
                        raise
                    last_error = exc
                    self.state.metrics.upstream_errors.labels(runtime.id, exc.code or "error").inc()
                    if attempt < runtime.config.max_retries:
                        await asyncio.sleep(backoff_delay(attempt))
        assert last_error is not None
        raise last_error

    async def attempt_target(
        self,
        scope: Scope,
        send: Send,
        exchange: Exchange,
        runtime: ProviderRuntime,
        target: Target,
        endpoint: str,
        body: bytes,
        payload: dict[str, Any],
        rewrite: bool = True,
    ) -> None:
        client = runtime.client
        caller_key = self.state.caller_key(exchange.principal, runtime.id)
        if caller_key is None and not client.is_configured:
            raise MissingProviderKey(runtime.id)
        exchange.byok = caller_key is not None
        exchange.provider_id, exchange.model = runtime.id, target.model
        upstream_body = body
        if rewrite and target.model != payload.get("model"):
            upstream_body = orjson.dumps({**payload, "model": target.model})
        response = await client.open(
            scope["method"], endpoint, upstream_body, forwarded_headers(scope), api_key=caller_key
        )
        try:
            if response.status >= 400:
                raise UpstreamStatusError(response.status, await self._read(runtime, response), _retry_after(response))
            if exchange.stream and response.content_type == EVENT_STREAM:
                await self.relay_stream(send, exchange, runtime, response)
            else:
                await self.relay_body(send, exchange, runtime, response)
        finally:
            response.release()

    async def _read(self, runtime: ProviderRuntime, response: aiohttp.ClientResponse) -> bytes:
        try:
            return await response.read()
        except UPSTREAM_ERRORS as exc:
            raise translate_client_error(exc, runtime.id) from exc

    # ------------------------------------------------------------------------------ relaying

    async def relay_body(
        self, send: Send, exchange: Exchange, runtime: ProviderRuntime, response: aiohttp.ClientResponse
    ) -> None:
        data = await self._read(runtime, response)
        exchange.first_byte_at = time.perf_counter()
        exchange.status = response.status
        exchange.usage = extract_usage(data)
        if exchange.usage is None and exchange.metering is not None:
            exchange.metering.unreported_body = data
        await send_bytes(send, response.status, data, response_headers(response, exchange.request_id.encode()))

    async def relay_stream(
        self, send: Send, exchange: Exchange, runtime: ProviderRuntime, response: aiohttp.ClientResponse
    ) -> None:
        headers = response_headers(response, exchange.request_id.encode())
        headers.append((b"cache-control", b"no-cache"))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        exchange.status = response.status
        splitter = EventSplitter()
        try:
            async for chunk in response.content.iter_any():
                events = splitter.feed(chunk)
                if not events:
                    continue
                if exchange.first_byte_at is None:
                    exchange.first_byte_at = time.perf_counter()
                events = tap_stream(exchange, events)
                await send({"type": "http.response.body", "body": b"".join(events), "more_body": True})
        except UPSTREAM_ERRORS as exc:
            failure = translate_client_error(exc, runtime.id)
            exchange.error = failure.code
            exchange.first_byte_at = exchange.first_byte_at or time.perf_counter()
            await send({"type": "http.response.body", "body": error_event(failure.body_bytes()), "more_body": False})
            return
        await send({"type": "http.response.body", "body": splitter.flush(), "more_body": False})


def _retry_after(response: aiohttp.ClientResponse) -> dict[str, str] | None:
    value = response.headers.get("retry-after")
    return {"retry-after": value} if value else None
