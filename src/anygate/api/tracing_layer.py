"""The edge's tracing layer: one OpenTelemetry server span per HTTP request (only when tracing is on: the
edge has no such layer otherwise, see ``api/edge.py``).

The span continues the client's ``traceparent``, is current while the request runs (so each attempt
upstream is a child of it: ``api.relay.Cycle``), and ends once the request has been answered and settled,
with the HTTP facts, the request id and, for a model request, the ``gen_ai.*`` attributes: the operation,
the provider, the model asked for and the one that answered, the usage the upstream reported and the
finish reasons of the answer (read from the bytes as they go to the client).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from anygate.accounting.usage import count_of
from anygate.api.http import ASGIApp, Message, Receive, Scope, Send
from anygate.errors import GatewayError
from anygate.tracing import Tracing, operation_name, provider_name

if TYPE_CHECKING:
    from anygate.exchange import Exchange
    from anygate.registry import ProviderRegistry, ProviderRuntime
    from anygate.routing import Deployment


class ModelCallFacts(Protocol):
    @property
    def exchange(self) -> Exchange: ...


class RequestFacts(Protocol):
    """What the layer reads of the request's context (``api.edge.RequestContext``)."""

    @property
    def request_id(self) -> str: ...

    @property
    def status(self) -> int: ...

    @property
    def call(self) -> ModelCallFacts | None: ...


FINISH_REASON = re.compile(rb'"(?:finish_reason|stop_reason)"\s*:\s*"([A-Za-z0-9_.-]{1,64})"')
MAX_FINISH_REASONS = 16
PROXY_ROUTE = "/proxy/{provider}/v1/{endpoint}"


class TracingLayer:
    def __init__(
        self,
        app: ASGIApp,
        tracing: Tracing,
        registry: ProviderRegistry,
        context_of: Callable[[Scope], RequestFacts],
    ) -> None:
        self.app = app
        self.tracing = tracing
        self.registry = registry
        self.context_of = context_of  # the request's context the layers share (``api/edge.py``)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        parent = self.tracing.continued(headers)
        method, path = scope["method"], scope["path"]
        tracing = self.tracing
        span = tracing.tracer.start_span(span_name(method, path), parent, tracing.server_kind)
        token = tracing.attach(tracing.in_context(span, parent))
        reasons: list[str] = []

        async def send_watching(message: Message) -> None:
            if message["type"] == "http.response.body" and len(reasons) < MAX_FINISH_REASONS:
                found = FINISH_REASON.findall(message.get("body", b""))
                reasons.extend(r.decode() for r in found[: MAX_FINISH_REASONS - len(reasons)])
            await send(message)

        try:
            await self.app(scope, receive, send_watching)
        finally:
            tracing.detach(token)
            request = self.context_of(scope)
            attributes = self.attributes(method, path, request, reasons)
            if attributes.get("http.response.status_code", 0) >= 500:
                tracing.mark_failed(span)
                attributes.setdefault("error.type", str(attributes["http.response.status_code"]))
            span.set_attributes(attributes)
            span.end()

    def attributes(self, method: str, path: str, request: RequestFacts, reasons: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {
            "http.request.method": method,
            "url.path": path,
            "anygate.request_id": request.request_id,
        }
        status = request.call.exchange.status if request.call is not None else request.status
        if status:
            found["http.response.status_code"] = status
        if request.call is not None:
            found.update(self.model_attributes(request.call.exchange))
            if reasons:
                found["gen_ai.response.finish_reasons"] = list(dict.fromkeys(reasons))
        return found

    def model_attributes(self, exchange: Exchange) -> dict[str, Any]:
        found: dict[str, Any] = {
            "gen_ai.operation.name": operation_name(exchange.route, exchange.endpoint),
            "anygate.attempts": exchange.attempts,
        }
        if exchange.requested_model:
            found["gen_ai.request.model"] = exchange.requested_model
        if exchange.provider_id is not None:
            runtime = self.registry.find(exchange.provider_id)
            found["gen_ai.provider.name"] = provider_name(
                runtime.config.type if runtime else None, exchange.provider_id
            )
            found["anygate.provider"] = exchange.provider_id
        if exchange.model is not None and exchange.has_answered:
            found["gen_ai.response.model"] = exchange.model
        count = count_of(exchange.usage)
        if count is not None:
            found["gen_ai.usage.input_tokens"] = count.input
            found["gen_ai.usage.output_tokens"] = count.output
        if exchange.error:
            found["error.type"] = exchange.error
        return found


def span_name(method: str, path: str) -> str:
    """``POST /v1/chat/completions``; a /proxy request by its route's template; a management request by its
    method alone (its path may hold ids: one name per route, not per request)."""
    if path.startswith("/proxy/"):
        return f"{method} {PROXY_ROUTE}"
    if path.startswith(("/v1/chat/", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages")):
        return f"{method} {path}"
    return method


@contextlib.contextmanager
def traced_attempt(
    tracing: Tracing, exchange: Exchange, runtime: ProviderRuntime, deployment: Deployment
) -> Iterator[None]:
    """One attempt upstream as a client span (current while it runs, so that its ``traceparent`` is what
    the upstream gets): which provider and model, which attempt of the request and which fallback group,
    the usage the upstream reported, and the failure when there was one."""
    operation = operation_name(exchange.route, exchange.endpoint)
    host, port = upstream_address(runtime.client.base_url)
    attributes = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": provider_name(runtime.config.type, runtime.id),
        "gen_ai.request.model": deployment.model,
        "server.address": host,
        "server.port": port,
        "anygate.provider": runtime.id,
        "anygate.request_id": exchange.request_id,
        "anygate.attempt": exchange.attempts,
        "anygate.retry": exchange.attempts > 1,
        "anygate.fallback": exchange.group,
    }
    with tracing.attempt(f"{operation} {deployment.model}", attributes) as span:
        try:
            yield
        except GatewayError as failure:
            tracing.mark_failed(span, failure.message)
            span.set_attribute("error.type", failure.code or type(failure).__name__)
            raise
        count = count_of(exchange.usage)
        if count is not None:
            span.set_attribute("gen_ai.usage.input_tokens", count.input)
            span.set_attribute("gen_ai.usage.output_tokens", count.output)
        span.set_attribute("gen_ai.response.model", deployment.model)
        if exchange.status:
            span.set_attribute("http.response.status_code", exchange.status)


def upstream_address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
