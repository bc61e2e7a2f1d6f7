"""The model routes and the provider-scoped proxy: a request turned into a dispatch.

    POST /v1/chat/completions, /v1/completions, /v1/embeddings                    routed by ``model``
    POST /v1/responses, /v1/messages                                              the same, through a bridge
    POST /v1/messages/count_tokens                                                answered here
    /proxy/{provider}/v1/{endpoint}                                               one provider, as is

Each reads and checks the body (``api/http.py``), plans the deployments (``planning``), reserves with the
accounting (its ``Ticket`` holds the body to send), and hands the ``Cycle``'s attempt to the dispatch loop
(``dispatch``), watching for the client leaving. A request in another API than an upstream may speak (the
Responses and Anthropic Messages APIs) has a ``Bridge`` (``api/bridges.py``) that makes each attempt's
request, and a ``BridgedCycle`` relays it. ``ModelCall`` is what the edge keeps of the request to settle it,
however it ended.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from anygate.accounting.estimate import counting_owner, estimate_prompt
from anygate.accounting.service import Ticket
from anygate.api.bridged_relay import BridgedCycle
from anygate.api.bridges import prepare_bridge
from anygate.api.dialects import send_error_in_dialect
from anygate.api.disconnect import DisconnectWatch, DisconnectWatches
from anygate.api.http import (
    JSON_HEADERS,
    Receive,
    Scope,
    Send,
    header,
    parse_json_object,
    read_body,
    refuse_duplicate_members,
    send_bytes,
)
from anygate.api.relay import Cycle, UpstreamRequest, shutting_down
from anygate.auth import Principal
from anygate.client_gone import client_gone
from anygate.errors import InvalidRequest, PermissionDenied, RouteNotFound
from anygate.exchange import Exchange
from anygate.planning import needs_of
from anygate.routing import Deployment
from anygate.wire.anthropic_request import count_tokens_view
from anygate.wire.billed_tools import billed_tool
from anygate.wire.responses_request import refuse_background

if TYPE_CHECKING:
    from anygate.api.state import AppState

MAX_TIMEOUT_HEADER = 3600.0


@dataclass(slots=True)
class ModelCall:
    """A model request as the edge keeps it: its record, and its ticket once the accounting reserved."""

    exchange: Exchange
    ticket: Ticket | None = None


class ModelRoutes:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.disconnects = DisconnectWatches()  # the requests whose client may leave, watched by one timer

    async def model_route(self, scope: Scope, receive: Receive, send: Send, call: ModelCall) -> None:
        exchange = call.exchange
        body = await read_body(scope, receive, self.state.settings.max_body_bytes)
        payload = parse_json_object(body)
        sole_model = refuse_duplicate_members(body, payload)
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            message = "Missing required parameter: 'model'" if model is None else "'model' must be a non-empty string"
            raise InvalidRequest(message, param="model", code="invalid_model")
        exchange.requested_model = model
        exchange.stream = payload.get("stream") is True
        if exchange.route == "responses":
            refuse_background(payload)
        groups = self.state.planner.plan(model, exchange.principal, needs_of(exchange.route, exchange.stream))
        timeout = self.request_timeout(scope, exchange)
        targets = [deployment for group in groups for deployment in group]
        bridge = prepare_bridge(self.state, exchange, payload, targets)  # None for the OpenAI routes
        # A translation to chat drops the tools an upstream bills by the call; a request passed on keeps them.
        billed = billed_tool(exchange.route, payload) if bridge is None or bridge.passes_through else None
        call.ticket = await self.state.accounting.reserve(exchange, body, payload, targets, billed_tool=billed)
        call.ticket.sole_model = sole_model
        bridged = bridge.bind(call.ticket) if bridge is not None else None
        request = UpstreamRequest(scope, exchange.route, call.ticket, timeout, bridge=bridged)
        await self.dispatch(request, receive, send, exchange, groups)

    async def count_tokens(
        self, scope: Scope, receive: Receive, send: Send, principal: Principal, request_id: str
    ) -> None:
        """``/v1/messages/count_tokens``: the prompt's tokens as the accounting estimates them (``input_tokens``)
        for a Messages request that is valid and names a model this key may use."""
        body = await read_body(scope, receive, self.state.settings.max_body_bytes)
        payload = parse_json_object(body)
        refuse_duplicate_members(body, payload)
        model = count_tokens_view(payload)["model"]  # refuses, naming the field, what a translation would
        self.state.planner.plan(model, principal)  # 404 for a model not served, 403 for one not allowed
        tokenizer = self.state.accounting.tokenizer
        if not tokenizer.is_ready_for(model):
            await tokenizer.ready(model)  # only in a process's first seconds
        tokens = estimate_prompt(tokenizer, payload, model, counting_owner(principal))
        answer = orjson.dumps({"input_tokens": tokens})
        await send_bytes(send, 200, answer, [*JSON_HEADERS, (b"x-request-id", request_id.encode())])

    async def proxy_route(
        self, scope: Scope, receive: Receive, send: Send, call: ModelCall, provider_id: str, endpoint: str
    ) -> None:
        exchange = call.exchange
        exchange.endpoint = endpoint
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
        elif not exchange.principal.may_reach_provider(runtime.id):
            # No model named (a GET of the model list): a provider no model pattern can match stays closed.
            raise PermissionDenied(f"This key may not use provider '{provider_id}'", code="provider_not_allowed")
        elif method == "POST" and exchange.principal.restricts_models:
            # A key held to some models (its own list, its team's or an ancestor's) names one: an upstream's
            # default model is not on its list.
            raise InvalidRequest(
                "This key may only use the models it is allowed: 'model' must be a non-empty string",
                param="model",
                code="invalid_model",
            )
        exchange.stream = payload.get("stream") is True
        if endpoint == "responses":
            refuse_background(payload)
        deployments = runtime.deployments(model if isinstance(model, str) else "")
        timeout = self.request_timeout(scope, exchange)
        billed = billed_tool(endpoint, payload)
        call.ticket = await self.state.accounting.reserve(exchange, body, payload, deployments, endpoint, billed)
        request = UpstreamRequest(scope, endpoint, call.ticket, timeout, rewrite=False)
        await self.dispatch(request, receive, send, exchange, [deployments])

    async def dispatch(
        self, request: UpstreamRequest, receive: Receive, send: Send, exchange: Exchange, groups: list[list[Deployment]]
    ) -> None:
        """Dispatch while watching for the client leaving.

        When the server itself cancels the request (the drain's grace period is over), the client gets an
        answer rather than a cut connection: 503 while it waits for its upstream, a final SSE error event
        once its stream has started (``Cycle``). The request then ends as answered.
        """
        dispatcher = self.state.dispatcher
        bridge = request.bridge
        cycle = (
            Cycle(self.state, request, exchange, send)
            if bridge is None
            else BridgedCycle(self.state, request, exchange, send, bridge)
        )
        async with DisconnectWatch(receive, exchange, self.disconnects, client_gone(request.scope)):
            try:
                await dispatcher.dispatch(exchange, groups, cycle.attempt, dispatcher.deadline(request.timeout))
            except asyncio.CancelledError:
                if exchange.client_gone:
                    raise
                if not exchange.has_answered:
                    failure = shutting_down()
                    exchange.status, exchange.error = failure.status, failure.code
                    await send_error_in_dialect(request.scope, send, failure)
                task = asyncio.current_task()
                if task is None or task.uncancel() > 0:
                    raise

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
        if not 0 < value <= MAX_TIMEOUT_HEADER:
            raise InvalidRequest("x-anygate-timeout must be between 0 and 3600 seconds", param="x-anygate-timeout")
        return value
