"""The pool: keep-alive connections reused, a connection the response says will close not reused, a
response closed before its body not poisoning the pool, a pooled connection the server closed replaced
(and retried once when it closes under the request), idle connections closed with the transport, the
connection limit held."""

from __future__ import annotations

import asyncio

import pytest

from anygate.errors import UpstreamUnavailable
from tests.support.raw_server import CHUNKED, LAST_CHUNK, RawConnection, RawServer, chunk, head, response
from tests.transport.contract import (
    BODY_READS,
    MiB,
    TransportFactory,
    answers_by_target,
    body_of,
    fetched,
    opened,
    outgoing,
    within,
)

pytestmark = pytest.mark.sockets  # every test talks to a server on a loopback port


@BODY_READS
async def test_sequential_requests_read_whole_share_one_connection(make_transport: TransportFactory, how: str) -> None:
    async with RawServer(answers_by_target()) as server:
        transport = make_transport()
        for number in range(5):
            async with opened(transport, outgoing(server.url(f"/{number}"))) as reply:
                assert await body_of(reply, how) == f"answer to /{number}".encode()
        assert server.accepted == 1


@pytest.mark.parametrize(
    "ending", [b"HTTP/1.1 200 OK\r\nConnection: close\r\n", b"HTTP/1.0 200 OK\r\n"], ids=["close", "http-1.0"]
)
async def test_a_connection_the_response_says_will_close_is_not_reused(
    make_transport: TransportFactory, ending: bytes
) -> None:
    async def answer_then_ignore(connection: RawConnection) -> None:
        request = await connection.read_request()
        if request is not None:
            body = f"answer to {request.target}".encode()
            await connection.send(ending + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await asyncio.Event().wait()  # open, but deaf: a request sent here would never be answered

    async with RawServer(answer_then_ignore) as server:
        transport = make_transport()
        for number in range(2):
            assert await fetched(transport, outgoing(server.url(f"/{number}"))) == f"answer to /{number}".encode()
        assert server.accepted == 2


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_response_closed_before_its_body_does_not_poison_the_pool(
    make_transport: TransportFactory, framing: str
) -> None:
    big = b"x" * MiB  # more than any socket buffer holds: most of it is still unread at aclose()

    async def answer(connection: RawConnection) -> None:
        while (request := await connection.read_request()) is not None:
            if request.target != "/big":
                await connection.send(response(200, f"answer to {request.target}".encode()))
            elif framing == "chunked":
                await connection.send(head(200, CHUNKED) + chunk(big) + LAST_CHUNK)
            else:
                await connection.send(response(200, big))

    async with RawServer(answer) as server:
        transport = make_transport()
        early = await within(transport.send(outgoing(server.url("/big"))))
        await within(early.aclose())
        async with opened(transport, outgoing(server.url("/after"))) as reply:
            assert reply.status == 200
            assert await within(reply.read()) == b"answer to /after"


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_pooled_connection_the_server_closed_while_idle_is_replaced(
    make_transport: TransportFactory, method: str
) -> None:
    async def answer_once(connection: RawConnection) -> None:
        request = await connection.read_request()
        if request is not None:  # a keep-alive answer, then the server closes: its idle timeout, early
            await connection.send(response(200, f"answer to {request.target}".encode()))

    async with RawServer(answer_once) as server:
        transport = make_transport()
        assert await fetched(transport, outgoing(server.url("/first"), method, body=b"{}")) == b"answer to /first"
        await server.wait_until(lambda: server.closed == 1, "the server closed the first connection")
        assert await fetched(transport, outgoing(server.url("/second"), method, body=b"{}")) == b"answer to /second"
        assert server.accepted == 2


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_pooled_connection_closing_as_the_request_is_written_is_retried_once_when_idempotent(
    make_transport: TransportFactory, method: str
) -> None:
    # The upstream's idle timeout crossing the next request: the connection ends before a byte of the
    # answer. A GET is written again on a new connection; a POST is not (the upstream may have run it):
    # its failure goes to the dispatcher, whose retry policy decides.

    async def first_answers_then_drops_the_next(connection: RawConnection) -> None:
        request = await connection.read_request()
        if request is None:
            return
        await connection.send(response(200, f"answer to {request.target}".encode()))
        if server.accepted == 1:
            await connection.reader.read(1)  # the next request has begun to arrive: close under it
        else:
            await answers_by_target()(connection)

    async with RawServer(first_answers_then_drops_the_next) as server:
        transport = make_transport()
        assert await fetched(transport, outgoing(server.url("/first"), method, body=b"{}")) == b"answer to /first"
        second = outgoing(server.url("/second"), method, body=b"{}")
        if method == "POST":
            with pytest.raises(UpstreamUnavailable):
                await fetched(transport, second)
            assert server.accepted == 1
        else:
            assert await fetched(transport, second) == b"answer to /second"
            assert server.accepted == 2


async def test_closing_the_transport_closes_its_idle_connections(make_transport: TransportFactory) -> None:
    async def answer_until_closed(connection: RawConnection) -> None:
        await answers_by_target()(connection)  # returns when the client closes its end

    async with RawServer(answer_until_closed) as server:
        transport = make_transport()
        assert await fetched(transport, outgoing(server.url("/one"))) == b"answer to /one"
        assert server.closed == 0
        await within(transport.aclose())
        await server.wait_until(lambda: server.closed == 1, "the server saw the idle connection end")


async def test_the_connection_limit_holds_under_concurrent_requests(make_transport: TransportFactory) -> None:
    async def answer_slowly(connection: RawConnection) -> None:
        while (request := await connection.read_request()) is not None:
            await asyncio.sleep(0.2)
            await connection.send(response(200, f"answer to {request.target}".encode()))

    async with RawServer(answer_slowly) as server:
        transport = make_transport(connection_limit=2)
        requests = [outgoing(server.url(f"/{n}")) for n in range(5)]
        bodies = await within(asyncio.gather(*(fetched(transport, request) for request in requests)))
        assert bodies == [f"answer to /{n}".encode() for n in range(5)]
        assert 1 <= server.most_open <= 2
