"""The one exception hierarchy of anygate, mapped to the OpenAI error shape at the edge.

    GatewayError                      status type                    code
    ├── InvalidRequest                400    invalid_request_error   (varies)
    │   ├── BodyTooLarge              413    invalid_request_error   body_too_large
    │   ├── RequestTimeout            408    invalid_request_error   request_timeout
    │   └── HeadersTooLarge           431    invalid_request_error   headers_too_large
    ├── AuthenticationFailed          401    authentication_error    invalid_api_key
    │   └── MissingProviderKey        401    authentication_error    missing_provider_key
    ├── PermissionDenied              403    permission_error        (varies)
    │   └── PriceUnknown              403    permission_error        price_unknown
    ├── NotFound                      404    not_found_error         (varies)
    │   ├── ModelNotFound             404    not_found_error         model_not_found
    │   └── RouteNotFound             404    not_found_error         route_not_found
    ├── MethodNotAllowed              405    invalid_request_error   method_not_allowed (with Allow)
    ├── Conflict                      409    invalid_request_error   conflict
    ├── RateLimited                   429    rate_limit_error        rate_limit_exceeded
    │   └── QuotaExceeded             429    insufficient_quota      insufficient_quota
    ├── UpstreamUnavailable           502    upstream_error          upstream_unavailable
    │   ├── UpstreamStatusError       (upstream's status, error body passed through when well formed)
    │   ├── UpstreamRedirect          502    upstream_error          upstream_redirect (never followed)
    │   ├── UpstreamEventTooLarge     502    upstream_error          upstream_event_too_large
    │   └── AllDeploymentsFailed      502    upstream_error          all_deployments_failed
    ├── UpstreamTimeout               504    upstream_timeout        upstream_timeout
    └── ServiceUnavailable            503    service_unavailable     (varies)

``retryable`` says whether another attempt (same or another deployment) may succeed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson


class GatewayError(Exception):
    """An error with everything needed to answer the client in the OpenAI error shape."""

    status: int = 500
    type: str = "internal_error"
    code: str | None = "internal_error"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def fresh_copy(self) -> GatewayError:
        """The same error with headers of its own (a remembered failure answered again)."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.args = self.args
        clone.headers = {k: v for k, v in self.headers.items() if k != "x-request-id"}
        return clone

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body_bytes(self) -> bytes:
        return orjson.dumps(self.body())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, message={self.message!r})"


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class BodyTooLarge(InvalidRequest):
    status = 413
    code = "body_too_large"


class RequestTimeout(InvalidRequest):
    """The client did not send its request's headers or body in time (answered by the server layer)."""

    status = 408
    code = "request_timeout"


class HeadersTooLarge(InvalidRequest):
    """The request line and headers are larger, or more, than the server layer accepts."""

    status = 431
    code = "headers_too_large"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class MissingProviderKey(AuthenticationFailed):
    code = "missing_provider_key"

    def __init__(self, provider_id: str) -> None:
        super().__init__(f"No API key configured for {provider_id}")


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class PriceUnknown(PermissionDenied):
    """A hard USD budget cannot be enforced on a model whose price nobody knows."""

    code = "price_unknown"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist or is not served here", param="model")


class RouteNotFound(NotFound):
    code = "route_not_found"

    def __init__(self, path: str) -> None:
        super().__init__(f"Route not implemented: {path}")


class MethodNotAllowed(GatewayError):
    """A known path asked with a method it does not answer; ``Allow`` lists the ones it does."""

    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"

    def __init__(self, method: str, path: str, allowed: Iterable[str]) -> None:
        methods = sorted(set(allowed))
        super().__init__(f"Method {method} not allowed for {path} (allowed: {', '.join(methods)})")
        self.headers["allow"] = ", ".join(methods)


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        headers = {"retry-after": str(max(1, round(retry_after)))} if retry_after is not None else None
        super().__init__(message, code=code, headers=headers)
        self.retry_after = retry_after


class QuotaExceeded(RateLimited):
    """A budget is used up: the official SDKs are told not to retry (``x-should-retry: false``), as seconds
    of waiting do not free a budget."""

    type = "insufficient_quota"
    code = "insufficient_quota"
    retryable = False

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after, code=code)
        self.headers["x-should-retry"] = "false"


