"""The hot path: forward a request to its upstream and relay the answer back as bytes.

The request body goes upstream as the client sent it (only ``model`` rewritten when the upstream knows
the model by another id). The response, or each SSE event, comes back as the bytes the upstream sent.
A stream that fails after its first event ends with one SSE error event and no ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

from anygate.accounting.service import Metering, tap_stream
from anygate.api.disconnect import DisconnectWatch
from anygate.api.headers import forwarded_headers, response_headers, retry_after_header
from anygate.api.http import (
    Receive,
    Scope,
    Send,
    header,
    parse_json_object,
    read_body,
    refuse_duplicate_members,
    send_bytes,
    send_error,
)
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
    ServiceUnavailable,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from anygate.routing import Action, Deployment, classify, retry_after_seconds
from anygate.sse import EventSplitter, error_event, event_batches, is_done
from anygate.telemetry import upstream_error_kind
from anygate.transport import Response, Timeouts
from anygate.upstream import OpenAICompatibleProvider, backoff_delay

if TYPE_CHECKING:
    from anygate.api.state import AppState
    from anygate.registry import ProviderRuntime

log = logging.getLogger("anygate.relay")

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
    client_gone: bool = False  # the client disconnected (DisconnectWatch)
    broken_by_upstream: GatewayError | None = None  # the upstream's failure that ended a started stream


class Relay:
    """Forwards model-routed and provider-scoped requests for one app."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.book = state.health
        self.ordered = state.settings.routing.strategy == "ordered"

    # ------------------------------------------------------------------------------ entry points

    async def model_route(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        body = await read_body(scope, receive, self.state.settings.max_body_bytes)
        payload = parse_json_object(body)
        refuse_duplicate_members(body, payload)
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            message = "Missing required parameter: 'model'" if model is None else "'model' must be a non-empty string"
            raise InvalidRequest(message, param="model", code="invalid_model")
        exchange.requested_model = model
        exchange.stream = payload.get("stream") is True
        groups = self.plan(model, exchange.principal)
        if self.state.accounting is not None:  # accounting: reserve (429), limit the output, ask stream usage
            targets = [deployment for group in groups for deployment in group]
            body, payload = await self.state.accounting.before(exchange, body, payload, targets)
        request = UpstreamRequest(scope, exchange.route, body, payload, self.request_timeout(scope, exchange))
        await self.watched_dispatch(request, receive, send, exchange, groups)

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
        if body:
            refuse_duplicate_members(body, payload)
        model = payload.get("model")
        if isinstance(model, str) and model:
            exchange.requested_model = model
            if not exchange.principal.may_use(runtime.id, model):
                raise PermissionDenied(f"This key may not use model '{model}'", param="model", code="model_not_allowed")
        elif method == "POST" and exchange.principal.models is not None:
            # A key held to some models names one: an upstream's default model is not on its list.
            raise InvalidRequest(
                "This key may only use the models it is allowed: 'model' must be a non-empty string",
                param="model",
                code="invalid_model",
            )
        exchange.stream = payload.get("stream") is True
        deployments = runtime.deployments(model if isinstance(model, str) else "")
        if self.state.accounting is not None:  # accounting: reserve (429), limit the output, ask stream usage
            body, payload = await self.state.accounting.before(exchange, body, payload, deployments, endpoint)
        request = UpstreamRequest(scope, endpoint, body, payload, self.request_timeout(scope, exchange), rewrite=False)
        await self.watched_dispatch(request, receive, send, exchange, [deployments])

    async def watched_dispatch(
        self, request: UpstreamRequest, receive: Receive, send: Send, exchange: Exchange, groups: list[list[Deployment]]
    ) -> None:
        """Dispatch while watching for the client leaving.

        When the server itself cancels the request (the drain's grace period is over), the client gets an
        answer rather than a cut connection: 503 while it waits for its upstream, a final SSE error event
        once its stream has started (``relay_stream``). The request then ends as answered.
        """
        async with DisconnectWatch(receive, exchange):
            try:
                await self.dispatch(request, send, exchange, groups)
            except asyncio.CancelledError:
                if exchange.client_gone:
                    raise
                if exchange.first_byte_at is None:
                    failure = shutting_down()
                    exchange.status, exchange.error = failure.status, failure.code
                    await send_error(send, failure)
                task = asyncio.current_task()
                if task is None or task.uncancel() > 0:
                    raise

    # ------------------------------------------------------------------------------ planning

    def plan(self, model: str, principal: Principal) -> list[list[Deployment]]:
        """The request's deployment groups: the model's own, then each fallback's, in order.

        A deployment without a key (the provider has none and the caller brought none) is left out; when
        that leaves nothing at all, the answer is 401 ``No API key configured for <provider>``.
        """
        groups: list[list[Deployment]] = []
        keyless: str | None = None
        for name in (model, *self.state.settings.fallbacks.get(model, ())):
            try:
                targets = self.state.registry.resolve(name)
            except ModelNotFound:
                if name == model:
                    raise
                continue
            allowed = [t for t in targets if principal.may_use(t.provider_id, t.model)]
            group = [
                d
                for t in allowed
                for d in self.keyed_deployments(self.state.registry.get(t.provider_id), t.model, principal)
            ]
            if group:
                groups.append(group)
            elif allowed:
                keyless = keyless or allowed[0].provider_id
            elif name == model and targets:
                raise PermissionDenied(f"This key may not use model '{model}'", param="model", code="model_not_allowed")
        if not groups and keyless is not None:
            raise MissingProviderKey(keyless)
        return groups

    def keyed_deployments(self, runtime: ProviderRuntime, model: str, principal: Principal) -> list[Deployment]:
        """The deployments of ``runtime`` that have a key: the first uses the provider's own key (or the
        caller's), the others the provider's ``api_keys``."""
        deployments = runtime.deployments(model)
        if runtime.client.is_configured or self.state.caller_key(principal, runtime.id) is not None:
            return deployments
        return deployments[1:]

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

        Each group may make ``routing.max_attempts`` attempts, so that a failing group does not starve
        the fallbacks after it; the request as a whole has one deadline (``routing.retry_deadline``, or
        the admin's ``x-anygate-timeout``) that caps every attempt's waits. Nothing is retried once the
        first byte has reached the client.
        """
        deadline = time.monotonic() + (request.timeout or self.state.settings.routing.retry_deadline)
        self.book.retry_budget.deposit()
        last_error: GatewayError | None = None
        for group in groups:
            last_error = await self.try_group(request, send, exchange, group, deadline, last_error)
            if last_error is None:
                return
        raise_last(last_error)

    async def try_group(
        self,
        request: UpstreamRequest,
        send: Send,
        exchange: Exchange,
        group: list[Deployment],
        deadline: float,
        last_error: GatewayError | None,
    ) -> GatewayError | None:
        """Rounds over one group. None once a deployment has answered; else the failure to report if no
        later group does better. Raises what must be answered now (not retryable, out of time or budget)."""
        max_attempts = self.state.settings.routing.max_attempts
        rounds = 1 + max(self.state.registry.get(d.provider_id).config.max_retries for d in group)
        attempts = 0
        failed: Deployment | None = None  # the deployment that failed last; the next one follows it in order
        for round_number in range(rounds):
            tried: set[str] = set()
            while attempts < max_attempts and (deployment := self.book.choose(group, tried, failed, self.ordered)):
                self.check_retry_budgets(exchange, deadline, last_error)
                tried.add(deployment.id)
                attempts += 1
                try:
                    await self.attempt(request, send, exchange, deployment, deadline, group)
                    return None
                except GatewayError as error:
                    self.record_failure(exchange, deployment, error, group)
                    last_error, failed = error, deployment
            if failed is None:  # nothing could be tried: every deployment of the group is cooling down
                return self.book.cooldown_failure(group) or last_error or AllDeploymentsFailed(NO_DEPLOYMENT)
            if attempts >= max_attempts or round_number + 1 == rounds:
                break
            if not await self.pause_between_rounds(last_error, group, deadline, round_number, exchange.byok):
                break
        return last_error

    def check_retry_budgets(self, exchange: Exchange, deadline: float, last_error: GatewayError | None) -> None:
        """Before any attempt but the request's first: stop, with the last failure, when the request is
        out of time or the process's retry budget is empty."""
        if exchange.attempts == 0:
            return
        if time.monotonic() >= deadline or not self.book.retry_budget.try_spend():
            raise_last(last_error)

    def record_failure(
        self, exchange: Exchange, deployment: Deployment, error: GatewayError, group: list[Deployment]
    ) -> None:
        """Count a failed attempt; raise it when it must be the answer (not retryable, or the response
        has started); else remember it in the deployment's health."""
        self.count_upstream_error(deployment.provider_id, error)
        action = classify(error)
        if exchange.first_byte_at is not None or action is Action.FAIL:
            raise error
        if not exchange.byok:  # the caller's own key failing says nothing about the shared deployment
            self.book.record_failure(deployment, error, group)
        if action is Action.NEXT_AFTER and "retry-after" not in error.headers:
            # No Retry-After from the upstream: tell the client how long this deployment cools down.
            error.headers["retry-after"] = str(max(1, math.ceil(self.book.cooldown_left([deployment]))))

    def count_upstream_error(self, provider_id: str | None, error: GatewayError) -> None:
        kind = upstream_error_kind(error)
        if kind is not None:
            self.state.metrics.upstream_errors.labels(provider_id or "", kind).inc()

    async def pause_between_rounds(
        self, error: GatewayError | None, group: list[Deployment], deadline: float, round_number: int, own_key: bool
    ) -> bool:
        """Sleep before the next round: a full-jitter backoff, or until a rate-limited deployment may be
        asked again (the upstream's Retry-After, else a backoff of its own). False when there is no
        point: a credential failure, a wait longer than ``max_retry_after_wait``, or past the deadline.
        ``own_key``: the failure was the caller's own key's, whose rate limit no cooldown remembers."""
        if error is None:
            return False
        action = classify(error)
        if action is Action.NEXT:
            return False
        wait = backoff_delay(round_number)
        if action is Action.NEXT_AFTER:
            cooling = (retry_after_seconds(error) or 0.0) if own_key else self.book.cooldown_left(group)
            wait = max(wait, cooling)
            if wait > self.state.settings.routing.max_retry_after_wait:
                return False
        if time.monotonic() + wait >= deadline:
            return False
        await self.sleep_until(self.book.now() + wait)
        return True

    async def sleep_until(self, until: float) -> None:
        """Sleep until ``until`` on the health book's clock. A timer may fire a little early (uvloop's
        have millisecond resolution): a wait for a cooldown ends when the cooldown has ended, or the next
        round would find the deployment still cooling down and answer with its 429."""
        while (left := until - self.book.now()) > 0:  # noqa: ASYNC110 (a deadline, not an event)
            await asyncio.sleep(left)

    async def attempt(
        self,
        request: UpstreamRequest,
        send: Send,
        exchange: Exchange,
        deployment: Deployment,
        deadline: float,
        group: list[Deployment],
    ) -> None:
        runtime = self.state.registry.get(deployment.provider_id)
        exchange.attempts += 1
        exchange.provider_id, exchange.model = runtime.id, deployment.model
        api_key = self.key_for(exchange, runtime, deployment)
        timeouts = attempt_timeout(runtime.client, request, deadline)
        self.book.started(deployment)
        try:
            await self.forward(request, send, exchange, runtime, deployment, api_key, timeouts)
        finally:
            self.book.finished(deployment)
        if exchange.byok:
            return  # an attempt with the caller's own key changes nothing in the shared health
        if exchange.broken_by_upstream is not None:
            # The stream started, so nothing can be retried; but the upstream failed, and its health says so.
            self.book.record_failure(deployment, exchange.broken_by_upstream, group)
        else:
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
        timeouts: Timeouts,
    ) -> None:
        body = request.body
        if request.rewrite and deployment.model != request.payload.get("model"):
            body = replace_model(body, request.payload, deployment.model)
        client = runtime.client
        first_byte_by = time.monotonic() + timeouts.first_byte
        response = await client.open(
            request.scope["method"], request.endpoint, body, forwarded_headers(request.scope), timeouts, api_key
        )
        accounting = self.state.accounting
        if accounting is not None and accounting.refused_stream_usage(exchange, response.status):
            # Maybe the upstream refuses the stream_options accounting added: once more without them.
            await response.aclose()
            body = accounting.body_without_stream_usage(exchange, deployment.model if request.rewrite else None)
            response = await client.open(
                request.scope["method"], request.endpoint, body, forwarded_headers(request.scope), timeouts, api_key
            )
            accounting.answered_without_stream_usage(exchange, runtime.id, response.status)
        try:
            if response.status >= 400:
                body = await response.read()
                raise client.status_error(response.status, body, retry_after_header(response.headers), api_key)
            if exchange.stream and response.headers.content_type == EVENT_STREAM:
                await self.relay_stream(send, exchange, runtime, response, request.endpoint, first_byte_by)
            else:
                await self.relay_body(send, exchange, runtime, response)
        finally:
            await response.aclose()

    # ------------------------------------------------------------------------------ relaying

    async def relay_body(self, send: Send, exchange: Exchange, runtime: ProviderRuntime, response: Response) -> None:
        data = await response.read()
        if response.headers.content_type == "application/json":
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
        await send_bytes(send, response.status, data, response_headers(response.headers, exchange.request_id.encode()))

    async def relay_stream(
        self,
        send: Send,
        exchange: Exchange,
        runtime: ProviderRuntime,
        response: Response,
        endpoint: str,
        first_byte_by: float,
    ) -> None:
        """Relay whole SSE events as they arrive. Headers wait for the first event, so that an upstream
        failing before it can still be retried or replaced by a fallback. The first event must come
        within the first-byte timeout of the request being sent; after it, the idle timeout applies."""
        splitter = EventSplitter(self.state.settings.max_sse_event_bytes)
        batches = event_batches(response.chunks(), splitter)
        response.set_read_timeout(first_byte_by - time.monotonic())
        try:
            pending = await anext(batches)
        except StopAsyncIteration:
            raise UpstreamUnavailable(f"Provider '{runtime.id}' ended the stream before any event") from None
        response.set_read_timeout(runtime.client.timeout)
        headers = response_headers(response.headers, exchange.request_id.encode())
        headers.append((b"cache-control", b"no-cache"))
        exchange.status = response.status
        exchange.first_byte_at = time.perf_counter()
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        try:
            await self.relay_events(send, exchange, runtime, pending, splitter, batches, endpoint)
        except asyncio.CancelledError:
            if not exchange.client_gone:  # the server stops: the drain's grace period is over
                await self.end_stream_with_error(send, exchange, shutting_down())
            raise

    async def relay_events(
        self,
        send: Send,
        exchange: Exchange,
        runtime: ProviderRuntime,
        pending: list[bytes],
        splitter: EventSplitter,
        batches: AsyncIterator[list[bytes]],
        endpoint: str,
    ) -> None:
        """The rest of a started stream; a failure (an event over ``max_sse_event_bytes`` included)
        becomes one final SSE error event."""
        saw_done = False
        try:
            while True:
                saw_done = self.tap_events(exchange, pending) or saw_done
                pending = tap_stream(exchange, pending)  # accounting: usage, and the event the client didn't ask
                await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
                pending = await anext(batches)
        except StopAsyncIteration:
            pass
        except (UpstreamUnavailable, UpstreamTimeout) as failure:
            await self.end_stream_with_error(send, exchange, failure)
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

    async def end_stream_with_error(self, send: Send, exchange: Exchange, failure: GatewayError) -> None:
        """End a started stream with one SSE error event (no ``[DONE]``). The request is recorded with the
        failure's status and code (metrics, access log, usage ledger), and an upstream's failure counts
        as one in ``anygate_upstream_errors_total``."""
        exchange.status, exchange.error = failure.status, failure.code
        self.count_upstream_error(exchange.provider_id, failure)
        if upstream_error_kind(failure) is not None:
            exchange.broken_by_upstream = failure
        await send({"type": "http.response.body", "body": error_event(failure.body_bytes()), "more_body": False})


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


NO_DEPLOYMENT = "No deployment could serve this request"


def attempt_timeout(client: OpenAICompatibleProvider, request: UpstreamRequest, deadline: float) -> Timeouts:
    """The provider's timeouts, with the connect and first-byte waits capped by the time the request has
    left (and the total too when ``x-anygate-timeout`` bounds the whole request)."""
    base = client.timeouts
    left = max(deadline - time.monotonic(), 0.001)
    if request.timeout is None and left >= base.first_byte and left >= base.connect:
        return base  # the common case: nothing to cap, no new object
    return base.capped(left, whole_request=request.timeout is not None)


def shutting_down() -> ServiceUnavailable:
    return ServiceUnavailable("The server is shutting down; try again", code="shutting_down")


def raise_last(error: GatewayError | None) -> NoReturn:
    if error is None:
        raise AllDeploymentsFailed(NO_DEPLOYMENT)
    raise error
