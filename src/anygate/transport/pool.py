"""Connections kept per origin, and opened only to addresses the SSRF guard allows.

A connection is opened to an address that was resolved and checked here (``GuardedAddresses``), never to
a name the socket layer resolves again, so a DNS answer cannot swap a checked address for an unchecked
one. Checked answers are remembered for ``DNS_CACHE_SECONDS``, as a pooled connection outlives them anyway.

Idle connections wait, newest first, to be reused; one the upstream closed is dropped when found, and
one idle past ``KEEPALIVE_SECONDS`` is closed by a sweep that runs only while any connection is idle.
At most ``limit`` connections are open at once across all origins: a request over the limit waits for
one to come back (or closes an idle one of another origin to make room).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from anygate.errors import UpstreamTimeout, UpstreamUnavailable
from anygate.netguard import UnsafeURL, check_address, literal_address
from anygate.transport.connection import Connection

DNS_CACHE_SECONDS = 30.0
KEEPALIVE_SECONDS = 30.0
STALE_AFTER_SECONDS = 1.0  # idle longer than this: checked for a close not yet seen before reuse
CHECKED_HOSTS_LIMIT = 4096


class Resolver(Protocol):
    """A DNS resolver: the addresses ``host`` has, as dictionaries with the address under ``"host"``
    (aiohttp's resolvers have this shape, so tests' name tables serve both transports)."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]: ...

    async def close(self) -> None: ...


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``), off the event loop."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC) -> list[Any]:
        answers = await asyncio.get_running_loop().getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        return [{"host": str(sockaddr[0]), "port": port} for *_, sockaddr in answers]

    async def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a connection goes, and under which guard: connections are pooled per origin."""

    scheme: str
    host: str
    port: int
    allow_private_network: bool


class GuardedAddresses:
    """Resolves a host and refuses the whole answer if any address is unsafe; remembers passed answers."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self._passed: dict[tuple[str, int, bool], tuple[float, list[str]]] = {}

    async def of(self, origin: Origin) -> list[str]:
        """The addresses to connect to for ``origin``. Raises UnsafeURL (a refused address) or OSError."""
        literal = literal_address(origin.host)
        if literal is not None:
            check_address(literal, origin.allow_private_network)
            return [str(literal)]
        key, now = (origin.host, origin.port, origin.allow_private_network), asyncio.get_running_loop().time()
        known = self._passed.get(key)
        if known is not None and known[0] > now:
            return known[1]
        answers = await self._resolver.resolve(origin.host, origin.port, socket.AF_UNSPEC)
        addresses = [str(answer["host"]).split("%")[0] for answer in answers]
        if not addresses:
            raise OSError(f"{origin.host} has no address")
        for address in addresses:
            check_address(ipaddress.ip_address(address), origin.allow_private_network)
        if len(self._passed) >= CHECKED_HOSTS_LIMIT:
            self._passed.clear()
        self._passed[key] = (now + DNS_CACHE_SECONDS, addresses)
        return addresses

    async def close(self) -> None:
        await self._resolver.close()


