"""Which request headers go upstream and which response headers come back (the hot path's filters)."""

from __future__ import annotations

from anygate.api.http import Scope
from anygate.transport import Headers

# Never sent upstream: hop-by-hop headers, the client's credentials, and what identifies the client.
DROPPED_HEADERS = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"accept-encoding",
        b"authorization",
        b"x-api-key",
        b"api-key",
        b"cookie",
        b"forwarded",
        b"x-real-ip",
        b"true-client-ip",
        b"x-client-ip",
        b"x-request-id",
        b"x-anygate-timeout",
    }
)
DROPPED_PREFIXES = (b"cf-", b"x-forwarded-", b"x-amzn-", b"x-envoy-")
PASSED_RESPONSE_HEADERS = frozenset(
    {b"content-type", b"retry-after", b"openai-processing-ms", b"openai-model", b"openai-version"}
)
PASSED_RESPONSE_PREFIXES = (b"x-ratelimit-",)


def forwarded_headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    connection_tokens: frozenset[bytes] = frozenset()
    for name, value in scope["headers"]:
        if name == b"connection":
            # Headers the client names in Connection are hop-by-hop too (RFC 9110, 7.6.1).
            connection_tokens = frozenset(token.strip().lower() for token in value.split(b","))
        if name in DROPPED_HEADERS or name.startswith(DROPPED_PREFIXES):
            continue
        headers[name.decode("latin-1")] = value.decode("latin-1")
    for token in connection_tokens:
        headers.pop(token.decode("latin-1"), None)
    headers["accept-encoding"] = "identity"
    return headers


def response_headers(upstream: Headers, request_id: bytes) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-request-id", request_id)]
    for name, value in upstream.raw:
        lowered = name.lower()
        if lowered in PASSED_RESPONSE_HEADERS or lowered.startswith(PASSED_RESPONSE_PREFIXES):
            headers.append((lowered, value))
    return headers


def retry_after_header(upstream: Headers) -> dict[str, str] | None:
    value = upstream.get("retry-after")
    return {"retry-after": value} if value else None
