"""One request's trips upstream and its answer to the client, as bytes: the ASGI side of an attempt.

A ``Cycle`` is made per request (as uvicorn makes a ``RequestResponseCycle``) and hands its ``attempt``
to the dispatch loop (``anygate.dispatch``), which decides which deployment to try and when. An attempt
sends the request to one deployment and relays the answer: the body as the upstream sent it (only
``model`` rewritten when the upstream knows the model by another id), or each SSE event as the bytes it
arrived as. Until the response has started, a failure is the loop's to retry; once it has, a failure
ends the stream with one SSE error event and no ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from anygate.accounting.service import Ticket
from anygate.api.headers import forwarded_headers, limit_headers, response_headers, retry_after_header
from anygate.api.http import Scope, Send, send_bytes
from anygate.api.tracing_layer import traced_attempt
from anygate.errors import GatewayError, ServiceUnavailable, UpstreamTimeout, UpstreamUnavailable
from anygate.exchange import Exchange
from anygate.routing import Deployment
from anygate.telemetry import upstream_error_kind
from anygate.transport import Response, Timeouts
from anygate.upstream import OpenAICompatibleProvider
from anygate.wire.members import replace_model
from anygate.wire.sse import EventSplitter, error_event, event_batches, has_done, is_done

if TYPE_CHECKING:
    from anygate.api.bridges import Bridge
    from anygate.api.state import AppState
    from anygate.registry import ProviderRuntime

EVENT_STREAM = "text/event-stream"
DONE_TERMINATED = frozenset({"chat/completions", "completions"})  # streams an upstream ends with [DONE]
COST_HEADER = b"x-anygate-cost"  # a whole answer's cost in USD (absent when its price is unknown)


@dataclass(slots=True)  # not frozen: made per request (docs/architecture.md, Hot path)
class UpstreamRequest:
    """What goes upstream, the same for every attempt: the ticket holds the body (the accounting's changes
    in it); ``rewrite`` puts each deployment's own model id in it; ``timeout`` is the admin's cap; ``bridge``
    makes each attempt's request of a request in another API (``api/bridged_relay.py`` relays it)."""

    scope: Scope
    endpoint: str
    ticket: Ticket
    timeout: float | None = None
    rewrite: bool = True
    bridge: Bridge | None = None


