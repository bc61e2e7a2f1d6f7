"""OpenTelemetry traces (the ``otel`` extra): a server span per request and a client span per attempt
upstream, GenAI semantic-convention attributes, the client's ``traceparent`` continued and passed on.

The spans travel as they would in production: OTLP over HTTP (protobuf) to a collector stand-in on
loopback, which records what it is sent; the gateway's upstream is in memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from anygate.api.tracing_layer import TracingLayer
from anygate.errors import ConfigError
from anygate.settings import load_settings
from tests.support.fake_upstream import FakeUpstream, Reply, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import inprocess_gateway

pytestmark = pytest.mark.sockets

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
CHAT = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent: str
    attributes: dict[str, Any]
    error: bool


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(item) for item in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def spans_of(collector: FakeUpstream) -> list[Span]:
    found = []
    for request in collector.requests_to("/v1/traces"):
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {kv.key: value(kv.value) for kv in span.attributes}
                    attributes["service.name"] = {kv.key: value(kv.value) for kv in resource.resource.attributes}.get(
                        "service.name"
                    )
                    found.append(
                        Span(
                            span.name,
                            span.kind,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            attributes,
                            span.status.code == 2,
                        )
                    )
    return found


SERVER, CLIENT = 2, 3  # the protocol's SpanKind values


@pytest.fixture
def collector() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread() as up:
        up.script_many([Reply(body=b"")] * 50, path="/v1/traces")
        yield up


def traced(collector: FakeUpstream, *providers: dict[str, Any], **fields: Any) -> Any:
    otel = {"enabled": True, "endpoint": f"{collector.url}/v1/traces", "schedule_delay": 0.05}
    return gateway_settings(*providers, otel=otel, **fields)


def test_a_request_is_a_server_span_continuing_the_clients_trace_with_one_client_span_per_attempt(
    collector: FakeUpstream,
) -> None:
    up = FakeUpstream(usage=Usage(12, 5)).in_memory()
    with inprocess_gateway(traced(collector, fake_provider(up)), up) as gw, gw.client() as http:
        answer = http.post("/v1/chat/completions", json=CHAT, headers={"traceparent": TRACEPARENT})
        assert answer.status_code == 200
        request_id = answer.headers["x-request-id"]
    spans = spans_of(collector)  # all exported at shutdown at the latest
    [server] = [s for s in spans if s.kind == SERVER]
    [client] = [s for s in spans if s.kind == CLIENT]
    assert (server.trace_id, server.parent) == (TRACE_ID, CLIENT_SPAN)
    assert (client.trace_id, client.parent) == (TRACE_ID, server.span_id)
    assert server.name == "POST /v1/chat/completions" and client.name == "chat fake-model"
    expected = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "fake",
        "gen_ai.request.model": "fake/fake-model",
        "gen_ai.response.model": "fake-model",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.response.finish_reasons": ["stop"],
        "http.response.status_code": 200,
        "anygate.request_id": request_id,
        "service.name": "anygate",
    }
    assert {name: server.attributes.get(name) for name in expected} == expected
    assert client.attributes["server.address"] == "upstream.test"
    assert client.attributes["gen_ai.provider.name"] == "fake"
    assert client.attributes["gen_ai.request.model"] == "fake-model"
    assert (client.attributes["anygate.attempt"], client.attributes["anygate.fallback"]) == (1, 0)
    # the upstream continues the trace under the attempt's span
    sent = up.requests_to("/v1/chat/completions")[0].headers["traceparent"]
    assert sent == f"00-{TRACE_ID}-{client.span_id}-01"


def test_retries_and_fallbacks_are_spans_of_their_own(collector: FakeUpstream) -> None:
    up = FakeUpstream(models=("fake-model", "other-model")).in_memory()
    up.script(Reply.error(503, "busy"), Reply.error(503, "busy"), path="/v1/chat/completions")
    providers = [fake_provider(up, max_retries=1), fake_provider(up, "spare", api_key="key-spare")]
    settings = traced(collector, *providers, fallbacks={"fake/fake-model": ["spare/other-model"]})
    with inprocess_gateway(settings, up) as gw, gw.client() as http:
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    attempts = sorted(
        (s for s in spans_of(collector) if s.kind == CLIENT), key=lambda s: s.attributes["anygate.attempt"]
    )
    described = [
        (s.attributes["anygate.provider"], s.attributes["anygate.attempt"], s.attributes["anygate.fallback"], s.error)
        for s in attempts
    ]
    assert described == [("fake", 1, 0, True), ("fake", 2, 0, True), ("spare", 3, 1, False)]
    assert attempts[0].attributes["error.type"] and attempts[1].attributes["anygate.retry"] is True
    [server] = [s for s in spans_of(collector) if s.kind == SERVER]
    assert server.attributes["anygate.attempts"] == 3
    assert {s.parent for s in attempts} == {server.span_id}


def test_a_stream_is_one_span_with_the_finish_reason_of_its_events(collector: FakeUpstream) -> None:
    up = FakeUpstream().in_memory()
    up.script(Reply(finish_reason="length"), path="/v1/chat/completions")
    with inprocess_gateway(traced(collector, fake_provider(up)), up) as gw, gw.client() as http:
        assert "[DONE]" in http.post("/v1/chat/completions", json={**CHAT, "stream": True}).text
    [server] = [s for s in spans_of(collector) if s.kind == SERVER]
    assert server.attributes["gen_ai.response.finish_reasons"] == ["length"]
    # a new trace when the client sent none
    assert server.parent == "" and len(server.trace_id) == 32


def test_an_error_answer_marks_the_server_span(collector: FakeUpstream) -> None:
    up = FakeUpstream().in_memory()
    up.script(Reply.error(500, "boom"), path="/v1/chat/completions")
    with inprocess_gateway(traced(collector, fake_provider(up)), up) as gw, gw.client() as http:
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 500
        assert http.get("/v1/models").status_code == 200
    servers = {s.name: s for s in spans_of(collector) if s.kind == SERVER}
    assert servers["POST /v1/chat/completions"].error
    assert servers["POST /v1/chat/completions"].attributes["error.type"]
    assert servers["GET"].attributes["url.path"] == "/v1/models"  # a management route: named by its method


def test_tracing_off_leaves_no_layer_and_passes_the_clients_traceparent_on(collector: FakeUpstream) -> None:
    up = FakeUpstream().in_memory()
    with inprocess_gateway(gateway_settings(fake_provider(up)), up) as gw, gw.client() as http:
        assert gw.app.state.tracing is None
        layer: Any = gw.app._edge  # the edge's layers, outermost first
        while layer is not None:
            assert not isinstance(layer, TracingLayer)
            layer = getattr(layer, "app", None)
        assert http.post("/v1/chat/completions", json=CHAT, headers={"traceparent": TRACEPARENT}).status_code == 200
    assert up.requests_to("/v1/chat/completions")[0].headers["traceparent"] == TRACEPARENT
    assert collector.requests == []


def test_the_standard_variables_configure_it(collector: FakeUpstream) -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20otel-token,x-tenant=cs",
        "OTEL_SERVICE_NAME": "gateway-eu",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "1.0",
    }
    settings = load_settings({}, environ)
    assert settings.otel.enabled and settings.otel.endpoint == f"{collector.url}/v1/traces"
    assert (settings.otel.schedule_delay, settings.otel.sampler) == (0.05, "parentbased_traceidratio")
    assert "otel-token" not in repr(settings)
    up = FakeUpstream().in_memory()
    configured = gateway_settings(fake_provider(up), otel=settings.otel.model_dump())
    with inprocess_gateway(configured, up) as gw, gw.client() as http:
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    exports = collector.requests_to("/v1/traces")
    assert exports and exports[0].headers["authorization"] == "Bearer otel-token"
    assert exports[0].headers["x-tenant"] == "cs"
    assert {s.attributes["service.name"] for s in spans_of(collector)} == {"gateway-eu"}


@pytest.mark.parametrize(
    ("environ", "enabled"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_when_tracing_is_on(environ: dict[str, str], enabled: bool) -> None:
    assert load_settings({}, environ).otel.enabled is enabled


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_EXPORTER": "otlp"}, "protocol"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "no-equals-sign"}, "OTEL_EXPORTER_OTLP_HEADERS"),
    ],
)
def test_what_it_cannot_do_stops_the_start(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings({}, environ)