class UpstreamUnavailable(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_unavailable"
    retryable = True


class UpstreamStatusError(UpstreamUnavailable):
    """The upstream answered with an error status; its body is passed on only when well formed."""

    def __init__(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, secrets: Sequence[str] = ()
    ) -> None:
        """``secrets``: what was sent upstream with the request (keys, header values), never shown back."""
        self.status = status
        body = redact_secrets(body, secrets)
        upstream_message = openai_error_message(body)
        self.upstream_body = body if upstream_message is not None else None
        self.retryable = status in (408, 409, 429) or status >= 500
        self.type = "rate_limit_error" if status == 429 else "upstream_error"
        # The upstream's own words help a library user; they are passed on only when they are safe to show.
        message = f"Upstream returned HTTP {status}" + (f": {upstream_message}" if upstream_message else "")
        super().__init__(message, code=f"upstream_http_{status}", headers=headers)

    def body_bytes(self) -> bytes:
        return self.upstream_body if self.upstream_body is not None else super().body_bytes()


class UpstreamRedirect(UpstreamUnavailable):
    """The upstream answered with a redirect: not followed (it could point anywhere), not retried."""

    code = "upstream_redirect"
    retryable = False


class UpstreamEventTooLarge(UpstreamUnavailable):
    """A stream event larger than ``max_sse_event_bytes``: the stream ends here, never buffered further.

    ``events`` are the whole events that came before it in the same chunk (still the client's)."""

    code = "upstream_event_too_large"
    retryable = False

    def __init__(self, limit: int, events: list[bytes] | None = None) -> None:
        super().__init__(f"The upstream sent a stream event larger than the limit of {limit} bytes")
        self.events = events or []


class UpstreamResponseTooLarge(UpstreamUnavailable):
    """A whole (not streamed) answer longer than ``max_response_bytes``: read no further, never buffered."""

    code = "upstream_response_too_large"
    retryable = False

    def __init__(self, origin: str, limit: int) -> None:
        super().__init__(f"{origin} sent an answer larger than the limit of {limit} bytes")


class AllDeploymentsFailed(UpstreamUnavailable):
    code = "all_deployments_failed"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_timeout"
    code = "upstream_timeout"
    retryable = True


class ServiceUnavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "service_unavailable"


class ConfigError(Exception):
    """A configuration problem found at start; the message names the field and the file."""


class NotReady(Exception):
    """A readiness probe's failure whose message is safe to show in ``/health/ready`` (no secret in it)."""


def openai_error_message(body: bytes) -> str | None:
    """The message of a well-formed OpenAI-style error body that echoes no secret, else None."""
    if not body or len(body) > 65536:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), dict):
        return None
    message = parsed["error"].get("message")
    # Any member may echo a credential back (``param``, ``code``, extra fields), not just the message.
    if not isinstance(message, str) or looks_like_secret(body.decode("utf-8", "replace")):
        return None
    return message


REDACTED = b"***"
MIN_SECRET_LENGTH = 8  # shorter values (a header like ``X-Tenant: cs``) are no secret, and would mangle text


def redact_secrets(data: bytes, secrets: Iterable[str]) -> bytes:
    """``data`` with every occurrence of each secret (as sent, and as a JSON string escapes it) replaced by
    ``***``: an upstream's error may echo the key it was given, whatever the key looks like."""
    forms = {form for secret in secrets if len(secret) >= MIN_SECRET_LENGTH for form in secret_forms(secret)}
    for form in sorted(forms, key=len, reverse=True):  # a secret inside a longer one: the longer first
        if form in data:
            data = data.replace(form, REDACTED)
    return data


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``redact_secrets`` for a message already decoded."""
    return redact_secrets(text.encode("utf-8", "surrogateescape"), secrets).decode("utf-8", "surrogateescape")


def secret_forms(secret: str) -> set[bytes]:
    """A secret as it may appear in a body: as sent, in a JSON string, with ``/`` escaped (as PHP does)."""
    raw = secret.encode("utf-8", "surrogateescape")
    escaped = orjson.dumps(secret)[1:-1]
    return {raw, escaped, escaped.replace(b"/", b"\\/")}


def looks_like_secret(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in ("sk-", "bearer ", "api_key=", "apikey="))
