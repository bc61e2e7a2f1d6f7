"""OpenTelemetry traces, with the GenAI semantic conventions: the optional ``otel`` extra.

``Tracing.start(settings.otel)`` makes one app's tracer provider (OTLP over HTTP, batched), never the
process-wide global one, and only when the settings turn tracing on: otherwise nothing of OpenTelemetry
is imported, the edge has no tracing layer and an upstream attempt checks one attribute.

Each HTTP request is a server span (``api/tracing_layer.py``), continuing the client's W3C ``traceparent``;
each attempt upstream is a client span under it (``api.relay.Cycle``), whose own ``traceparent`` goes to
the upstream. Both carry ``gen_ai.*`` attributes (operation, provider, request and response model, token
usage, finish reasons), ``server.address`` for the upstream, and ``anygate.request_id``; the attempt spans
say which attempt and which fallback group each was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from anygate.errors import ConfigError
from anygate.settings import OtelSettings

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

INSTRUMENTATION = "anygate"
# gen_ai.operation.name per route (and per endpoint a /proxy request names)
OPERATIONS = {
    "chat/completions": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "responses": "chat",
    "messages": "chat",
}
# gen_ai.provider.name: the conventions' names for the vendors they know; any other provider is its type
# (``openrouter``, ``vllm``...), a custom one its id.
PROVIDER_NAMES = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "groq": "groq",
    "deepseek": "deepseek",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "cohere": "cohere",
}


def operation_name(route: str, endpoint: str | None) -> str:
    return OPERATIONS.get(endpoint or route, OPERATIONS.get(route, route))


def provider_name(provider_type: str | None, provider_id: str) -> str:
    if provider_type is None or provider_type == "custom":
        return provider_id
    return PROVIDER_NAMES.get(provider_type, provider_type)


class Tracing:
    """One app's tracer; ``shutdown`` exports what is still queued. What the request path needs of the API
    is looked up once, here: an import inside a function costs on every call."""

    def __init__(self, provider: TracerProvider, propagator: TraceContextTextMapPropagator) -> None:
        from opentelemetry import context
        from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

        self._provider = provider
        self.tracer: Tracer = provider.get_tracer(INSTRUMENTATION)
        self._propagator = propagator
        self.server_kind, self.client_kind = SpanKind.SERVER, SpanKind.CLIENT
        self.attach, self.detach, self.in_context = context.attach, context.detach, set_span_in_context
        self._status, self._error = Status, StatusCode.ERROR

    def mark_failed(self, span: Span, description: str | None = None) -> None:
        span.set_status(self._status(self._error, description))

    def __repr__(self) -> str:
        return f"Tracing({self._provider.resource.attributes.get('service.name')!r})"

    @classmethod
    def start(cls, settings: OtelSettings) -> Tracing:
        """The tracer ``settings`` describe. ConfigError when the ``otel`` extra is not installed."""
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError as exc:
            raise ConfigError("OpenTelemetry is configured but not installed: pip install 'anygate[otel]'") from exc
        resource = Resource({**settings.resource_attributes, "service.name": settings.service_name})
        provider = TracerProvider(sampler=sampler(settings), resource=resource, shutdown_on_exit=False)
        exporter = OTLPSpanExporter(endpoint=settings.endpoint, headers=settings.headers, timeout=settings.timeout)
        processor = BatchSpanProcessor(
            exporter,
            max_queue_size=settings.max_queue_size,
            schedule_delay_millis=settings.schedule_delay * 1000,
            max_export_batch_size=min(settings.max_export_batch_size, settings.max_queue_size),
            export_timeout_millis=settings.timeout * 1000,
        )
        provider.add_span_processor(processor)
        return cls(provider, TraceContextTextMapPropagator())

    def continued(self, headers: Mapping[str, str]) -> Context:
        """The trace a request's ``traceparent`` (and ``tracestate``) continue: a new one without them."""
        return self._propagator.extract(headers)

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """Put the current span's ``traceparent`` (and ``tracestate``) in an upstream request's headers."""
        self._propagator.inject(headers)

    @contextlib.contextmanager
    def attempt(self, name: str, attributes: Mapping[str, Any]) -> Iterator[Span]:
        """A client span for one attempt upstream, current while it runs; a failure is recorded on it."""
        with self.tracer.start_as_current_span(name, kind=self.client_kind, attributes=attributes) as span:
            yield span

    def shutdown(self) -> None:
        self._provider.shutdown()


def sampler(settings: OtelSettings) -> Any:
    from opentelemetry.sdk.trace import sampling

    ratio = settings.sampler_ratio
    root = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }
    return root[settings.sampler]