class Cycle:
    __slots__ = ("state", "request", "exchange", "send")

    def __init__(self, state: AppState, request: UpstreamRequest, exchange: Exchange, send: Send) -> None:
        self.state = state
        self.request = request
        self.exchange = exchange
        self.send = send

    def __repr__(self) -> str:
        return f"Cycle({self.exchange!r})"

    async def attempt(self, deployment: Deployment, deadline: float) -> None:
        """Send to ``deployment`` and relay its answer; raise its failure (a GatewayError) when it had none."""
        state, exchange = self.state, self.exchange
        runtime = state.registry.get(deployment.provider_id)
        exchange.provider_id, exchange.model = runtime.id, deployment.model
        api_key, exchange.byok = state.planner.key_for(exchange.principal, runtime, deployment)
        timeouts = attempt_timeouts(runtime.client, self.request.timeout, deadline - state.health.now())
        if state.tracing is None:
            await self._forward(runtime, deployment, api_key, timeouts)
        else:
            with traced_attempt(state.tracing, exchange, runtime, deployment):
                await self._forward(runtime, deployment, api_key, timeouts)

    async def _forward(
        self, runtime: ProviderRuntime, deployment: Deployment, api_key: str | None, timeouts: Timeouts
    ) -> None:
        request, client = self.request, runtime.client
        body = request.ticket.body
        model = deployment.model if request.rewrite else None
        if model is not None and model != request.ticket.payload.get("model"):
            body = replace_model(body, request.ticket.payload, model, sole=request.ticket.sole_model)
        first_byte_by = time.monotonic() + timeouts.first_byte
        response = await self._open(client, body, timeouts, api_key)
        resend = request.ticket.retry_body(response.status, model)
        if resend is not None:  # the upstream refuses what the accounting added: once more without it
            await response.aclose()
            response = await self._open(client, resend, timeouts, api_key)
        try:
            if resend is not None:
                self.state.accounting.answered_after_retry(request.ticket, runtime.id, response.status)
            if response.status >= 400:
                error_body = await response.read()
                raise client.status_error(response.status, error_body, retry_after_header(response.headers), api_key)
            if self.exchange.stream and response.headers.content_type == EVENT_STREAM:
                await self._relay_stream(runtime, response, first_byte_by)
            else:
                await self._relay_body(runtime, response)
        finally:
            await response.aclose()

    async def _open(
        self, client: OpenAICompatibleProvider, body: bytes, timeouts: Timeouts, api_key: str | None
    ) -> Response:
        scope = self.request.scope
        headers = forwarded_headers(scope)
        if self.state.tracing is not None:
            self.state.tracing.inject(headers)  # the attempt's span is the upstream's parent
        return await client.open(scope["method"], self.request.endpoint, body, headers, timeouts, api_key)

    # ------------------------------------------------------------------------------ relaying

    async def _relay_body(self, runtime: ProviderRuntime, response: Response) -> None:
        exchange = self.exchange
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
        ticket = self.request.ticket
        if exchange.usage is None or ticket.keeps_text:  # to estimate from, or to export
            ticket.keep_body(data)
        headers = response_headers(response.headers, exchange.request_id.encode(), limit_headers(ticket.admission))
        cost = self.state.accounting.answer_cost(exchange, ticket)
        if cost is not None:
            headers.append((COST_HEADER, cost))
        await send_bytes(self.send, response.status, data, headers)

    async def _relay_stream(self, runtime: ProviderRuntime, response: Response, first_byte_by: float) -> None:
        """Relay whole SSE events as they arrive. Headers wait for the first event, so that an upstream
        failing before it can still be retried or replaced by a fallback. The first event must come within
        the first-byte timeout of the request being sent; after it, the idle timeout applies."""
        exchange = self.exchange
        splitter = EventSplitter(self.state.settings.max_sse_event_bytes)
        batches = event_batches(response.chunks(), splitter)
        response.set_read_timeout(first_byte_by - time.monotonic())
        try:
            pending = await anext(batches)
        except StopAsyncIteration:
            raise UpstreamUnavailable(f"Provider '{runtime.id}' ended the stream before any event") from None
        response.set_read_timeout(runtime.client.timeout)
        own_limits = limit_headers(self.request.ticket.admission)
        headers = response_headers(response.headers, exchange.request_id.encode(), own_limits)
        headers.append((b"cache-control", b"no-cache"))
        exchange.status = response.status
        exchange.first_byte_at = time.perf_counter()
        await self.send({"type": "http.response.start", "status": response.status, "headers": headers})
        try:
            await self._relay_events(runtime, response, pending, splitter, batches)
        except asyncio.CancelledError:
            if not exchange.client_gone:  # the server stops: the drain's grace period is over
                await self.end_stream_with_error(shutting_down())
            raise

    async def _relay_events(
        self,
        runtime: ProviderRuntime,
        response: Response,
        pending: list[bytes],
        splitter: EventSplitter,
        batches: AsyncIterator[list[bytes]],
    ) -> None:
        """The rest of a started stream; a failure (an event over ``max_sse_event_bytes`` included) becomes
        one final SSE error event. The events that arrive with the end of the upstream's body (a fast
        upstream's whole stream, often the last event and the end of the chunked body) go out with the end
        of the answer: one write to the client, not two."""
        exchange, ticket, send = self.exchange, self.request.ticket, self.send
        saw_done = False
        held = b""  # the last events, once the upstream's body has ended
        try:
            while True:
                if not saw_done:
                    saw_done = has_done(pending)
                pending = ticket.tap(exchange, pending)  # usage, and the events as the client would have had them
                if response.ended:
                    held = b"".join(pending)
                elif pending:  # (none left when anygate's own usage event was all the batch held)
                    await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
                pending = await anext(batches)
                if held:  # more came after all: what was held goes first
                    await send({"type": "http.response.body", "body": held, "more_body": True})
                    held = b""
        except StopAsyncIteration:
            pass
        except (UpstreamUnavailable, UpstreamTimeout) as failure:
            await self.send_held(held)
            await self.end_stream_with_error(failure)
            return
        rest = splitter.flush()
        if not saw_done and self.request.endpoint in DONE_TERMINATED and not is_done(rest):
            truncated = UpstreamUnavailable(f"Provider '{runtime.id}' ended the stream early", code="stream_truncated")
            await self.send_held(held)
            await self.end_stream_with_error(truncated)
            return
        await send({"type": "http.response.body", "body": held + rest if held else rest, "more_body": False})

    async def send_held(self, held: bytes) -> None:
        if held:
            await self.send({"type": "http.response.body", "body": held, "more_body": True})

    async def end_stream_with_error(self, failure: GatewayError) -> None:
        """End a started stream with one SSE error event (no ``[DONE]``). The request is recorded with the
        failure's status and code (metrics, access log, usage ledger); an upstream's failure is the
        attempt's (the dispatch loop counts it against the deployment's health)."""
        exchange = self.exchange
        exchange.status, exchange.error = failure.status, failure.code
        if upstream_error_kind(failure) is not None:
            exchange.broken_by_upstream = failure
        await self.send({"type": "http.response.body", "body": error_event(failure.body_bytes()), "more_body": False})


def attempt_timeouts(client: OpenAICompatibleProvider, cap: float | None, left: float) -> Timeouts:
    """The provider's timeouts, with the connect and first-byte waits capped by the ``left`` seconds the
    request has (and the total too when the admin's ``x-anygate-timeout`` ``cap`` bounds the request)."""
    base = client.timeouts
    if cap is None and left >= base.first_byte and left >= base.connect:
        return base  # the common case: nothing to cap, no new object
    return base.capped(left, whole_request=cap is not None)


def shutting_down() -> ServiceUnavailable:
    return ServiceUnavailable("The server is shutting down; try again", code="shutting_down")
