"""The transport that talks to the network: HTTP/1.1 over pooled, SSRF-guarded connections.

A request to an upstream is written as one buffer (head and body) on a kept-alive connection
(``anygate.transport.pool``), and its response is parsed as it arrives (``anygate.transport.connection``).
It is the hot path's client: the library aiohttp costs several times more CPU per request, most of it
in machinery a gateway does not use (cookies, multidicts, redirects, per-request timer objects).

What it does not do itself: a request through an HTTP proxy (``OutgoingRequest.proxy``) goes through the
aiohttp transport, loaded on first use, which speaks ``CONNECT`` and checks the upstream's host before
anything is sent to the proxy (``anygate.transport.aiohttp_transport``).

A kept-alive connection the upstream closed while it was idle is not reused: the pool drops it when the
close has reached the event loop, and asks the socket itself of one idle for more than a second. When a
reused connection still ends before a single byte of the answer, an idempotent request (GET...) is written
once more on a new connection; a POST is not: an upstream that read it and died before answering may
have run (and billed) it, so the failure goes to the dispatcher, whose retry policy decides.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from anygate.errors import UpstreamResponseTooLarge, UpstreamUnavailable
from anygate.transport.base import USER_AGENT, Headers, OutgoingRequest, Response, check_declared_length
from anygate.transport.connection import Connection
from anygate.transport.pool import ConnectionPool, Origin, Resolver, SystemResolver

if TYPE_CHECKING:
    from anygate.transport.aiohttp_transport import AiohttpTransport

DEFAULT_PORTS = {"http": 80, "https": 443}
# Framing and connection management are the transport's own: never taken from a request's headers.
OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"})
TARGETS_LIMIT = 4096
# Resent once when a kept-alive connection turns out closed: a POST is not, since an upstream that read it
# and died before answering may have run (and billed) it; the dispatcher's own retries decide for it.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
URL_SAFE = "/?#[]@!$&'()*+,;=%-._~:"  # RFC 3986's reserved and unreserved characters, and existing escapes


class Target:
    """What a URL means on the wire: where to connect (under which guard), the request target and the
    ``Host`` header. Made once per URL and kept: a provider's requests go to a handful of URLs."""

    __slots__ = ("origin", "path", "host_header")

    def __init__(self, url: str, allow_private_network: bool) -> None:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError("not an http(s) URL with a host")
        host = parts.hostname
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        port = parts.port or DEFAULT_PORTS[parts.scheme]
        shown = f"[{host}]" if ":" in host else host
        self.origin = Origin(parts.scheme, host, port, allow_private_network)
        # Spaces, control characters and non-ASCII in a path built from a client's input (a model name) are
        # sent percent-encoded: never a second word or a line break in the request line.
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.path = quote(target, safe=URL_SAFE)
        self.host_header = shown if port == DEFAULT_PORTS[parts.scheme] else f"{shown}:{port}"


def request_head(method: str, target: Target, headers: Mapping[str, str], body_length: int | None) -> bytes:
    """The request line and headers, ending with the blank line. A header that would add a line of its
    own (CR or LF in a name or value) raises ValueError: nothing is sent."""
    lines = [f"{method} {target.path} HTTP/1.1", f"Host: {target.host_header}"]
    has_agent = has_accept = has_encoding = False
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in OWN_HEADERS:
            continue
        has_agent = has_agent or lowered == "user-agent"
        has_accept = has_accept or lowered == "accept"
        has_encoding = has_encoding or lowered == "accept-encoding"
        lines.append(f"{name}: {value}")
    if not has_agent:
        lines.append(f"User-Agent: {USER_AGENT}")
    if not has_accept:
        lines.append("Accept: */*")
    if not has_encoding:
        lines.append("Accept-Encoding: gzip, deflate")
    if body_length is not None:
        lines.append(f"Content-Length: {body_length}")
    text = "\r\n".join(lines) + "\r\n\r\n"
    # Every line break is one this function wrote: one CR and one LF per line and the blank line.
    breaks = len(lines) + 1
    if text.count("\n") != breaks or text.count("\r") != breaks:
        raise ValueError("a request header holds a line break")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def body_length(method: str, body: bytes | None) -> int | None:
    """The ``Content-Length`` to send: the body's, or 0 for a method that has a body (some servers answer
    411 Length Required to a POST without one); None for a request without a body."""
    if body is not None:
        return len(body)
    return 0 if method in ("POST", "PUT", "PATCH") else None


