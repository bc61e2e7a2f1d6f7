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
from typing import TYPE_CHECKING, Any, NoReturn

import aiohttp
import orjson

from anygate.accounting.service import Metering, tap_stream
from anygate.api.http import ClientDisconnected, Receive, Scope, Send, header, parse_json_object, read_body, send_bytes
from anygate.api.rewrite import replace_model
from anygate.auth import Principal
from anygate.errors import (
    AllDeploymentsFailed,
    GatewayError,
    InvalidRequest,
    MissingProviderKey,
    ModelNotFound,
    PermissionDenied,
    RouteNotFound,
    UpstreamStatusError,
    UpstreamUnavailable,
)
from anygate.routing import Action, Deployment, classify, retry_after_seconds
from anygate.sse import EventSplitter, error_event, is_done
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
    attempts: int = 0
    metering: Metering | None = None  # accounting's state of this request (anygate.accounting.service)


def forwarded_headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    connection_tokens: frozenset[bytes] = frozenset()
    for name, value in scope["headers"]:
        if name == b"connection":
            # Headers the client names in Connection are hop-by-hop too (RFC 9110, 7.6.1).
            connection_tokens = frozenset(token.strip().lower() for token in value.split(b","))
        if name in DROPPED_HEADERS or name.startswith(DROPPED_PREFIXES):
            continue
        headers[name.decode("latin-1")] = value.decode("latin-1")
    for token in connection_tokens:
        headers.pop(token.decode("latin-1"), None)
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
        self.book = state.health

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
        groups = self.plan(model, exchange.principal)
        if self.state.accounting is not None:  # accounting: reserve (429), clamp max_tokens, ask stream usage
            first = groups[0][0] if groups and groups[0] else None
            body, payload = await self.state.accounting.before(exchange, body, payload, first)
        request = UpstreamRequest(scope, exchange.route, body, payload, self.request_timeout(scope, exchange))
        async with DisconnectWatch(receive):
            await self.dispatch(request, send, exchange, groups)

    async def proxy_route(
        self, scope: Scope, receive: Receive, send: Send, exchange: Exchange, provider_id: str, endpoint: str
    ) -> None:
        runtime = self.state.registry.find(provider_id)
        method = scope["method"]
        if runtime is None or (method, endpoint) not in runtime.proxy_endpoints:
            raise RouteNotFound(scope["path"])
        if not exchange.principal.may_use_provider(runtime.id):
            raise PermissionDenied(f"This key may not use provider '{provider_id}'", code="provider_not_allowed")
        body = await read_body(scope, receive, self.state.settings.max_body_bytes) if method != "GET" else b""
        payload: dict[str, Any] = parse_json_object(body) if body else {}
        model = payload.get("model")
        if isinstance(model, str):
            exchange.requested_model = model
            if not exchange.principal.may_use(runtime.id, model):
                raise PermissionDenied(f"This key may not use model '{model}'", param="model", code="model_not_allowed")
        exchange.stream = payload.get("stream") is True
        deployments = self.deployments_of(runtime, model if isinstance(model, str) else "")
        if self.state.accounting is not None:  # accounting: reserve (429), clamp max_tokens, ask stream usage
            body, payload = await self.state.accounting.before(exchange, body, payload, deployments[0], endpoint)
        request = UpstreamRequest(scope, endpoint, body, payload, self.request_timeout(scope, exchange), rewrite=False)
        async with DisconnectWatch(receive):
            await self.dispatch(request, send, exchange, [deployments])

    # ------------------------------------------------------------------------------ planning

    def plan(self, model: str, principal: Principal) -> list[list[Deployment]]:
        """The request's deployment groups: the model's own, then each fallback's, in order."""
        groups: list[list[Deployment]] = []
        for name in (model, *self.state.settings.fallbacks.get(model, ())):
            try:
                targets = self.state.registry.resolve(name)
            except ModelNotFound:
                if name == model:
                    raise
                continue
            allowed = [t for t in targets if principal.may_use(t.provider_id, t.model)]
            group = [d for t in allowed for d in self.deployments_of(self.state.registry.get(t.provider_id), t.model)]
            if group:
                groups.append(group)
            elif name == model and targets:
                raise PermissionDenied(f"This key may not use model '{model}'", param="model", code="model_not_allowed")
        return groups

    @staticmethod
    def deployments_of(runtime: ProviderRuntime, model: str) -> list[Deployment]:
        config = runtime.config
        return [
            Deployment(runtime.id, model, index, config.weight, config.priority)
            for index in range(max(1, 1 + len(config.api_keys)))
        ]

    def request_timeout(self, scope: Scope, exchange: Exchange) -> float | None:
        """``x-anygate-timeout: <seconds>`` caps this request, for admins (or all keys when allowed)."""
        raw = header(scope, b"x-anygate-timeout")
        if raw is None:
            return None
        if not (exchange.principal.is_admin or self.state.settings.routing.client_timeout_header):
            raise PermissionDenied("This key may not set x-anygate-timeout", code="timeout_override_not_allowed")
        try:
            value = float(raw)
        except ValueError:
            raise InvalidRequest("x-anygate-timeout must be a number of seconds", param="x-anygate-timeout") from None
        if not 0 < value <= 3600:
            raise InvalidRequest("x-anygate-timeout must be between 0 and 3600 seconds", param="x-anygate-timeout")
        return value

    # ------------------------------------------------------------------------------ dispatch loop

    async def dispatch(
        self, request: UpstreamRequest, send: Send, exchange: Exchange, groups: list[list[Deployment]]
    ) -> None:
        """Try deployments group by group (fallbacks), round by round (retries), until one answers.

        Nothing is retried once the first byte has reached the client.
        """
        routing = self.state.settings.routing
        deadline = time.monotonic() + (request.timeout or routing.retry_deadline)
        self.book.retry_budget.deposit()
        last_error: GatewayError | None = None
        for group in groups:
            rounds = 1 + max(self.state.registry.get(d.provider_id).config.max_retries for d in group)
            for round_number in range(rounds):
                tried: set[str] = set()
                while (deployment := self.book.choose(group, tried)) is not None:
                    if exchange.attempts >= routing.max_attempts:
                        raise_last(last_error)
                    if exchange.attempts > 0 and not self.book.retry_budget.try_spend():
                        raise_last(last_error)
                    tried.add(deployment.id)
                    try:
                        await self.attempt(request, send, exchange, deployment)
                        return
                    except GatewayError as error:
                        if exchange.first_byte_at is not None or classify(error) is Action.FAIL:
                            raise
                        self.book.record_failure(deployment, error, group)
                        self.state.metrics.upstream_errors.labels(deployment.provider_id, error.code or "error").inc()
                        last_error = error
                if not tried and last_error is None:
                    last_error = self.book.cooldown_failure(group)
                    break
                if round_number + 1 < rounds and not await self.pause_between_rounds(
                    last_error, deadline, round_number
                ):
                    break
        raise_last(last_error)

    async def pause_between_rounds(self, error: GatewayError | None, deadline: float, round_number: int) -> bool:
        """Sleep before the next round (backoff, or the upstream's Retry-After); False when out of time."""
        if error is None:
            return False
        routing = self.state.settings.routing
        wait = backoff_delay(round_number)
        if classify(error) is Action.NEXT_AFTER:
            retry_after = retry_after_seconds(error)
            if retry_after is None or retry_after > routing.max_retry_after_wait:
                return False
            wait = max(wait, retry_after)
        elif classify(error) is Action.NEXT:
            return False
        if time.monotonic() + wait >= deadline:
            return False
        await asyncio.sleep(wait)
        return True

    async def attempt(self, request: UpstreamRequest, send: Send, exchange: Exchange, deployment: Deployment) -> None:
        runtime = self.state.registry.get(deployment.provider_id)
        exchange.attempts += 1
        exchange.provider_id, exchange.model = runtime.id, deployment.model
        api_key = self.key_for(exchange, runtime, deployment)
        self.book.started(deployment)
        try:
            await self.forward(request, send, exchange, runtime, deployment, api_key)
        finally:
            self.book.finished(deployment)
        self.book.record_success(deployment)

    def key_for(self, exchange: Exchange, runtime: ProviderRuntime, deployment: Deployment) -> str | None:
        """The caller's own key for this provider, else the deployment's key (None: the provider's own)."""
        caller_key = self.state.caller_key(exchange.principal, runtime.id)
        exchange.byok = caller_key is not None
        if caller_key is not None:
            return caller_key
        if deployment.key_index > 0:
            return runtime.config.api_keys[deployment.key_index - 1].get_secret_value()
        if not runtime.client.is_configured:
            raise MissingProviderKey(runtime.id)
        return None

    async def forward(
        self,
        request: UpstreamRequest,
        send: Send,
        exchange: Exchange,
        runtime: ProviderRuntime,
        deployment: Deployment,
        api_key: str | None,
    ) -> None:
        body = request.body
        if request.rewrite and deployment.model != request.payload.get("model"):
            body = replace_model(body, request.payload, deployment.model)
        client = runtime.client
        timeout = client.client_timeout if request.timeout is None else capped_timeout(client, request.timeout)
        response = await client.open(
            request.scope["method"], request.endpoint, body, forwarded_headers(request.scope), timeout, api_key
        )
        accounting = self.state.accounting
        if accounting is not None and accounting.refused_stream_usage(exchange, response.status):
            # Maybe the upstream refuses the stream_options accounting added: once more without them.
            response.release()
            body = accounting.body_without_stream_usage(exchange, deployment.model if request.rewrite else None)
            response = await client.open(
                request.scope["method"], request.endpoint, body, forwarded_headers(request.scope), timeout, api_key
            )
            accounting.answered_without_stream_usage(exchange, runtime.id, response.status)
        try:
            if response.status >= 400:
                raise UpstreamStatusError(response.status, await self._read(runtime, response), _retry_after(response))
            if exchange.stream and response.content_type == EVENT_STREAM:
                await self.relay_stream(send, exchange, runtime, response, request.endpoint)
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
        if response.content_type == "application/json":
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamUnavailable(f"Provider '{runtime.id}' sent a body that is not valid JSON") from None
            usage = parsed.get("usage") if isinstance(parsed, dict) else None
            exchange.usage = usage if isinstance(usage, dict) else None
        exchange.first_byte_at = time.perf_counter()
        exchange.status = response.status
        if exchange.usage is None and exchange.metering is not None:  # accounting estimates it from the body
            exchange.metering.unreported_body = data
        await send_bytes(send, response.status, data, response_headers(response, exchange.request_id.encode()))

    async def relay_stream(
        self,
        send: Send,
        exchange: Exchange,
        runtime: ProviderRuntime,
        response: aiohttp.ClientResponse,
        endpoint: str,
    ) -> None:
        """Relay whole SSE events as they arrive. Headers wait for the first event, so that an upstream
        failing before it can still be retried or replaced by a fallback."""
        splitter = EventSplitter()
        pending: list[bytes] = []
        chunks = response.content.iter_any()
        try:
            while not pending:
                pending = splitter.feed(await anext(chunks))
        except StopAsyncIteration:
            raise UpstreamUnavailable(f"Provider '{runtime.id}' ended the stream before any event") from None
        except UPSTREAM_ERRORS as exc:
            raise translate_client_error(exc, runtime.id) from exc
        headers = response_headers(response, exchange.request_id.encode())
        headers.append((b"cache-control", b"no-cache"))
        exchange.status = response.status
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        exchange.first_byte_at = time.perf_counter()
        saw_done = False
        try:
            while True:
                saw_done = self.tap_events(exchange, pending) or saw_done
                pending = tap_stream(exchange, pending)  # accounting: usage, and the event the client didn't ask
                await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
                pending = []
                while not pending:
                    pending = splitter.feed(await anext(chunks))
        except StopAsyncIteration:
            pass
        except UPSTREAM_ERRORS as exc:
            await self.end_stream_with_error(send, exchange, translate_client_error(exc, runtime.id))
            return
        rest = splitter.flush()
        if not saw_done and endpoint in DONE_TERMINATED and not is_done(rest):
            truncated = UpstreamUnavailable(f"Provider '{runtime.id}' ended the stream early", code="stream_truncated")
            await self.end_stream_with_error(send, exchange, truncated)
            return
        await send({"type": "http.response.body", "body": rest, "more_body": False})

    @staticmethod
    def tap_events(exchange: Exchange, events: list[bytes]) -> bool:
        """True when one of the events is ``[DONE]`` (usage is tapped by ``accounting.service.tap_stream``)."""
        saw_done = False
        for event in events:
            if b"[DONE]" in event:
                saw_done = saw_done or is_done(event)
        return saw_done

    @staticmethod
    async def end_stream_with_error(send: Send, exchange: Exchange, failure: GatewayError) -> None:
        exchange.error = failure.code
        await send({"type": "http.response.body", "body": error_event(failure.body_bytes()), "more_body": False})


