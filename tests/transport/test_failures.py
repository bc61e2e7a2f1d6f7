"""Failures and their messages: a server that closes before answering, a body cut short, an ambiguous
body length, a refused connection, an answer that is not HTTP, enormous headers. Each is the gateway's
own error, whose message names the origin and never the request's path or query."""

from __future__ import annotations

import asyncio
import socket

import pytest

from anygate.errors import UpstreamUnavailable
from tests.support.raw_server import CHUNKED, RawConnection, RawServer, chunk, head
from tests.transport.contract import (
    SECRET_PATH,
    MiB,
    TransportFactory,
    assert_names_origin_only,
    fetched,
    joined,
    opened,
    outgoing,
    within,
)

pytestmark = pytest.mark.sockets  # every test talks to a server on a loopback port


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
