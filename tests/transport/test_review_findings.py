"""Findings of a review of the lean HTTP/1.1 client (``anygate.transport.network``), one test each.

Real loopback servers (``tests/support/raw_server.py``); waits only bound a hang. A finding not fixed yet
is a strict xfail saying what is wrong, so the test turns green (and the xfail red) the day it is fixed.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any, TypeVar, cast

import pytest

from anygate.errors import UpstreamUnavailable
from anygate.transport.base import OutgoingRequest, Timeouts
from anygate.transport.connection import Connection
from anygate.transport.network import NetworkTransport
from tests.support.names import MappedResolver
from tests.support.raw_server import CHUNKED, LAST_CHUNK, RawConnection, RawServer, chunk, head, response

pytestmark = pytest.mark.sockets

HANG_BOUND = 10.0
T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float = HANG_BOUND) -> T:
    return await asyncio.wait_for(awaitable, seconds)


def outgoing(url: str, method: str = "GET", **options: Any) -> OutgoingRequest:
    return OutgoingRequest(method, url, **{"allow_private_network": True, "origin": "Provider 'scripted'", **options})


@pytest.fixture
async def transport() -> AsyncIterator[NetworkTransport]:
    made = NetworkTransport(resolver=lambda: MappedResolver({}))
    yield made
    await made.aclose()


def make(**options: Any) -> NetworkTransport:
    return NetworkTransport(resolver=lambda: MappedResolver({}), **options)


async def fetched(transport: NetworkTransport, request: OutgoingRequest) -> tuple[int, bytes]:
    reply = await within(transport.send(request))
    try:
        return reply.status, await within(reply.read())
    finally:
        await reply.aclose()


# ------------------------------------------------------------------------------ bytes after the response


async def test_bytes_after_a_complete_response_never_become_part_of_it_or_of_the_next_one(
    transport: NetworkTransport,
) -> None:
    # An upstream (buggy, or answering twice) writes a second response right after the first, in the
    # same segment. It must not change the first answer's status, headers or body, nor be taken as the
    # answer to the next request on the connection.
    async def answers_twice_then_normally(connection: RawConnection) -> None:
        if server.accepted == 1:
            await connection.read_request()
            await connection.send(response(200, b"one") + response(500, b"smuggled", (("X-Smuggled", "yes"),)))
        while (request := await connection.read_request()) is not None:
            await connection.send(response(200, f"answer to {request.target}".encode()))

    async with RawServer(answers_twice_then_normally) as server:
        reply = await within(transport.send(outgoing(server.url("/first"))))
        try:
            assert reply.status == 200
            assert reply.headers.get("x-smuggled") is None
            assert await within(reply.read()) == b"one"
        finally:
            await reply.aclose()
        assert await fetched(transport, outgoing(server.url("/second"))) == (200, b"answer to /second")


@pytest.mark.parametrize("unasked_body", [b"", b"unasked"])
async def test_bytes_arriving_on_an_idle_connection_are_never_the_next_answer(
    transport: NetworkTransport, unasked_body: bytes
) -> None:
    # An unsolicited response arriving while the connection is idle in the pool is not the answer to
    # the next request (that could be another user's).
    async def answers_then_sends_unasked(connection: RawConnection) -> None:
        if server.accepted == 1:
            await connection.read_request()
            await connection.send(response(200, b"one"))
            await asyncio.sleep(0.2)
            await connection.send(response(200, unasked_body))
        while (request := await connection.read_request()) is not None:
            await connection.send(response(200, f"answer to {request.target}".encode()))

    async with RawServer(answers_then_sends_unasked) as server:
        assert await fetched(transport, outgoing(server.url("/first"))) == (200, b"one")
        await asyncio.sleep(0.5)  # let the unasked answer arrive (either order is checked, nothing is timed)
        assert await fetched(transport, outgoing(server.url("/second"))) == (200, b"answer to /second")


# ------------------------------------------------------------------------------ the connection limit


async def test_a_waiter_cancelled_just_as_it_is_given_room_passes_the_room_on() -> None:
    # Limit 1: A holds the connection, B and C wait. A gives it back (waking B) and B is cancelled (its
    # client went away) before it runs: the room must go to C, not be lost until C's connect timeout.
    release = asyncio.Event()

    async def answer_when_told(connection: RawConnection) -> None:
        while (request := await connection.read_request()) is not None:
            if request.target == "/a":
                await release.wait()
            await connection.send(response(200, f"answer to {request.target}".encode()))

    transport = make(connection_limit=1)
    try:
        async with RawServer(answer_when_told) as server:
            timeouts = Timeouts(connect=HANG_BOUND / 2)
            sending_a = asyncio.ensure_future(transport.send(outgoing(server.url("/a"), timeouts=timeouts)))
            await server.wait_until(lambda: len(server.requests) == 1, "A was sent")
            waiting_b = asyncio.ensure_future(transport.send(outgoing(server.url("/b"), timeouts=timeouts)))
            waiting_c = asyncio.ensure_future(fetched(transport, outgoing(server.url("/c"), timeouts=timeouts)))
            await asyncio.sleep(0.1)  # B and C are waiting for room
            release.set()
            reply_a = await within(sending_a)
            await asyncio.sleep(0.1)  # A's body has arrived: reading it gives the connection back at once
            assert await reply_a.read() == b"answer to /a"  # (no await inside: B is woken, has not run)
            waiting_b.cancel()  # ... and B goes away before it runs
            with pytest.raises(asyncio.CancelledError):
                await waiting_b
            assert await within(waiting_c) == (200, b"answer to /c")
    finally:
        await transport.aclose()


# ------------------------------------------------------------------------------ timers


async def test_a_slow_reader_gets_its_whole_read_timeout_once_it_has_caught_up(transport: NetworkTransport) -> None:
    # The read timeout counts only while the connection waits for the upstream. A reader that leaves a
    # chunk unread for longer than the timeout, then takes it, must be given the whole timeout again
    # for the next chunk, not only what is left of a period that began while the chunk sat unread.
    read_timeout = 2.0
    taken = asyncio.Event()

    async def second_chunk_after_the_reader_caught_up(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(head(200, CHUNKED) + chunk(b"first"))
        await taken.wait()
        await asyncio.sleep(read_timeout * 0.6)  # within the read timeout counted from the take
        await connection.send(chunk(b"second") + LAST_CHUNK)

    async with RawServer(second_chunk_after_the_reader_caught_up) as server:
        request = outgoing(server.url("/"), timeouts=Timeouts(first_byte=read_timeout, idle=read_timeout))
        reply = await within(transport.send(request))
        try:
            # A slow client: the first chunk sits unread past one whole read timeout (the timer fires
            # while it waits and starts a new period), and is taken just before that period ends.
            await asyncio.sleep(read_timeout * 1.7)
            chunks = cast(AsyncGenerator[bytes, None], reply.chunks())
            assert await within(anext(chunks)) == b"first"
            taken.set()
            assert await within(anext(chunks)) == b"second"
            await chunks.aclose()
        finally:
            await reply.aclose()


# ------------------------------------------------------------------------------ decompression


async def test_a_gzip_body_of_several_members_is_decoded_whole(transport: NetworkTransport) -> None:
    # RFC 1952 allows a gzip file of several members (gzip.decompress and aiohttp read them all).
    body = gzip.compress(b"first part, ") + gzip.compress(b"second part")

    async def answer(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(response(200, body, (("Content-Encoding", "gzip"),)))

    async with RawServer(answer) as server:
        assert await fetched(transport, outgoing(server.url("/"))) == (200, b"first part, second part")


async def test_a_raw_deflate_body_is_decoded(transport: NetworkTransport) -> None:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    body = compressor.compress(b"raw deflate") + compressor.flush()

    async def answer(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(response(200, body, (("Content-Encoding", "deflate"),)))

    async with RawServer(answer) as server:
        assert await fetched(transport, outgoing(server.url("/"))) == (200, b"raw deflate")


async def test_a_gzip_bomb_is_decoded_in_bounded_pieces(transport: NetworkTransport) -> None:
    # 64 MiB of zeros compress to ~64 KiB: one socket read of it must not become one 64 MiB piece of
    # memory. A streaming reader gets it in pieces near the buffer's high-water mark.
    decoded_size = 64 << 20
    bomb = gzip.compress(bytes(decoded_size), compresslevel=9)

    async def answer(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(response(200, bomb, (("Content-Encoding", "gzip"),)))

    async with RawServer(answer) as server:
        reply = await within(transport.send(outgoing(server.url("/"))))
        largest = total = 0
        try:
            async for piece in reply.chunks():
                largest = max(largest, len(piece))
                total += len(piece)
        finally:
            await reply.aclose()
    assert total == decoded_size
    assert largest <= 1 << 20


# ------------------------------------------------------------------------------ the retry


async def test_a_post_the_upstream_read_and_then_dropped_is_not_sent_twice(transport: NetworkTransport) -> None:
    # The upstream reads the whole request on a reused connection, works on it (a completion: billed),
    # then its side dies without answering. Resending it runs (and bills) the completion twice.
    async def answers_then_processes_and_dies(connection: RawConnection) -> None:
        request = await connection.read_request()
        if request is None:
            return
        await connection.send(response(200, b"one"))
        if await connection.read_request() is not None and server.accepted == 1:
            await asyncio.sleep(0.2)  # processing
            return  # ... and the process dies: the connection closes without an answer
        while (request := await connection.read_request()) is not None:
            await connection.send(response(200, b"processed again"))

    async with RawServer(answers_then_processes_and_dies) as server:
        await fetched(transport, outgoing(server.url("/v1/chat/completions"), "POST", body=b"{}"))
        with pytest.raises(UpstreamUnavailable):
            await fetched(transport, outgoing(server.url("/v1/chat/completions"), "POST", body=b"{}"))
        assert len(server.requests) == 2


# ------------------------------------------------------------------------------ answers without a body


@pytest.mark.parametrize(("method", "status"), [("HEAD", 200), ("HEAD", 404), ("GET", 204), ("GET", 304)], ids=str)
async def test_an_answer_without_a_body_ends_at_its_head_even_with_a_content_length(
    transport: NetworkTransport, method: str, status: int
) -> None:
    # The answer to HEAD (and a 204 or 304) has no body whatever its Content-Length says (RFC 9110
    # 9.3.2, 6.4.1): reading it must not wait for bytes that never come, nor take the next answer's.
    async def answer_by_target(connection: RawConnection) -> None:
        while (request := await connection.read_request()) is not None:
            if request.target == "/bodiless":
                await connection.send(head(status, (("Content-Length", "1000"),)))
            else:
                await connection.send(response(200, f"answer to {request.target}".encode()))

    async with RawServer(answer_by_target) as server:
        assert await fetched(transport, outgoing(server.url("/bodiless"), method)) == (status, b"")
        assert await fetched(transport, outgoing(server.url("/next"))) == (200, b"answer to /next")


# ------------------------------------------------------------------------------ cancellation (guards)


@pytest.mark.parametrize("moment", ["waiting for the head", "in read", "in chunks", "chunks left unfinished"])
async def test_a_client_going_away_at_any_await_gives_its_connection_up(moment: str) -> None:
    # Limit 1: whatever await the caller is cancelled at, the connection is dropped (its exchange is
    # mid-message) and the next request gets a new one.
    async def answer_by_target(connection: RawConnection) -> None:
        while (request := await connection.read_request()) is not None:
            if request.target == "/next":
                await connection.send(response(200, b"answer to /next"))
            elif moment == "waiting for the head":
                await asyncio.Event().wait()
            else:
                await connection.send(head(200, CHUNKED) + chunk(b"first"))
                await asyncio.Event().wait()

    transport = make(connection_limit=1)
    try:
        async with RawServer(answer_by_target) as server:

            async def go_away_mid_exchange() -> None:
                reply = await transport.send(outgoing(server.url("/hangs")))
                try:
                    if moment == "in read":
                        await reply.read()
                    elif moment == "in chunks":
                        async for _ in reply.chunks():
                            pass
                    else:
                        chunks = reply.chunks()
                        assert await anext(chunks) == b"first"
                        await asyncio.Event().wait()  # cancelled here, the generator never finished
                finally:
                    await reply.aclose()

            task = asyncio.ensure_future(go_away_mid_exchange())
            await server.wait_until(lambda: len(server.requests) == 1, "the first request was sent")
            await asyncio.sleep(0.1)  # the caller is at its await
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            timeouts = Timeouts(connect=HANG_BOUND / 2)
            assert await fetched(transport, outgoing(server.url("/next"), timeouts=timeouts)) == (
                200,
                b"answer to /next",
            )
            assert server.accepted == 2  # the dropped connection was not reused
    finally:
        await transport.aclose()


@pytest.mark.parametrize("framing", ["content-length", "connection close"])
async def test_a_gzip_body_cut_before_its_end_is_an_error_not_a_shorter_body(
    transport: NetworkTransport, framing: str
) -> None:
    # The gzip stream's own end is the one sign a body delimited by the connection's end was cut.
    whole = gzip.compress(bytes(range(256)) * 64)
    cut = whole[: len(whole) // 2]

    async def answer(connection: RawConnection) -> None:
        await connection.read_request()
        length = (("Content-Length", str(len(cut))),) if framing == "content-length" else ()
        await connection.send(head(200, (("Content-Encoding", "gzip"), ("Connection", "close"), *length)) + cut)

    async with RawServer(answer) as server:
        with pytest.raises(UpstreamUnavailable):
            await fetched(transport, outgoing(server.url("/")))


# ------------------------------------------------------------------------------ the limit and lost connections


async def test_a_response_never_given_back_frees_its_place_once_its_connection_is_lost() -> None:
    # A caller that never closes a response (a bug) must not hold a place under the connection limit
    # after the upstream has closed that connection: the next request gets a connection.
    async def head_then_close_once(connection: RawConnection) -> None:
        if server.accepted == 1:
            await connection.read_request()
            await connection.send(head(200, (("Content-Length", "100"),)) + b"partial")
            return  # the connection closes with the body unfinished
        while (request := await connection.read_request()) is not None:
            await connection.send(response(200, f"answer to {request.target}".encode()))

    transport = make(connection_limit=1)
    try:
        async with RawServer(head_then_close_once) as server:
            forgotten = await within(transport.send(outgoing(server.url("/first"))))
            assert forgotten.status == 200  # ... and never read nor closed
            request = outgoing(server.url("/second"), timeouts=Timeouts(connect=5.0))
            assert await fetched(transport, request) == (200, b"answer to /second")
    finally:
        await transport.aclose()


async def test_a_closed_connection_is_freed_without_waiting_for_the_cyclic_collector() -> None:
    # The parser calls back into its connection, which holds it: unless the cycle is broken when the
    # connection is lost, every dropped connection (and its buffers) lives until a full collection, which
    # the gateway runs rarely (GC_THRESHOLDS): memory grows with every stream a client abandons.
    async def answer_slowly(connection: RawConnection) -> None:
        while await connection.read_request() is not None:
            await connection.send(head(200, (("Transfer-Encoding", "chunked"),)) + chunk(b"first"))
            await asyncio.sleep(5)

    transport = make()
    collecting = gc.isenabled()
    gc.collect()  # what earlier tests left; then only this test's connections are looked for
    gc.disable()
    try:
        async with RawServer(answer_slowly) as server:
            for _ in range(5):
                reply = await within(transport.send(outgoing(server.url("/stream"))))
                await within(reply.aclose())  # given back mid-body: the connection is dropped
            await asyncio.sleep(0.1)  # the loop delivers connection_lost
            alive = [o for o in gc.get_objects() if isinstance(o, Connection)]
            mine = [connection for connection in alive if getattr(connection.key, "port", 0) == server.port]
            assert mine == []
    finally:
        if collecting:
            gc.enable()
        await transport.aclose()