class DisconnectWatch:
    """Cancels the request's task when the client goes away, so its upstream request stops at once.

    uvicorn's ``send`` ignores a gone client silently; only ``receive`` tells, so a watcher waits on it
    (the request body has been read by then). On exit the watcher is stopped before anything else runs.
    """

    __slots__ = ("_receive", "_task", "_watcher", "fired", "_closed")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task: asyncio.Task[Any] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.fired = False
        self._closed = False

    async def __aenter__(self) -> DisconnectWatch:
        self._task = asyncio.current_task()
        self._watcher = asyncio.ensure_future(self._watch())
        return self

    async def _watch(self) -> None:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self._closed and self._task is not None:
            self.fired = True
            self._task.cancel()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
        if self.fired and exc_type is asyncio.CancelledError and self._task is not None:
            self._task.uncancel()
            raise ClientDisconnected from exc


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What goes upstream, the same for every attempt."""

    scope: Scope
    endpoint: str
    body: bytes
    payload: dict[str, Any]
    timeout: float | None
    rewrite: bool = True


DONE_TERMINATED = frozenset({"chat/completions", "completions"})


def capped_timeout(client: Any, seconds: float) -> aiohttp.ClientTimeout:
    base: aiohttp.ClientTimeout = client.client_timeout
    return aiohttp.ClientTimeout(
        total=seconds,
        connect=min(base.connect or seconds, seconds),
        sock_connect=min(base.sock_connect or seconds, seconds),
        sock_read=min(base.sock_read or seconds, seconds),
    )


def raise_last(error: GatewayError | None) -> NoReturn:
    if error is None:
        raise AllDeploymentsFailed("No deployment could serve this request")
    raise error


def _retry_after(response: aiohttp.ClientResponse) -> dict[str, str] | None:
    value = response.headers.get("retry-after")
    return {"retry-after": value} if value else None
