"""What the contract's modules share (the contract itself: ``conftest.py``): the names the transports
resolve, requests to the loopback server, responses opened and read with a bound on any hang, server
scripts every module uses, and the check that an error names the origin only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

from anygate.errors import GatewayError
from anygate.transport.base import OutgoingRequest, Response, Transport
from tests.support.raw_server import RawConnection, RawServer, response

ORIGIN = "Provider 'scripted'"
SECRET_PATH = "/v1/secret-path?key=hunter2"  # error messages name the origin, never this
NAMES = {"upstream.test": "127.0.0.1", "evil.test": "169.254.169.254"}
HANG_BOUND = 10.0  # seconds: only so that a bug fails the test instead of hanging it
MiB = 1 << 20

T = TypeVar("T")
TransportFactory = Callable[..., Transport]


def differs_on_aiohttp(request: pytest.FixtureRequest, transport_kind: str, reason: str) -> None:
    """Where aiohttp deliberately does otherwise: expected to fail on it, and only on it."""
    if transport_kind == "aiohttp":
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


def outgoing(url: str, method: str = "GET", **options: Any) -> OutgoingRequest:
    """A request to the loopback server (a private address: allowed unless the test says otherwise)."""
    return OutgoingRequest(method, url, **{"allow_private_network": True, "origin": ORIGIN, **options})


async def within(awaitable: Awaitable[T], seconds: float = HANG_BOUND) -> T:
    return await asyncio.wait_for(awaitable, seconds)


@asynccontextmanager
async def opened(transport: Transport, request: OutgoingRequest) -> AsyncIterator[Response]:
    """The response to ``request``, closed afterwards whatever happened (as the upstream client does)."""
    reply = await within(transport.send(request))
    try:
        yield reply
    finally:
        await within(reply.aclose())


async def body_of(reply: Response, how: str) -> bytes:
    """The whole body, by ``read()`` or by joining ``chunks()``."""
    if how == "read":
        return await within(reply.read())
    return await within(joined(reply))


async def fetched(transport: Transport, request: OutgoingRequest, how: str = "read") -> bytes:
    """The body of the answer to ``request``, read whole and the response closed."""
    async with opened(transport, request) as reply:
        return await body_of(reply, how)


async def joined(reply: Response) -> bytes:
    return b"".join([data async for data in reply.chunks()])


def answers_by_target(status: int = 200) -> Callable[[RawConnection], Awaitable[None]]:
    """A keep-alive script: every request on the connection answered with ``answer to <target>``."""

    async def answer(connection: RawConnection) -> None:
        while (request := await connection.read_request()) is not None:
            await connection.send(response(status, f"answer to {request.target}".encode()))

    return answer


async def never_answers(connection: RawConnection) -> None:
    await connection.read_request()
    await asyncio.Event().wait()  # until the server stops


async def everything_sent_is_received(transport: Transport, server: RawServer) -> None:
    """Close the transport and wait until the server has read every connection to its end."""
    await within(transport.aclose())
    await server.wait_until(lambda: server.closed == server.accepted, "every connection was read to its end")


def assert_names_origin_only(error: GatewayError, request: OutgoingRequest) -> None:
    message = str(error)
    assert ORIGIN in message
    assert request.url not in message and "secret-path" not in message and "hunter2" not in message


BODY_READS = pytest.mark.parametrize("how", ["read", "chunks"])
