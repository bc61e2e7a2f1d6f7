"""The relay of a request in another API than its upstream's: a ``Cycle`` whose attempts follow a ``Leg``.

``BridgedCycle`` is the ``Cycle`` of a request with a ``Bridge`` (``api/bridges.py``); a chat request never
comes here, so the plain relay's bytes and work stay as they are. Each attempt asks the bridge for its leg:

- a leg without an answer (``/v1/responses`` to an upstream that serves it) is relayed by the plain relay;
  when the upstream answers 404 or 405 there, the bridge may give the translated leg, sent at once;
- a translated leg's answer is read whole and translated, or, streamed, has each batch of the upstream's
  events read by the accounting (``Ticket.tap``, usage) and then translated; while the upstream is silent,
  the translation's keep-alive event goes out every ``stream_keepalive_interval`` seconds (Anthropic's
  ``ping``); a failure midway ends the stream with the client API's own error event;
- an Anthropic upstream's answer passes as it came (its usage read by ``Ticket.tap_anthropic``), and a
  stream of it that ends before ``message_stop`` ends with an Anthropic ``error`` event.

As in the plain relay, nothing goes to the client before the upstream's first event, so that a failure
before it can still be retried or replaced by a fallback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import orjson

from anygate.accounting.stream_usage import REFUSING_STATUSES
from anygate.api.bridges import ENDPOINT_MISSING, Answer, Bridge, Leg, StreamTranslator
from anygate.api.headers import forwarded_headers, limit_headers, response_headers, retry_after_header
from anygate.api.http import Send, send_bytes
from anygate.api.keepalive import KeepAlive
from anygate.api.relay import COST_HEADER, EVENT_STREAM, Cycle, UpstreamRequest, shutting_down
from anygate.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from anygate.exchange import Exchange
from anygate.routing import Deployment
from anygate.telemetry import upstream_error_kind
from anygate.transport import Response, Timeouts
from anygate.wire.sse import EventSplitter, event_batches

if TYPE_CHECKING:
    from anygate.api.state import AppState
    from anygate.registry import ProviderRuntime

JSON = b"application/json"
SSE = b"text/event-stream"
CLIENT_API_HEADERS = ("anthropic-",)  # the client's own API's headers: not for an upstream that speaks chat


class BridgedCycle(Cycle):
    __slots__ = ("bridge",)

    def __init__(self, state: AppState, request: UpstreamRequest, exchange: Exchange, send: Send, bridge: Bridge):
        super().__init__(state, request, exchange, send)
        self.bridge = bridge

    async def _forward(
        self, runtime: ProviderRuntime, deployment: Deployment, api_key: str | None, timeouts: Timeouts
    ) -> None:
        client = runtime.client
        leg = self.bridge.leg(runtime, deployment.model)
        first_byte_by = time.monotonic() + timeouts.first_byte
        response = await self._send_leg(runtime, leg, timeouts, api_key)
        try:
            if response.status in ENDPOINT_MISSING and leg.answer is None:
                error_body = await response.read()
                other = self.bridge.after_refusal(runtime, response.status, error_body, deployment.model)
                if other is None:
                    raise client.status_error(
                        response.status, error_body, retry_after_header(response.headers), api_key
                    )
                await response.aclose()
                leg = other
                response = await self._send_leg(runtime, leg, timeouts, api_key)
            await self._relay_leg(runtime, leg, response, first_byte_by, api_key)
        finally:
            await response.aclose()

    async def _send_leg(self, runtime: ProviderRuntime, leg: Leg, timeouts: Timeouts, api_key: str | None) -> Response:
        """Send the leg; once more without the ``stream_options`` it added when the upstream refuses them."""
        response = await self._open_leg(runtime, leg, leg.body, timeouts, api_key)
        if leg.resend is not None and response.status in REFUSING_STATUSES:
            await response.aclose()
            response = await self._open_leg(runtime, leg, leg.resend, timeouts, api_key)
            self.state.accounting.answered_after_retry(self.request.ticket, runtime.id, response.status)
        return response

    async def _open_leg(
        self, runtime: ProviderRuntime, leg: Leg, body: bytes, timeouts: Timeouts, api_key: str | None
    ) -> Response:
        scope = self.request.scope
        headers = forwarded_headers(scope)
        if leg.endpoint != "messages":  # translated, or the OpenAI API's own: no Anthropic header is its
            headers = {name: value for name, value in headers.items() if not name.startswith(CLIENT_API_HEADERS)}
        return await runtime.client.open("POST", leg.endpoint, body, headers, timeouts, api_key)

    async def _relay_leg(
        self, runtime: ProviderRuntime, leg: Leg, response: Response, first_byte_by: float, api_key: str | None
    ) -> None:
        if response.status >= 400:
            error_body = await response.read()
            headers = retry_after_header(response.headers)
            raise runtime.client.status_error(response.status, error_body, headers, api_key)
        is_stream = self.exchange.stream and response.headers.content_type == EVENT_STREAM
        if leg.answer is None:
            if is_stream:
                await self._relay_stream(runtime, response, first_byte_by)
            else:
                await self._relay_body(runtime, response)
        elif is_stream:
            await self._relay_translated_stream(runtime, leg.answer, response, first_byte_by)
        else:
            await self._relay_translated_body(runtime, leg.answer, response)

    # ------------------------------------------------------------------------------ a whole answer

    async def _relay_translated_body(self, runtime: ProviderRuntime, answer: Answer, response: Response) -> None:
        """The upstream's whole answer in the client's API (as a stream when the client asked for one and
        the upstream answered whole)."""
        exchange = self.exchange
        data = await response.read()
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise UpstreamUnavailable(f"Provider '{runtime.id}' sent a body that is not a JSON object")
        exchange.usage = answer.usage(parsed)
        if exchange.usage is None:  # the accounting estimates it from the upstream's body
            self.request.ticket.keep_body(data)
        streamed = answer.whole_stream(parsed) if exchange.stream else None
        body = streamed if streamed is not None else answer.body(parsed, data)
        exchange.first_byte_at = time.perf_counter()
        exchange.status = response.status
        headers = self._headers(response, SSE if streamed is not None else JSON)
        cost = self.state.accounting.answer_cost(exchange, self.request.ticket)
        if cost is not None:
            headers.append((COST_HEADER, cost))
        await send_bytes(self.send, response.status, body, headers)

    def _headers(self, response: Response, content_type: bytes) -> list[tuple[bytes, bytes]]:
        own_limits = limit_headers(self.request.ticket.admission)
        headers = response_headers(response.headers, self.exchange.request_id.encode(), own_limits)
        headers = [(name, value) for name, value in headers if name != b"content-type"]
        headers.append((b"content-type", content_type))
        if content_type == SSE:
            headers.append((b"cache-control", b"no-cache"))
        return headers

    # ------------------------------------------------------------------------------ a stream

    async def _relay_translated_stream(
        self, runtime: ProviderRuntime, answer: Answer, response: Response, first_byte_by: float
    ) -> None:
        exchange = self.exchange
        splitter = EventSplitter(self.state.settings.max_sse_event_bytes)
        batches = event_batches(response.chunks(), splitter)
        response.set_read_timeout(first_byte_by - time.monotonic())
        try:
            pending = await anext(batches)
        except StopAsyncIteration:
            raise UpstreamUnavailable(f"Provider '{runtime.id}' ended the stream before any event") from None
        response.set_read_timeout(runtime.client.timeout)
        translator = answer.stream()
        exchange.status = response.status
        exchange.first_byte_at = time.perf_counter()
        headers = self._headers(response, SSE)
        await self.send({"type": "http.response.start", "status": response.status, "headers": headers})
        try:
            await self._translate_events(runtime, answer, translator, pending, splitter, batches)
        except asyncio.CancelledError:
            if not exchange.client_gone:  # the server stops: the drain's grace period is over
                await self._end_translated(translator, shutting_down())
            raise

    async def _translate_events(
        self,
        runtime: ProviderRuntime,
        answer: Answer,
        translator: StreamTranslator,
        pending: list[bytes],
        splitter: EventSplitter,
        batches: AsyncIterator[list[bytes]],
    ) -> None:
        """The rest of a started stream, batch by batch; a failure ends it with the client API's error event,
        and so does an upstream that stops before it said it was done."""
        exchange, ticket, send = self.exchange, self.request.ticket, self.send
        batch: list[bytes] | None = pending
        interval = self.state.settings.stream_keepalive_interval
        keepalive = None if answer.keepalive is None else KeepAlive(send, answer.keepalive, interval)
        try:
            try:
                while batch is not None and not translator.finished:
                    out = translator.feed(answer.tap(ticket, exchange, batch))
                    if out:
                        await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                    if not translator.finished:
                        batch = await anext(batches, None)
                        if keepalive is not None:
                            keepalive.heard()
            finally:  # no ping after the stream's last message, whoever sends it
                if keepalive is not None:
                    await keepalive.stop()
        except (UpstreamUnavailable, UpstreamTimeout) as failure:
            await self._end_translated(translator, failure)
            return
        rest = splitter.flush() if batch is None else b""
        out = translator.feed(answer.tap(ticket, exchange, [rest])) if rest and not translator.finished else []
        if not translator.finished and not translator.is_complete:
            ended = UpstreamUnavailable(f"Provider '{runtime.id}' ended the stream early", code="stream_truncated")
            out.extend(self._failed(translator, ended))
        else:
            out.extend(translator.finish())
        await send({"type": "http.response.body", "body": b"".join(out), "more_body": False})

    def _failed(self, translator: StreamTranslator, failure: GatewayError) -> list[bytes]:
        """Record the failure that ends a started stream (as ``Cycle.end_stream_with_error`` does) and give
        the client API's error event for it."""
        exchange = self.exchange
        exchange.status, exchange.error = failure.status, failure.code
        if upstream_error_kind(failure) is not None:
            exchange.broken_by_upstream = failure
        return translator.fail(failure.status, failure.message)

    async def _end_translated(self, translator: StreamTranslator, failure: GatewayError) -> None:
        body = b"".join(self._failed(translator, failure))
        await self.send({"type": "http.response.body", "body": body, "more_body": False})
