"""Timers: the connect, first-byte, read (idle) and total deadlines each end a request that outlives it
with ``UpstreamTimeout`` naming the origin only."""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest

from anygate.errors import UpstreamTimeout
from anygate.transport.base import Response, Timeouts
from tests.support.raw_server import CHUNKED, RawConnection, RawServer, chunk, head
from tests.transport.contract import (
    SECRET_PATH,
    TransportFactory,
    answers_by_target,
    assert_names_origin_only,
    fetched,
    never_answers,
    opened,
    outgoing,
    within,
)

pytestmark = pytest.mark.sockets  # every test talks to a server on a loopback port


async def test_a_connect_that_never_completes_is_a_timeout(make_transport: TransportFactory) -> None:
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())  # takes the one place in the queue; nothing is accepted
        request = outgoing(f"http://127.0.0.1:{listener.getsockname()[1]}{SECRET_PATH}", timeouts=Timeouts(connect=0.3))
        with pytest.raises(UpstreamTimeout) as caught:
            await fetched(make_transport(), request)
    assert_names_origin_only(caught.value, request)


async def test_no_first_byte_in_time_is_a_timeout(make_transport: TransportFactory) -> None:
    async with RawServer(never_answers) as server:
        request = outgoing(server.url(SECRET_PATH), timeouts=Timeouts(first_byte=0.3))
        with pytest.raises(UpstreamTimeout) as caught:
            await fetched(make_transport(), request)
    assert_names_origin_only(caught.value, request)


async def test_silence_in_a_body_longer_than_the_read_timeout_is_a_timeout(make_transport: TransportFactory) -> None:
    async def fall_silent(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(head(200, CHUNKED) + chunk(b"data: first\n\n"))
        await asyncio.Event().wait()

    async with RawServer(fall_silent) as server:
        request = outgoing(server.url(SECRET_PATH), timeouts=Timeouts(first_byte=30, idle=30))
        received: list[bytes] = []

        async def consume(reply: Response) -> None:
            async for data in reply.chunks():
                received.append(data)

        async with opened(make_transport(), request) as reply:
            reply.set_read_timeout(0.3)
            with pytest.raises(UpstreamTimeout) as caught:
                await within(consume(reply))
    assert b"".join(received) == b"data: first\n\n"
    assert_names_origin_only(caught.value, request)


async def test_a_body_trickling_past_the_total_timeout_is_a_timeout(make_transport: TransportFactory) -> None:
    async def trickle(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(head(200, CHUNKED))
        while True:  # until the client hangs up
            await connection.send(chunk(b"data: more\n\n"))
            await asyncio.sleep(0.1)

    async with RawServer(trickle) as server:
        request = outgoing(server.url(SECRET_PATH), timeouts=Timeouts(first_byte=30, idle=30, total=0.5))
        with pytest.raises(UpstreamTimeout) as caught:  # from send() or from the body: either is in time
            await within(fetched(make_transport(), request, "chunks"))
    assert_names_origin_only(caught.value, request)


def live_timers() -> int:
    """Timers scheduled and not yet fired or cancelled, whatever the event loop (asyncio's or uvloop's)."""
    return sum(1 for thing in gc.get_objects() if type(thing).__name__ == "TimerHandle" and not thing.cancelled())


async def test_a_kept_alive_connection_keeps_one_timer_however_many_exchanges_it_carries(
    make_transport: TransportFactory,
) -> None:
    async with RawServer(answers_by_target()) as server:
        transport = make_transport()
        assert await fetched(transport, outgoing(server.url("/warm"))) == b"answer to /warm"
        before = live_timers()
        for n in range(50):
            assert await fetched(transport, outgoing(server.url(f"/{n}"))) == f"answer to /{n}".encode()
        after = live_timers()
        await transport.aclose()
    assert server.accepted == 1
    assert after <= before + 1  # not one a request (a timer dropped but still scheduled stays alive)
