"""The transport seam's contract, held by every transport that talks to the network.

Each test runs on the aiohttp transport and on the lean HTTP/1.1 client (``anygate.transport.network``,
skipped while it does not exist) against a server on a loopback port that writes exactly the bytes the
case needs (``tests/support/raw_server.py``): framing, keep-alive and the pool, failures and their
messages, timers, the SSRF guard, what goes on the wire, TLS. Waits that only bound a hang are generous
(``within``); no test asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import importlib
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from itertools import accumulate
from typing import Any, TypeVar

import pytest

from anygate.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from anygate.transport.base import OutgoingRequest, Response, Timeouts, Transport
from tests.support.names import MappedResolver
from tests.support.raw_server import (
    CHUNKED,
    LAST_CHUNK,
    RawConnection,
    RawServer,
    chunk,
    head,
    response,
)
from tests.support.tls import CertificateAuthority

pytestmark = pytest.mark.sockets  # every test talks to a server on a loopback port

ORIGIN = "Provider 'scripted'"
SECRET_PATH = "/v1/secret-path?key=hunter2"  # error messages name the origin, never this
NAMES = {"upstream.test": "127.0.0.1", "evil.test": "169.254.169.254"}
HANG_BOUND = 10.0  # seconds: only so that a bug fails the test instead of hanging it
MiB = 1 << 20

T = TypeVar("T")
TransportFactory = Callable[..., Transport]


# ------------------------------------------------------------------------------ the transports


def transport_class(kind: str) -> Any:
    """The class of the ``kind`` transport; the network one is skipped while its module does not exist
    (an import error inside it still fails)."""
    if kind == "aiohttp":
        from anygate.transport.aiohttp_transport import AiohttpTransport

        return AiohttpTransport
    try:
        module = importlib.import_module("anygate.transport.network")
    except ModuleNotFoundError as exc:
        if exc.name != "anygate.transport.network":
            raise
        pytest.skip("anygate.transport.network does not exist yet")
    return module.NetworkTransport


@pytest.fixture(params=["aiohttp", "network"])
def transport_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def make_transport(transport_kind: str) -> AsyncIterator[TransportFactory]:
    """``make_transport(**options)``: a transport of the kind under test that resolves the test's names
    (no real DNS), closed when the test ends (closing one the test closed already must be harmless)."""
    cls = transport_class(transport_kind)
    made: list[Transport] = []

    def make(**options: Any) -> Transport:
        transport: Transport = cls(**{"resolver": lambda: MappedResolver(NAMES), **options})
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.aclose()
    gc.collect()  # whatever a transport leaked warns now, in the test that leaked it


def differs_on_aiohttp(request: pytest.FixtureRequest, transport_kind: str, reason: str) -> None:
    """Where aiohttp deliberately does otherwise: expected to fail on it, and only on it."""
    if transport_kind == "aiohttp":
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


# ------------------------------------------------------------------------------ helpers


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


# ------------------------------------------------------------------------------ framing


async def test_a_content_length_body_is_read_whole_with_its_status_and_raw_headers(
    make_transport: TransportFactory,
) -> None:
    body = b'{"ok": true}'
    headers = (
        ("Content-Type", "Application/JSON; charset=utf-8"),
        ("X-Trace-ID", "abc"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("X-Place", "café"),  # a byte past ASCII (obs-text), sent as latin-1
    )

    async def answer(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(response(201, body, headers))

    async with RawServer(answer) as server:
        async with opened(make_transport(), outgoing(server.url())) as reply:
            assert reply.status == 201
            assert await within(reply.read()) == body
    assert (b"X-Trace-ID", b"abc") in reply.headers.raw  # the name as sent, not lower-cased
    assert [v for k, v in reply.headers.raw if k.lower() == b"set-cookie"] == [b"a=1", b"b=2"]
    assert reply.headers.get("x-trace-id") == "abc"
    assert reply.headers.get("CONTENT-LENGTH") == str(len(body))
    assert reply.headers.get("x-absent") is None
    assert reply.headers.content_type == "application/json"
    assert (b"X-Place", b"caf\xe9") in reply.headers.raw
    assert reply.headers.get("x-place") == "café"


async def test_a_chunked_body_comes_out_of_chunks_as_it_arrives(make_transport: TransportFactory) -> None:
    pieces = (b"data: one\n\n", b"data: two\n\n", b"data: three\n\n")
    seen = [asyncio.Event() for _ in pieces]

    async def answer(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(head(200, (("Content-Type", "text/event-stream"), *CHUNKED)))
        for piece, was_seen in zip(pieces, seen, strict=True):
            await connection.send(chunk(piece))
            await within(was_seen.wait())  # the next piece only once the client has had this one
        await connection.send(LAST_CHUNK)

    async def consume(reply: Response) -> bytes:
        received = b""
        async for data in reply.chunks():
            received += data
            for number, end in enumerate(accumulate(map(len, pieces))):
                if len(received) >= end:
                    seen[number].set()
        return received

    async with RawServer(answer) as server:
        async with opened(make_transport(), outgoing(server.url())) as reply:
            assert await within(consume(reply)) == b"".join(pieces)


async def test_a_chunked_body_arriving_with_pauses_is_read_whole(make_transport: TransportFactory) -> None:
    pieces = (b"first, ", b"second, ", b"x" * 70_000, b", last")

    async def answer(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(head(200, CHUNKED))
        for piece in pieces:
            await connection.send(chunk(piece))
            await asyncio.sleep(0.05)
        await connection.send(LAST_CHUNK)

    async with RawServer(answer) as server:
        async with opened(make_transport(), outgoing(server.url())) as reply:
            assert await within(reply.read()) == b"".join(pieces)


@BODY_READS
async def test_chunk_extensions_and_trailers_are_not_part_of_the_body(
    make_transport: TransportFactory, how: str
) -> None:
    async def answer(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(head(200, CHUNKED) + b"5;name=value\r\nhello\r\n" + b"6\r\n world\r\n")
        await connection.send(b"0\r\nX-Checksum: abc\r\n\r\n")

    async with RawServer(answer) as server:
        async with opened(make_transport(), outgoing(server.url())) as reply:
            assert await body_of(reply, how) == b"hello world"


@BODY_READS
async def test_a_body_without_length_ends_when_the_server_closes(make_transport: TransportFactory, how: str) -> None:
    async def answer(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(head(200, (("Content-Type", "text/plain"),)) + b"first part, ")
        await asyncio.sleep(0.05)
        await connection.send(b"second part")
        # returning closes the connection: that is where the body ends

    async with RawServer(answer) as server:
        async with opened(make_transport(), outgoing(server.url())) as reply:
            assert await body_of(reply, how) == b"first part, second part"


@pytest.mark.parametrize("status", [204, 304])
async def test_a_status_without_a_body_reads_empty_without_waiting_for_a_close(
    make_transport: TransportFactory, status: int
) -> None:
    async def answer(connection: RawConnection) -> None:
        while await connection.read_request() is not None:
            await connection.send(head(status, (("X-Answer", "none"),)))  # no length, and the connection stays

    async with RawServer(answer) as server:
        transport = make_transport()
        for _ in range(2):
            async with opened(transport, outgoing(server.url())) as reply:
                assert reply.status == status
                assert await within(reply.read()) == b""
        assert server.accepted == 1


async def test_an_interim_answer_is_skipped_for_the_final_one(make_transport: TransportFactory) -> None:
    async def answer(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        await connection.send(response(200, b"final", (("X-Final", "yes"),)))

    async with RawServer(answer) as server:
        async with opened(make_transport(), outgoing(server.url())) as reply:
            assert (reply.status, reply.headers.get("x-final")) == (200, "yes")
            assert await within(reply.read()) == b"final"


@BODY_READS
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_gzip_encoded_body_is_decoded(make_transport: TransportFactory, how: str, framing: str) -> None:
    words = random.Random(3).choices(["token", "stream", "gateway", "model", "usage", "choice"], k=20_000)
    payload = " ".join(words).encode()
    packed = gzip.compress(payload)

    async def answer(connection: RawConnection) -> None:
        await connection.read_request()
        if framing == "content-length":
            await connection.send(response(200, packed, (("Content-Encoding", "gzip"),)))
            return
        await connection.send(head(200, (("Content-Encoding", "gzip"), *CHUNKED)))
        for start in range(0, len(packed), 1000):  # pieces that split the gzip stream anywhere
            await connection.send(chunk(packed[start : start + 1000]))
        await connection.send(LAST_CHUNK)

    async with RawServer(answer) as server:
        async with opened(make_transport(), outgoing(server.url())) as reply:
            assert await body_of(reply, how) == payload


async def test_a_large_body_read_slowly_arrives_intact(make_transport: TransportFactory) -> None:
    payload = random.Random(7).randbytes(8 * MiB)
    piece = 64 * 1024

    async def answer(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(head(200, CHUNKED))
        for start in range(0, len(payload), piece):
            await connection.send(chunk(payload[start : start + piece]))
        await connection.send(LAST_CHUNK)

    async def consume_slowly(reply: Response) -> bytes:
        received = bytearray()
        async for data in reply.chunks():
            before = len(received)
            received += data
            if before // MiB != len(received) // MiB:
                await asyncio.sleep(0.05)  # a slow client: the server waits on a full socket meanwhile
        return bytes(received)

    async with RawServer(answer) as server:
        async with opened(make_transport(), outgoing(server.url())) as reply:
            assert await within(consume_slowly(reply), 60) == payload


# ------------------------------------------------------------------------------ the pool


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
async def test_a_pooled_connection_closing_as_the_request_is_written_is_retried_once(
    request: pytest.FixtureRequest, transport_kind: str, make_transport: TransportFactory, method: str
) -> None:
    # The upstream's idle timeout crossing the next request: the connection ends (with a reset, its
    # bytes unread) before a byte of the answer, so the upstream cannot have answered it.
    if method == "POST":
        differs_on_aiohttp(request, transport_kind, "aiohttp resends only idempotent methods on a reset reuse")

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
        assert await fetched(transport, outgoing(server.url("/second"), method, body=b"{}")) == b"answer to /second"
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


# ------------------------------------------------------------------------------ failures


async def test_a_server_closing_before_answering_is_unavailable_naming_the_origin(
    make_transport: TransportFactory,
) -> None:
    async def close_at_once(connection: RawConnection) -> None:
        await connection.read_request()

    async with RawServer(close_at_once) as server:
        request = outgoing(server.url(SECRET_PATH), "POST", body=b"{}")
        with pytest.raises(UpstreamUnavailable) as caught:
            await fetched(make_transport(), request)
    assert_names_origin_only(caught.value, request)


async def test_a_body_shorter_than_its_length_is_an_incomplete_response(make_transport: TransportFactory) -> None:
    async def cut_short(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(head(200, (("Content-Length", "100"),)) + b"only ten b")

    async with RawServer(cut_short) as server:
        request = outgoing(server.url(SECRET_PATH))
        async with opened(make_transport(), request) as reply:
            with pytest.raises(UpstreamUnavailable, match="incomplete") as caught:
                await within(reply.read())
    assert_names_origin_only(caught.value, request)


async def test_a_chunked_body_cut_before_its_last_chunk_is_an_incomplete_response(
    make_transport: TransportFactory,
) -> None:
    async def cut_short(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(head(200, CHUNKED) + chunk(b"data: partial\n\n") + b"40\r\nhalf a chu")

    async with RawServer(cut_short) as server:
        request = outgoing(server.url(SECRET_PATH))
        async with opened(make_transport(), request) as reply:
            with pytest.raises(UpstreamUnavailable, match="incomplete") as caught:
                await within(joined(reply))
    assert_names_origin_only(caught.value, request)


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 5\r\nContent-Length: 50\r\n", b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"],
    ids=["two-lengths", "length-and-chunked"],
)
async def test_an_ambiguous_body_length_is_refused(make_transport: TransportFactory, framing: bytes) -> None:
    # Two readings of where the body ends are two readings of where the next response starts.
    async def answer(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n5\r\nhello\r\n0\r\n\r\n")

    async with RawServer(answer) as server:
        request = outgoing(server.url(SECRET_PATH))
        with pytest.raises(UpstreamUnavailable) as caught:
            await fetched(make_transport(), request)
    assert_names_origin_only(caught.value, request)


async def test_a_refused_connection_is_unavailable_naming_the_origin(make_transport: TransportFactory) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: nobody else takes the port meanwhile
        request = outgoing(f"http://127.0.0.1:{unused.getsockname()[1]}{SECRET_PATH}")
        with pytest.raises(UpstreamUnavailable) as caught:
            await fetched(make_transport(), request)
    assert_names_origin_only(caught.value, request)


async def test_an_answer_that_is_not_http_is_unavailable(make_transport: TransportFactory) -> None:
    async def babble(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(b"SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\r\n\r\n")

    async with RawServer(babble) as server:
        request = outgoing(server.url(SECRET_PATH))
        with pytest.raises(UpstreamUnavailable) as caught:
            await fetched(make_transport(), request)
    assert_names_origin_only(caught.value, request)


@pytest.mark.parametrize("shape", ["many lines", "one long line", "endless lines"])
async def test_enormous_response_headers_are_refused(make_transport: TransportFactory, shape: str) -> None:
    async def flood(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(b"HTTP/1.1 200 OK\r\n")
        if shape == "one long line":
            await connection.send(b"X-Filler: " + b"a" * MiB + b"\r\n")
        else:
            # "endless": until the client hangs up (a cap keeps a runaway test finite); a client that
            # holds it all, waiting for a blank line that never comes, is stopped by ``within``
            lines = MiB // 64 if shape == "many lines" else 256 * MiB // 64
            for number in range(lines):
                await connection.send(b"X-Filler-%08d: %s\r\n" % (number, b"a" * 44))
            if shape == "endless lines":
                await asyncio.Event().wait()
        await connection.send(b"Content-Length: 2\r\n\r\nok")

    async with RawServer(flood) as server:
        request = outgoing(server.url(SECRET_PATH))
        with pytest.raises(UpstreamUnavailable) as caught:
            await fetched(make_transport(), request)
    assert_names_origin_only(caught.value, request)


# ------------------------------------------------------------------------------ timers


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


# ------------------------------------------------------------------------------ redirects and the SSRF guard


@pytest.mark.parametrize("status", [302, 307])
async def test_a_redirect_is_returned_not_followed(make_transport: TransportFactory, status: int) -> None:
    async with RawServer(answers_by_target()) as elsewhere:

        async def redirect(connection: RawConnection) -> None:
            await connection.read_request()
            await connection.send(response(status, b"", (("Location", elsewhere.url("/moved")),)))

        async with RawServer(redirect) as server:
            async with opened(make_transport(), outgoing(server.url(), "POST", body=b"{}")) as reply:
                assert reply.status == status
                assert reply.headers.get("location") == elsewhere.url("/moved")
        assert elsewhere.accepted == 0


@pytest.fixture
def connect_attempts(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The addresses the process tries to connect a socket to, while the test runs."""
    attempts: list[Any] = []
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def recorded(method: Callable[..., Any]) -> Callable[..., Any]:
        def record(sock: socket.socket, address: Any) -> Any:
            attempts.append(address)
            return method(sock, address)

        return record

    monkeypatch.setattr(socket.socket, "connect", recorded(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", recorded(connect_ex))
    return attempts


@pytest.mark.parametrize("allow_private_network", [False, True])
async def test_a_name_resolving_to_the_metadata_address_is_refused_before_connecting(
    make_transport: TransportFactory, connect_attempts: list[Any], allow_private_network: bool
) -> None:
    request = outgoing(
        f"http://evil.test{SECRET_PATH}",
        allow_private_network=allow_private_network,
        timeouts=Timeouts(connect=2),  # were it tried, a connection there would fail, not hang the test
    )
    with pytest.raises(UpstreamUnavailable) as caught:
        await fetched(make_transport(), request)
    assert_names_origin_only(caught.value, request)
    assert not [address for address in connect_attempts if str(address[0]).startswith("169.254.")]


async def test_a_name_resolving_to_loopback_is_refused_unless_private_networks_are_allowed(
    make_transport: TransportFactory,
) -> None:
    async with RawServer(answers_by_target()) as server:
        transport = make_transport()
        refused = outgoing(server.url(SECRET_PATH, host="upstream.test"), allow_private_network=False)
        with pytest.raises(UpstreamUnavailable) as caught:
            await fetched(transport, refused)
        assert_names_origin_only(caught.value, refused)
        assert server.accepted == 0
        allowed = outgoing(server.url("/models", host="upstream.test"), allow_private_network=True)
        assert await fetched(transport, allowed) == b"answer to /models"


@pytest.mark.parametrize(
    ("host", "allow_private_network"),
    [("169.254.169.254", False), ("169.254.169.254", True), ("127.0.0.1", False)],
)
async def test_a_literal_address_the_guard_forbids_is_refused_before_connecting(
    request: pytest.FixtureRequest,
    transport_kind: str,
    make_transport: TransportFactory,
    connect_attempts: list[Any],
    host: str,
    allow_private_network: bool,
) -> None:
    differs_on_aiohttp(
        request,
        transport_kind,
        "aiohttp asks no resolver for a literal address, so its guard never sees one (the gateway checks "
        "base URLs with netguard.check_url when it loads them)",
    )
    async with RawServer(answers_by_target()) as server:
        refused = outgoing(
            server.url(SECRET_PATH, host=host),
            allow_private_network=allow_private_network,
            timeouts=Timeouts(connect=2),  # were it tried, a connection there would fail, not hang the test
        )
        with pytest.raises(UpstreamUnavailable) as caught:
            await fetched(make_transport(), refused)
        assert server.accepted == 0
    assert_names_origin_only(caught.value, refused)
    assert not [address for address in connect_attempts if address[0] == host]


# ------------------------------------------------------------------------------ what goes on the wire


async def test_the_request_goes_on_the_wire_as_given(make_transport: TransportFactory) -> None:
    body = b'{"model": "m", "messages": []}'
    headers = {"Authorization": "Bearer sk-upstream", "Content-Type": "application/json", "X-Request-Id": "r-1"}
    async with RawServer(answers_by_target()) as server:
        url = server.url("/v1/chat/completions?api-version=2024-06-01&q=a%20b")
        await fetched(make_transport(), outgoing(url, "POST", headers=headers, body=body))
    [sent] = server.requests
    assert (sent.method, sent.target) == ("POST", "/v1/chat/completions?api-version=2024-06-01&q=a%20b")
    assert sent.values("Host") == [f"127.0.0.1:{server.port}"]
    assert sent.values("Content-Length") == [str(len(body))]
    assert sent.body == body
    for name, value in headers.items():
        assert sent.values(name) == [value]
    assert sent.values("User-Agent") and sent.values("User-Agent")[0]
    assert not sent.values("Transfer-Encoding")


async def test_a_request_of_its_own_user_agent_sends_that_one_alone(make_transport: TransportFactory) -> None:
    async with RawServer(answers_by_target()) as server:
        request = outgoing(server.url(), headers={"User-Agent": "custom/1.0"})
        await fetched(make_transport(), request)
    assert server.requests[0].values("user-agent") == ["custom/1.0"]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Note": "ok\r\nX-Injected: yes"},
        {"X-Note": "ok\nX-Injected: yes"},
        {"X-Note\r\nX-Injected": "yes"},
    ],
    ids=["crlf-in-value", "lf-in-value", "crlf-in-name"],
)
async def test_a_header_with_a_line_break_is_refused_and_nothing_of_it_is_sent(
    make_transport: TransportFactory, headers: dict[str, str]
) -> None:
    # The contract the gateway needs: the injected line never reaches the upstream. aiohttp (and the
    # network transport) raise ValueError before writing the head; a GatewayError would do as well.
    async with RawServer(answers_by_target()) as server:
        transport = make_transport()
        with pytest.raises((GatewayError, ValueError)):
            await fetched(transport, outgoing(server.url(), "POST", headers=headers, body=b"{}"))
        await everything_sent_is_received(transport, server)
    assert b"X-Injected" not in server.received
    assert server.requests == []


