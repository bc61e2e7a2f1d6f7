"""Errors in the Anthropic shape: the Anthropic SDK raises its own exception class for each."""

from __future__ import annotations

import anthropic
import orjson
import pytest

from anygate.errors import (
    AuthenticationFailed,
    BodyTooLarge,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from anygate.wire.anthropic_errors import (
    anthropic_error,
    anthropic_error_for_upstream,
    anthropic_error_from,
    error_event,
)
from anygate.wire.anthropic_stream import AnthropicStreamTranslator
from tests.wire.support import anthropic_client, parsed_events

HELLO = [{"role": "user", "content": "Hi"}]

# (status, Anthropic error type, the SDK's exception class)
STATUSES = [
    (400, "invalid_request_error", anthropic.BadRequestError),
    (401, "authentication_error", anthropic.AuthenticationError),
    (403, "permission_error", anthropic.PermissionDeniedError),
    (404, "not_found_error", anthropic.NotFoundError),
    (413, "request_too_large", anthropic.APIStatusError),
    (422, "invalid_request_error", anthropic.UnprocessableEntityError),
    (429, "rate_limit_error", anthropic.RateLimitError),
    (500, "api_error", anthropic.InternalServerError),
    (502, "api_error", anthropic.InternalServerError),
    (503, "overloaded_error", anthropic.InternalServerError),
    (504, "timeout_error", anthropic.InternalServerError),
    (529, "overloaded_error", anthropic.OverloadedError),
]


@pytest.mark.parametrize(("status", "kind", "exception"), STATUSES, ids=[str(s[0]) for s in STATUSES])
def test_the_sdk_raises_its_own_class_for_each_status(status: int, kind: str, exception: type[Exception]) -> None:
    answer = anthropic_error(status, "something went wrong")
    assert answer.status == status
    assert orjson.loads(answer.body) == {"type": "error", "error": {"type": kind, "message": "something went wrong"}}
    with anthropic_client(answer.body, status=answer.status, content_type="application/json") as client:
        with pytest.raises(exception) as raised:
            client.messages.create(model="m", max_tokens=5, messages=HELLO)
    assert raised.value.status_code == status
    assert raised.value.body == {"type": "error", "error": {"type": kind, "message": "something went wrong"}}


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidRequest("Missing required parameter: 'max_tokens'", param="max_tokens"), 400, "invalid_request_error"),
        (BodyTooLarge("Request body too large"), 413, "request_too_large"),
        (AuthenticationFailed("Invalid API key"), 401, "authentication_error"),
        (PermissionDenied("Model not allowed for this key"), 403, "permission_error"),
        (ModelNotFound("claude-nope"), 404, "not_found_error"),
        (RateLimited("Rate limit exceeded", retry_after=3), 429, "rate_limit_error"),
        (QuotaExceeded("Budget exhausted"), 429, "rate_limit_error"),
        (UpstreamUnavailable("Upstream unreachable"), 502, "api_error"),
        (UpstreamTimeout("Upstream timed out"), 504, "timeout_error"),
        (ServiceUnavailable("Draining"), 503, "overloaded_error"),
        (UpstreamStatusError(529, b'{"error":{"message":"Overloaded"}}'), 529, "overloaded_error"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, GatewayError) else str(value),
)
def test_gateway_errors_keep_their_status_and_message(error: GatewayError, status: int, kind: str) -> None:
    answer = anthropic_error_from(error)
    assert answer.status == status
    assert orjson.loads(answer.body)["error"] == {"type": kind, "message": error.message}


def test_an_upstreams_openai_error_keeps_its_own_words() -> None:
    body = b'{"error":{"message":"This model\'s maximum context length is 8192 tokens","type":"invalid_request_error"}}'
    answer = anthropic_error_for_upstream(400, body)
    assert answer.status == 400
    assert orjson.loads(answer.body)["error"]["message"] == "This model's maximum context length is 8192 tokens"


@pytest.mark.parametrize(
    "body",
    [b"<html>Bad Gateway</html>", b'{"detail":"nope"}', b'{"error":{"message":"Incorrect API key sk-abc123"}}', b""],
    ids=["not JSON", "another shape", "echoes a key", "empty"],
)
def test_an_upstream_error_that_is_malformed_or_unsafe_is_named_by_status_only(body: bytes) -> None:
    answer = anthropic_error_for_upstream(502, body)
    assert orjson.loads(answer.body) == {
        "type": "error",
        "error": {"type": "api_error", "message": "Upstream returned HTTP 502"},
    }


def test_a_status_outside_the_error_range_is_answered_as_500() -> None:
    assert anthropic_error(200, "odd").status == 500
    assert orjson.loads(anthropic_error(200, "odd").body)["error"]["type"] == "api_error"


def test_the_stream_error_event_makes_the_sdk_raise() -> None:
    start = b"".join(AnthropicStreamTranslator("m").start())
    event = error_event(529, "Overloaded")
    assert parsed_events(event) == [
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    ]
    with anthropic_client(start + event) as client:
        with pytest.raises(anthropic.APIStatusError) as raised:
            with client.messages.stream(model="m", max_tokens=5, messages=HELLO) as stream:
                stream.get_final_message()
    assert raised.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
