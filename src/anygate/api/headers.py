"""Which request headers go upstream and which response headers come back (the hot path's filters)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

from anygate.accounting.enforcer import Admission
from anygate.api.http import NOSNIFF, Scope
from anygate.errors import GatewayError
from anygate.transport import Headers

# Never sent upstream: hop-by-hop headers, the client's credentials, what identifies the client, and what
# chooses the account the provider's key bills.
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
        # Which account the operator's provider key bills: the provider's ``headers`` set these, never a
        # client (it would move its spend to another organization or project of the operator's).
        b"openai-organization",
        b"openai-project",
        b"x-goog-user-project",
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


def response_headers(
    upstream: Headers, request_id: bytes, own_limits: list[tuple[bytes, bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    """The headers of an upstream's answer that reach the client. ``own_limits``: the caller's own
    ``x-ratelimit-*`` headers (a key with limits or budgets), which replace the upstream's: those describe
    the gateway's account at the provider, not the caller."""
    headers = [(b"x-request-id", request_id), NOSNIFF]
    for name, value in upstream.raw:
        lowered = name.lower()
        if lowered in PASSED_RESPONSE_HEADERS or (lowered.startswith(PASSED_RESPONSE_PREFIXES) and own_limits is None):
            headers.append((lowered, value))
    if own_limits is not None:
        headers.extend(own_limits)
    return headers


def answer_error_headers(error: GatewayError, admission: Admission | None) -> None:
    """The headers an error answer of a model route carries besides its own: the caller's ``x-ratelimit-*``
    (a refusal by the enforcer has them already), and on every 429 a ``Retry-After`` in whole seconds (an
    upstream's date or fraction made so; none known: 1)."""
    if admission is not None and admission.headroom and not any(n.startswith("x-ratelimit-") for n in error.headers):
        error.headers.update(admission.headroom.error_headers())
    if error.status == 429:
        error.headers["retry-after"] = str(retry_after_in_seconds(error.headers.get("retry-after")))


def retry_after_in_seconds(value: str | None, now: datetime | None = None) -> int:
    """A ``Retry-After`` value (seconds, or an HTTP date) as whole seconds, at least 1."""
    if value is None:
        return 1
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 1
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(1, math.ceil(seconds)) if math.isfinite(seconds) else 1


def limit_headers(admission: Admission | None) -> list[tuple[bytes, bytes]] | None:
    """The caller's ``x-ratelimit-*`` headers from its reservation; None for a caller nothing limits."""
    if admission is None or not admission.headroom:
        return None
    return admission.headroom.headers()


def retry_after_header(upstream: Headers) -> dict[str, str] | None:
    value = upstream.get("retry-after")
    return {"retry-after": value} if value else None


# The management API and the console: never framed, no referrer sent on, and for the console a strict
# Content-Security-Policy (its scripts, styles and data come from its own origin only; nothing inline).
MANAGEMENT_SECURITY_HEADERS = (NOSNIFF, (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"))
CONSOLE_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
CONSOLE_SECURITY_HEADERS = (*MANAGEMENT_SECURITY_HEADERS, (b"content-security-policy", CONSOLE_CSP))


def security_headers(path: str) -> tuple[tuple[bytes, bytes], ...]:
    return CONSOLE_SECURITY_HEADERS if path.startswith("/ui") else MANAGEMENT_SECURITY_HEADERS


def relative_locations(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers with an absolute ``Location`` cut to its path and query. The frameworks build the URL of a
    redirect (``/ui`` to ``/ui/``, a trailing slash) from the request's ``Host`` header, which the client
    chooses: an absolute one would send the browser to any host the request named."""
    return [(name, relative_url(value) if name.lower() == b"location" else value) for name, value in headers]


def relative_url(url: bytes) -> bytes:
    """``url`` without scheme and host; its path never starts with ``//`` (that would name a host again)."""
    parts = urlsplit(url)
    if not parts.scheme and not parts.netloc and not url.startswith(b"//"):
        return url
    path = b"/" + parts.path.lstrip(b"/")
    return urlunsplit((b"", b"", path, parts.query, parts.fragment))
