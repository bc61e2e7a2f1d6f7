"""The transport that talks to the network: pooled aiohttp sessions behind the SSRF-guarded resolver.

This module is the only one in anygate that imports aiohttp. Its exceptions become the gateway's own
errors in ``map_error`` (a request's failures) and the response's ``read``/``chunks`` (a body's).
Two sessions are kept per process, made on first use inside the running loop: one whose resolver may
return loopback and private addresses (for providers with ``allow_private_network``) and one whose
resolver may not. Link-local and metadata addresses are refused by both. A third carries requests through
an HTTP proxy: its resolver resolves only the proxy (the operator's own configuration, which may be on a
private network), so the upstream's host is resolved and checked before the request is sent
(``CheckedHosts``), under the request's own ``allow_private_network``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from ssl import SSLContext
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from anygate.egress import Proxy
from anygate.errors import GatewayError, UpstreamResponseTooLarge, UpstreamTimeout, UpstreamUnavailable
from anygate.netguard import UnsafeURL, check_address, check_url, literal_address
from anygate.transport.base import USER_AGENT, Headers, OutgoingRequest, Timeouts, check_declared_length

DNS_CACHE_SECONDS = 30
PROXY_AUTHENTICATION_REQUIRED = 407
CHECKED_HOSTS_LIMIT = 4096
SessionKind = bool | Literal["proxy"]
# Errors a request or a body read may raise that mean "the upstream failed", never a bug of ours.
NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError, UnsafeURL)


class GuardedResolver(AbstractResolver):
    """Resolves with the default resolver, then refuses the whole answer if any address is unsafe.

    aiohttp connects to exactly the addresses returned here, so a DNS answer cannot swap a checked
    address for an unchecked one between the check and the connect.
    """

    def __init__(self, allow_private_network: bool, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()
        self._allow_private_network = allow_private_network

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                check_address(ipaddress.ip_address(result["host"].split("%")[0]), self._allow_private_network)
            except UnsafeURL as exc:
                raise OSError(f"refused to connect to {host}: {exc}") from None
        return results

    async def close(self) -> None:
        await self._inner.close()


def map_error(exc: BaseException, origin: str) -> GatewayError:
    """aiohttp's (and the socket layer's) exceptions as gateway errors: no URL, header or key in the text."""
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeout(f"{origin} did not answer in time")
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # the proxy refused (407: its credentials)
        return UpstreamUnavailable(f"The proxy of {origin} refused the request (HTTP {exc.status})")
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return UpstreamUnavailable(f"Cannot connect to the proxy of {origin}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnavailable(f"Cannot connect to {origin}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamUnavailable(f"{origin} closed the connection")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamUnavailable(f"{origin} sent an incomplete response")
    if isinstance(exc, UnsafeURL):
        return UpstreamUnavailable(f"{origin} URL refused: {exc}")
    if isinstance(exc, aiohttp.InvalidURL):
        return UpstreamUnavailable(f"{origin} has an invalid URL")
    return UpstreamUnavailable(f"{origin} is unreachable ({type(exc).__name__})")


class AiohttpResponse:
    """An aiohttp response behind the transport's ``Response`` interface."""

    __slots__ = ("status", "headers", "_response", "_origin", "_max_body")

    def __init__(self, response: aiohttp.ClientResponse, origin: str, max_body: int | None = None) -> None:
        self.status = response.status
        self.headers = Headers(response.raw_headers)
        self._response = response
        self._origin = origin
        self._max_body = max_body

    async def read(self) -> bytes:
        limit = self._max_body
        try:
            if limit is None:
                return await self._response.read()
            check_declared_length(self.headers, limit, self._origin)
            body = bytearray()
            async for chunk in self._response.content.iter_any():
                body += chunk
                if len(body) > limit:
                    self._response.close()  # the rest is never read: the connection is dropped
                    raise UpstreamResponseTooLarge(self._origin, limit)
            return bytes(body)
        except NETWORK_ERRORS as exc:
            raise map_error(exc, self._origin) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except NETWORK_ERRORS as exc:
            raise map_error(exc, self._origin) from exc

    @property
    def ended(self) -> bool:
        return self._response.content.at_eof()

    def set_read_timeout(self, seconds: float) -> None:
        # aiohttp's read timer (``sock_read``) lives on the connection's protocol and restarts with every
        # byte that arrives; a body already read whole has no connection left and needs no timer.
        connection = self._response.connection
        protocol = connection.protocol if connection is not None else None
        if protocol is not None:
            protocol.read_timeout = max(seconds, 0.001)
            protocol.start_timeout()

    async def aclose(self) -> None:
        self._response.release()

    def __repr__(self) -> str:
        return f"AiohttpResponse(status={self.status}, origin={self._origin!r})"