async def test_a_url_with_spaces_and_line_breaks_never_splits_the_request_line(
    make_transport: TransportFactory,
) -> None:
    # A path built from a client's input (a deployment or model name): either refused, or sent escaped.
    async with RawServer(answers_by_target()) as server:
        url = server.url("/v1/models/m HTTP/1.1\r\nX-Injected: yes\r\nX-Tail: z")
        transport = make_transport()
        try:
            await fetched(transport, outgoing(url))
        except (GatewayError, ValueError):
            pass
        await everything_sent_is_received(transport, server)
    assert b"\nX-Injected" not in server.received
    for sent in server.requests:
        assert " " not in sent.target and sent.raw.split(b"\r\n", 1)[0].endswith(b" HTTP/1.1")


# ------------------------------------------------------------------------------ TLS


async def test_tls_to_an_upstream_signed_by_the_trusted_authority(make_transport: TransportFactory) -> None:
    authority = CertificateAuthority.make()
    async with RawServer(answers_by_target(), tls=authority.server_context("upstream.test")) as server:
        transport = make_transport(ssl=authority.client_context())
        assert await fetched(transport, outgoing(server.url("/secure", host="upstream.test"))) == b"answer to /secure"
        await transport.aclose()  # before the server stops: its TLS shutdown then has a peer that answers


async def test_tls_to_an_upstream_the_system_store_does_not_trust_is_unavailable(
    make_transport: TransportFactory,
) -> None:
    authority = CertificateAuthority.make()
    async with RawServer(answers_by_target(), tls=authority.server_context("upstream.test")) as server:
        request = outgoing(server.url(SECRET_PATH, host="upstream.test"))
        with pytest.raises(UpstreamUnavailable) as caught:
            await fetched(make_transport(), request)
        assert server.requests == []
    assert_names_origin_only(caught.value, request)
