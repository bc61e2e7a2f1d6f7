"""The transport that talks to the network: pooled aiohttp sessions behind the SSRF-guarded resolver.

This module is the only one in anygate that imports aiohttp. Its exceptions become the gateway's own
errors in ``map_error`` (a request's failures) and the response's ``read``/``chunks`` (a body's).
Two sessions are kept per process, made on first use inside the running loop: one whose resolver may
return loopback and private addresses (for providers with ``allow_private_network``) and one whose
resolver may not. Link-local and metadata addresses are refused by both.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from anygate.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from anygate.netguard import UnsafeURL, check_address
from anygate.transport.base import Headers, OutgoingRequest, Timeouts

USER_AGENT = "anygate/0.1"
# Errors a request or a body read may raise that mean "the upstream failed", never a bug of ours.
NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError, UnsafeURL)


class GuardedResolver(AbstractResolver):
    """Resolves with the default resolver, then refuses the whole answer if any address is unsafe.

    aiohttp connects to exactly the addresses returned here, so a DNS answer cannot swap a checked
    address for an unchecked one between the check and the connect.
    """

    def __init__(self, allow_private_network: bool) -> None:
        self._inner = DefaultResolver()
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

    __slots__ = ("status", "headers", "_response", "_origin")

    def __init__(self, response: aiohttp.ClientResponse, origin: str) -> None:
        self.status = response.status
        self.headers = Headers(response.raw_headers)
        self._response = response
        self._origin = origin

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except NETWORK_ERRORS as exc:
            raise map_error(exc, self._origin) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except NETWORK_ERRORS as exc:
            raise map_error(exc, self._origin) from exc

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


class AiohttpTransport:
    """The process's pooled HTTP sessions; ``aclose()`` closes them."""

    def __init__(self, connection_limit: int = 1000) -> None:
        self._limit = connection_limit
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}

    async def send(self, request: OutgoingRequest) -> AiohttpResponse:
        session = self._session(request.allow_private_network)
        try:
            response = await session.request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=self._client_timeout(request.timeouts),
                allow_redirects=False,
            )
        except NETWORK_ERRORS as exc:
            raise map_error(exc, request.origin) from exc
        return AiohttpResponse(response, request.origin)

    def _session(self, allow_private_network: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(allow_private_network)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                ttl_dns_cache=30,
                keepalive_timeout=30,
                resolver=GuardedResolver(allow_private_network),
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                headers={"User-Agent": USER_AGENT},
                skip_auto_headers=("Content-Type",),
                trust_env=False,
            )
            self._sessions[allow_private_network] = session
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