class CheckedHosts:
    """Upstream hosts that resolved to allowed addresses, remembered for as long as the connector caches
    DNS answers: a request through a proxy checks its upstream's host here, not per request at the resolver."""

    __slots__ = ("_passed", "_ttl", "_resolver")

    def __init__(self, resolver: AbstractResolver, ttl: float = DNS_CACHE_SECONDS) -> None:
        self._passed: dict[tuple[str, int, bool], float] = {}
        self._ttl = ttl
        self._resolver = resolver

    async def check(self, url: str, allow_private_network: bool) -> None:
        """Raise UnsafeURL unless every address ``url``'s host resolves to is allowed (a host that does not
        resolve here is refused: where the proxy would send it cannot be checked)."""
        check_url(url, allow_private_network)  # shape, literal addresses, metadata names: no DNS
        parts = urlsplit(url)
        host = parts.hostname or ""
        if literal_address(host) is not None:
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key, loop = (host, port, allow_private_network), asyncio.get_running_loop()
        if self._passed.get(key, 0.0) > loop.time():
            return
        try:
            answers = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        except OSError:
            raise UnsafeURL(f"host {host} does not resolve here: where the proxy would send it is unchecked") from None
        for answer in answers:
            check_address(ipaddress.ip_address(answer["host"].split("%")[0]), allow_private_network)
        if len(self._passed) >= CHECKED_HOSTS_LIMIT:
            self._passed.clear()
        self._passed[key] = loop.time() + self._ttl

    async def close(self) -> None:
        await self._resolver.close()


class AiohttpTransport:
    """The process's pooled HTTP sessions; ``aclose()`` closes them. ``ssl``: the TLS context for upstreams
    (None: the system's trust store); ``resolver``: makes the DNS resolvers the guard asks (default: aiohttp's;
    tests map names to loopback)."""

    def __init__(
        self,
        connection_limit: int = 1000,
        ssl: SSLContext | None = None,
        resolver: Callable[[], AbstractResolver] = DefaultResolver,
    ) -> None:
        self._limit = connection_limit
        self._ssl = ssl
        self._make_resolver = resolver
        self._sessions: dict[SessionKind, aiohttp.ClientSession] = {}
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}
        self._checked: CheckedHosts | None = None  # made inside the running loop, with its resolver

    async def send(self, request: OutgoingRequest) -> AiohttpResponse:
        proxy = request.proxy
        try:
            if proxy is None:
                session = self._session(request.allow_private_network)
                response = await session.request(
                    request.method,
                    request.url,
                    data=request.body,
                    headers=request.headers,
                    timeout=self._client_timeout(request.timeouts),
                    allow_redirects=False,
                )
            else:
                response = await self._send_through(proxy, request)
        except NETWORK_ERRORS as exc:
            raise map_error(exc, request.origin) from exc
        return AiohttpResponse(response, request.origin, request.max_body)

    async def _send_through(self, proxy: Proxy, request: OutgoingRequest) -> aiohttp.ClientResponse:
        """Through ``proxy``: its headers go on the ``CONNECT`` of an ``https://`` tunnel, or with the request
        itself to an ``http://`` upstream (which the proxy forwards whole, absolute URL and all)."""
        if self._checked is None:
            self._checked = CheckedHosts(self._make_resolver())
        await self._checked.check(request.url, request.allow_private_network)
        tunnelled = request.url.startswith("https:")
        headers = request.headers if tunnelled else {**request.headers, **proxy.headers}
        response = await self._session("proxy").request(
            request.method,
            request.url,
            data=request.body,
            headers=headers,
            proxy=proxy.url,
            proxy_headers=proxy.headers if tunnelled and proxy.headers else None,
            timeout=self._client_timeout(request.timeouts),
            allow_redirects=False,
        )
        if response.status == PROXY_AUTHENTICATION_REQUIRED and not tunnelled:
            # The proxy's own refusal, not the upstream's answer (a tunnel's raises ClientHttpProxyError).
            response.release()
            raise UpstreamUnavailable(f"The proxy of {request.origin} refused the request (HTTP 407)")
        return response

    def _session(self, kind: SessionKind) -> aiohttp.ClientSession:
        """A session per kind: directly, to public addresses only (False) or to private ones too (True);
        or through a proxy ("proxy"), whose own address, the operator's choice, may be private (the
        upstream's host is checked before the request is sent)."""
        session = self._sessions.get(kind)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                ttl_dns_cache=DNS_CACHE_SECONDS,
                keepalive_timeout=30,
                resolver=GuardedResolver(kind is not False, self._make_resolver()),
                ssl=self._ssl if self._ssl is not None else True,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                headers={"User-Agent": USER_AGENT},
                skip_auto_headers=("Content-Type",),
                trust_env=False,
            )
            self._sessions[kind] = session
        return session

    def _client_timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        """aiohttp's timeout object for ``timeouts``, made once per distinct value (every provider reuses
        its own). Until the first byte the read timer is the first-byte timeout; ``set_read_timeout``
        changes it on an open response."""
        found = self._timeouts.get(timeouts)
        if found is None:
            found = aiohttp.ClientTimeout(
                total=timeouts.total,
                connect=timeouts.connect,
                sock_connect=timeouts.connect,
                sock_read=timeouts.first_byte,
            )
            if len(self._timeouts) < 1024:  # capped waits are per request; keep the cache small
                self._timeouts[timeouts] = found
        return found

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
        checked, self._checked = self._checked, None
        if checked is not None:
            await checked.close()
