"""Framing: where a response's body begins and ends (a length; chunks, with extensions and trailers;
the server's close; none at all for 204 and 304), with the status and the raw headers as sent; interim
answers skipped for the final one, gzip decoded, a large body read slowly arriving intact."""

from __future__ import annotations

import asyncio
import gzip
import random
from itertools import accumulate

import pytest

from anygate.errors import UpstreamResponseTooLarge
from anygate.transport.base import Response
from tests.support.raw_server import CHUNKED, LAST_CHUNK, RawConnection, RawServer, chunk, head, response
from tests.transport.contract import BODY_READS, MiB, TransportFactory, body_of, opened, outgoing, within

pytestmark = pytest.mark.sockets  # every test talks to a server on a loopback port


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


# ------------------------------------------------------------------------------ the longest answer read whole


@pytest.mark.parametrize("declared", [True, False], ids=["by its length", "as it arrives"])
async def test_an_answer_longer_than_max_body_is_refused_and_the_next_request_is_answered(
    make_transport: TransportFactory, declared: bool
) -> None:
    # Upstream bytes are untrusted: an answer read whole is bounded, whether its Content-Length says it
    # is too long (refused before reading) or it is chunked and grows past the limit (refused as it does).
    big = b"x" * (3 * MiB)

    async def answer(connection: RawConnection) -> None:
        while (request := await connection.read_request()) is not None:
            if request.target != "/big":
                await connection.send(response(200, b"small"))
            elif declared:
                await connection.send(response(200, big))
            else:
                pieces = b"".join(chunk(big[i : i + 65536]) for i in range(0, len(big), 65536))
                await connection.send(head(200, CHUNKED) + pieces + LAST_CHUNK)

    async with RawServer(answer) as server:
        transport = make_transport()
        async with opened(transport, outgoing(server.url("/big"), max_body=MiB)) as reply:
            with pytest.raises(UpstreamResponseTooLarge) as caught:
                await within(reply.read())
        assert caught.value.code == "upstream_response_too_large"
        assert "Provider 'scripted'" in str(caught.value) and "/big" not in str(caught.value)
        async with opened(transport, outgoing(server.url("/small"), max_body=MiB)) as reply:
            assert await within(reply.read()) == b"small"