class NetworkResponse:
    """An open response on a pooled connection. Reading the body to its end gives the connection back."""

    __slots__ = ("status", "headers", "_connection", "_pool", "_request")

    def __init__(self, connection: Connection, pool: ConnectionPool, request: OutgoingRequest) -> None:
        self.status = connection.status
        self.headers = Headers(connection.raw_headers)
        self._connection: Connection | None = connection
        self._pool = pool
        self._request = request

    async def read(self) -> bytes:
        connection = self._connection
        if connection is None:
            return b""
        parts: list[bytes] = []
        limit, size = self._request.max_body, 0
        try:
            if limit is not None:
                check_declared_length(self.headers, limit, self._request.origin)
            while (piece := await connection.next_piece()) is not None:
                parts.append(piece)
                size += len(piece)
                if limit is not None and size > limit:
                    raise UpstreamResponseTooLarge(self._request.origin, limit)
        except BaseException:
            self._drop()
            raise
        self._give_back()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        try:
            while (piece := await connection.next_piece()) is not None:
                yield piece
        except BaseException:
            self._drop()
            raise
        self._give_back()

    @property
    def ended(self) -> bool:
        return self._connection is None or self._connection.body_ended

    def set_read_timeout(self, seconds: float) -> None:
        if self._connection is not None:
            self._connection.set_read_timeout(seconds)

    async def aclose(self) -> None:
        connection = self._connection
        if connection is None:
            return
        if connection.complete and connection.error is None:
            connection.take()  # an answer read in whole but not taken: the connection may still serve
        if connection.reusable:
            self._give_back()
        else:
            self._drop()

    def _give_back(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection)

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.discard(connection)

    def __repr__(self) -> str:
        return f"NetworkResponse(status={self.status})"


class NetworkTransport:
    """The process's connections to upstreams; ``aclose()`` closes them. ``ssl``: the TLS context for
    upstreams (None: the system's trust store); ``resolver``: makes the DNS resolver the guard asks
    (default: the system's; tests map names to loopback)."""

    def __init__(
        self,
        connection_limit: int = 1000,
        ssl: ssl.SSLContext | None = None,
        resolver: Callable[[], Resolver] | None = None,
    ) -> None:
        self._limit = connection_limit
        self._ssl = ssl
        self._make_resolver = resolver
        self._pool = ConnectionPool(connection_limit, ssl, resolver() if resolver else SystemResolver())
        self._targets: dict[tuple[str, bool], Target] = {}
        self._proxied: AiohttpTransport | None = None

    async def send(self, request: OutgoingRequest) -> Response:
        if request.proxy is not None:
            return await self._through_proxy().send(request)
        target = self._target(request)
        body = request.body
        try:
            head = request_head(request.method, target, request.headers, body_length(request.method, body))
        except ValueError:
            raise UpstreamUnavailable(f"{request.origin} was not sent a request: a header holds a line break") from None
        data = head if body is None else head + body
        origin = target.origin
        timeouts = request.timeouts
        loop = asyncio.get_running_loop()
        started = loop.time()
        connection = await self._pool.acquire(origin, timeouts.connect, request.origin)
        reused = connection.exchanges > 0
        await self._exchange(connection, request, data, started)
        if reused and connection.lost_before_answer and request.method in IDEMPOTENT_METHODS:
            # The upstream had closed the kept-alive connection: it never saw this request.
            self._pool.discard(connection)
            connection = await self._pool.open_fresh(origin, timeouts.connect, request.origin)
            await self._exchange(connection, request, data, started)
        if connection.error is not None:
            self._pool.discard(connection)
            raise connection.error
        return NetworkResponse(connection, self._pool, request)

    async def _exchange(self, connection: Connection, request: OutgoingRequest, data: bytes, started: float) -> None:
        """Write the request and wait for the response's head (or the exchange's failure)."""
        timeouts = request.timeouts
        total = timeouts.total
        if total is not None:
            total = max(total - (connection.loop.time() - started), 0.001)
        try:
            await connection.begin(request.origin, data, timeouts.first_byte, total, request.method)
        except BaseException:  # cancelled (the client went away): the connection is mid-exchange
            self._pool.discard(connection)
            raise

    def _target(self, request: OutgoingRequest) -> Target:
        key = (request.url, request.allow_private_network)
        target = self._targets.get(key)
        if target is None:
            try:
                target = Target(request.url, request.allow_private_network)
            except ValueError:
                raise UpstreamUnavailable(f"{request.origin} has an invalid URL") from None
            if len(self._targets) >= TARGETS_LIMIT:
                self._targets.clear()
            self._targets[key] = target
        return target

    def _through_proxy(self) -> AiohttpTransport:
        if self._proxied is None:
            from anygate.transport.aiohttp_transport import AiohttpTransport

            if self._make_resolver is None:
                self._proxied = AiohttpTransport(self._limit, self._ssl)
            else:
                self._proxied = AiohttpTransport(self._limit, self._ssl, self._make_resolver)  # type: ignore[arg-type]
        return self._proxied

    async def aclose(self) -> None:
        await self._pool.aclose()
        proxied, self._proxied = self._proxied, None
        if proxied is not None:
            await proxied.aclose()