class ConnectionPool:
    """The process's connections to upstreams. ``ssl``: the TLS context for ``https`` (None: the system's
    trust store). Bound to the event loop it is first used in; used in another, it starts afresh."""

    def __init__(self, limit: int, ssl_context: ssl.SSLContext | None, resolver: Resolver) -> None:
        self._limit = max(1, limit)
        self._ssl = ssl_context
        self._addresses = GuardedAddresses(resolver)
        self._idle: dict[Origin, list[Connection]] = {}
        self._connections: set[Connection] = set()  # every open connection, idle or busy
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def acquire(self, origin: Origin, connect_timeout: float, label: str) -> Connection:
        """An idle connection to ``origin``, or a new one. Raises a GatewayError naming ``label``."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._abandon()
            self._loop = loop
        waiting_until: float | None = None
        while True:
            connection = self._idle_connection(origin)
            if connection is not None:
                return connection
            if len(self._connections) + self._opening < self._limit or self._close_one_idle():
                return await self._open(origin, connect_timeout, label)
            if waiting_until is None:  # at the limit: the connect timeout covers waiting for a connection too
                waiting_until = loop.time() + connect_timeout
            await self._wait_for_room(loop, waiting_until, label)

    async def _wait_for_room(self, loop: asyncio.AbstractEventLoop, until: float, label: str) -> None:
        waiter = loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(until):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._wake_one()  # given room but leaving (cancelled, timed out): the room is the next waiter's
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout(f"{label} did not answer in time (every connection was busy)") from None
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def open_fresh(self, origin: Origin, connect_timeout: float, label: str) -> Connection:
        """A new connection, whatever is idle: in place of a reused one that turned out stale (and was dropped,
        so the count under the limit stays the same)."""
        return await self._open(origin, connect_timeout, label)

    def release(self, connection: Connection) -> None:
        """Give a connection back after its exchange: kept for the next one if it may be, else closed."""
        connection.finish()
        if connection.reusable and self._loop is connection.loop:
            connection.idle_since = connection.loop.time()
            self._idle.setdefault(connection.key, []).append(connection)  # type: ignore[arg-type]
            if self._sweep is None:
                self._sweep = connection.loop.call_later(KEEPALIVE_SECONDS, self._sweep_idle)
        else:
            connection.close()
            self._forget(connection)
        self._wake_one()

    def discard(self, connection: Connection) -> None:
        """Drop a connection whose exchange did not end cleanly."""
        connection.abort()
        self._forget(connection)
        self._wake_one()

    async def aclose(self) -> None:
        connections = list(self._connections)
        self._connections.clear()
        self._idle.clear()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for connection in connections:
            connection.close()
        for connection in connections:
            await connection.wait_closed()
        await self._addresses.close()

    # ------------------------------------------------------------------------------------ internals

    def _idle_connection(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            # A connection idle for a while may have been closed by the upstream a moment ago (its idle
            # timeout): asked directly, since the close may not have reached the event loop yet.
            fresh = connection.loop.time() - connection.idle_since < STALE_AFTER_SECONDS
            if connection.reusable and (fresh or not connection.has_news()):
                return connection
            connection.close()
            self._forget(connection)
        return None

    async def _open(self, origin: Origin, connect_timeout: float, label: str) -> Connection:
        loop = asyncio.get_running_loop()
        self._opening += 1
        try:
            async with asyncio.timeout(connect_timeout):
                addresses = await self._addresses.of(origin)
                connection = await self._connect(loop, origin, addresses)
        except UnsafeURL as exc:
            raise UpstreamUnavailable(f"{label} URL refused: {exc}") from None
        except TimeoutError:
            raise UpstreamTimeout(f"{label} did not answer in time") from None
        except ssl.SSLError:
            raise UpstreamUnavailable(f"Cannot connect to {label} (TLS failed)") from None
        except OSError:
            raise UpstreamUnavailable(f"Cannot connect to {label}") from None
        finally:
            self._opening -= 1
        self._connections.add(connection)
        return connection

    async def _connect(self, loop: asyncio.AbstractEventLoop, origin: Origin, addresses: list[str]) -> Connection:
        """A connection to the first of ``addresses`` that accepts one."""
        secure = origin.scheme == "https"
        context: ssl.SSLContext | None = None
        if secure:
            if self._ssl is None:  # the system's trust store, made on first use (it reads every CA certificate)
                self._ssl = ssl.create_default_context()
            context = self._ssl
        failure: OSError | None = None
        for address in addresses:
            try:
                _, connection = await loop.create_connection(
                    lambda: Connection(loop, origin, self._lost),
                    address,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if secure else None,
                )
            except OSError as exc:  # ssl.SSLError is an OSError too: the next address may serve
                failure = exc
                continue
            sock = connection.transport.get_extra_info("socket") if connection.transport else None
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return connection
        assert failure is not None
        raise failure

    def _forget(self, connection: Connection) -> None:
        self._connections.discard(connection)

    def _lost(self, connection: Connection) -> None:
        """A connection closed (by either side): its place under the limit is free at once, even when a
        response on it is never given back."""
        if connection in self._connections:
            self._forget(connection)
            self._wake_one()

    def _close_one_idle(self) -> bool:
        """Close the longest-idle connection of any origin to make room; False when none is idle."""
        oldest: Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        self._idle[oldest.key].remove(oldest)  # type: ignore[index]
        oldest.close()
        self._forget(oldest)
        return True

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep_idle(self) -> None:
        self._sweep = None
        loop = self._loop
        if loop is None:
            return
        cutoff = loop.time() - KEEPALIVE_SECONDS
        remaining = False
        for origin, idle in list(self._idle.items()):
            kept = []
            for connection in idle:
                if connection.idle_since > cutoff and connection.reusable:
                    kept.append(connection)
                else:
                    connection.close()
                    self._forget(connection)
            if kept:
                self._idle[origin] = kept
                remaining = True
            else:
                del self._idle[origin]
        if remaining:
            self._sweep = loop.call_later(KEEPALIVE_SECONDS / 2, self._sweep_idle)

    def _abandon(self) -> None:
        """Forget connections made in another event loop (closed with it, or unusable from this one)."""
        for connection in self._connections:
            if not connection.loop.is_closed():
                connection.close()
        self._connections.clear()
        self._idle.clear()
        self._waiters.clear()
        self._opening = 0
        self._sweep = None
