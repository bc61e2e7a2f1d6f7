"""A response's head goes out with its body's first piece, in one write (``protocol.HeadWithBody``); a
``100 Continue`` at once; a head without a body at the end of the loop's turn; nothing after a close."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from anygate.protocol import CONTINUE, HeadWithBody
from tests.support.gateway import ADMIN_KEY

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def through(transport: RecordingTransport) -> HeadWithBody:
    return HeadWithBody(transport, asyncio.get_running_loop())  # type: ignore[arg-type]


async def test_the_head_and_the_first_body_piece_go_out_in_one_write() -> None:
    transport = RecordingTransport()
    writer = through(transport)
    writer.write(HEAD)
    assert transport.writes == []
    writer.write(b"ok")
    writer.write(b"more")
    await asyncio.sleep(0)  # the turn's end changes nothing: the head is gone already
    assert transport.writes == [HEAD + b"ok", b"more"]


async def test_a_head_without_a_body_goes_out_at_the_end_of_the_turn() -> None:
    transport = RecordingTransport()
    writer = through(transport)
    writer.write(HEAD)
    await asyncio.sleep(0)
    assert transport.writes == [HEAD]
    writer.write(b"ok")
    assert transport.writes == [HEAD, b"ok"]


async def test_100_continue_is_written_at_once_and_the_head_still_waits_for_its_body() -> None:
    transport = RecordingTransport()
    writer = through(transport)
    writer.write(CONTINUE)
    assert transport.writes == [CONTINUE]
    writer.write(HEAD)
    writer.write(b"ok")
    assert transport.writes == [CONTINUE, HEAD + b"ok"]


async def test_closing_writes_the_held_head_first_and_a_closed_transport_gets_nothing() -> None:
    transport = RecordingTransport()
    writer = through(transport)
    writer.write(HEAD)
    writer.close()
    assert transport.writes == [HEAD] and transport.closed
    gone = RecordingTransport()
    late = through(gone)
    late.write(HEAD)
    gone.close()  # the connection went away before the turn ended
    await asyncio.sleep(0)
    assert gone.writes == []


# ------------------------------------------------------------------------------ served


@pytest.mark.sockets
def test_a_head_request_is_answered_and_the_connection_serves_the_next_one() -> None:
    from tests.test_request_limits import Reader, connect, served

    with served() as port, connect(port) as sock:
        reader = Reader(sock)
        sock.sendall(b"HEAD /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
        while b"\r\n\r\n" not in reader.pending:
            reader.pending += reader.more()
        head, reader.pending = reader.pending.split(b"\r\n\r\n", 1)
        # /health answers GET only (405), but any answer to HEAD is a head with no body after it.
        assert head.startswith(b"HTTP/1.1 405") and b"content-length: " in head and reader.pending == b""
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
        answer = reader.answer()
    assert answer.status == 200 and json.loads(answer.body) == {"status": "ok"}


@pytest.mark.sockets
def test_a_client_expecting_100_continue_gets_it_before_it_sends_the_body() -> None:
    from tests.test_request_limits import Reader, connect, served

    body = json.dumps({"alias": "continued"}).encode()
    head = (
        b"POST /v1/keys HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + ADMIN_KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with served() as port, connect(port) as sock:
        sock.sendall(head)
        interim = read_until_blank_line(sock)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        answer = Reader(sock).answer()
    made: dict[str, Any] = json.loads(answer.body)
    assert answer.status == 201 and made["alias"] == "continued"


def read_until_blank_line(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an interim answer: {data!r}"
        data += chunk
    return data
