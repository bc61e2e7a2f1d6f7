"""Errors in the Anthropic shape, so that the Anthropic SDK raises its own exception classes.

    anthropic_error(status, message) -> AnthropicError(status, body)
    anthropic_error_from(error: GatewayError) -> AnthropicError
    anthropic_error_for_upstream(status, body: bytes) -> AnthropicError   (an upstream's OpenAI-shape error)
    error_event(status, message) -> bytes                                 (the stream's ``event: error``)

The body is ``{"type":"error","error":{"type":...,"message":...}}``; the SDK picks its class from the HTTP
status (``BadRequestError`` 400, ``AuthenticationError`` 401, ``PermissionDeniedError`` 403,
``NotFoundError`` 404, ``RateLimitError`` 429, ``InternalServerError`` 5xx, ``OverloadedError`` 529), and the
error ``type`` names the kind the way Anthropic does.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from anygate.errors import GatewayError, openai_error_message

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class AnthropicError(NamedTuple):
    """What the edge sends: the status and the JSON body (headers such as Retry-After stay the caller's)."""

    status: int
    body: bytes


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status (``api_error`` for any other 5xx, ``invalid_request_error``
    for any other 4xx)."""
    known = ERROR_TYPES.get(status)
    if known is not None:
        return known
    return "api_error" if status >= 500 or status < 400 else "invalid_request_error"


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": error_type(status), "message": message}})


def anthropic_error(status: int, message: str) -> AnthropicError:
    """The error answer for a status (anything outside 400-599 is answered as 500)."""
    status = status if 400 <= status <= 599 else 500
    return AnthropicError(status, error_body(status, message))


def anthropic_error_from(error: GatewayError) -> AnthropicError:
    """A gateway error (its status and message, which names no secret) in the Anthropic shape."""
    return anthropic_error(error.status, error.message)


def anthropic_error_for_upstream(status: int, body: bytes) -> AnthropicError:
    """An upstream's error answer: its own message when it is a well-formed OpenAI-style error that echoes no
    secret (``anygate.errors.openai_error_message``), else a message naming only the status."""
    message = openai_error_message(body)
    return anthropic_error(status, message if message is not None else f"Upstream returned HTTP {status}")


def error_event(status: int, message: str) -> bytes:
    """The SSE ``error`` event that ends a stream which failed after it started."""
    return b"event: error\ndata: " + error_body(status, message) + b"\n\n"
