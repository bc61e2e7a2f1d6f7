"""Deadlines and limits on what a client sends, on a real served gateway over raw sockets: slow header
lines and slow body bytes get a 408, a huge header or too many headers a 431, each in the contract's
JSON error shape; ordinary, kept-alive and pipelined requests are untouched."""

from __future__ import annotations

import gc
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from anygate.app import create_app
from tests.support.gateway import ADMIN_KEY, gateway_settings
from tests.support.served import served_with_own_server

pytestmark = pytest.mark.sockets


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error_code(self) -> Any:
        return json.loads(self.body)["error"]["code"]


@contextmanager
def served(timeout_keep_alive: float = 5, **limits: Any) -> Iterator[int]:
    """The gateway under ``anygate serve``'s own server configuration, on an ephemeral port."""
    settings = gateway_settings(port=0, request_limits=limits)
    with served_with_own_server(create_app(settings), settings, timeout_keep_alive=timeout_keep_alive) as port:
        yield port


class Reader:
    """Responses read from one connection, one after another (bytes past one answer are the next's)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = b""

    def more(self) -> bytes:
        chunk = self.sock.recv(65536)
        assert chunk, f"closed without an answer: {self.pending!r}"
        return chunk

    def answer(self) -> Answer:
        """One response: its head, then as many body bytes as Content-Length says."""
        while b"\r\n\r\n" not in self.pending:
            self.pending += self.more()
        head, self.pending = self.pending.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", "0"))
        while len(self.pending) < length:
            self.pending += self.more()
        body, self.pending = self.pending[:length], self.pending[length:]
        return Answer(int(lines[0].split()[1]), headers, body)


def read_answer(sock: socket.socket) -> Answer:
    return Reader(sock).answer()


def is_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def trickle(sock: socket.socket, pieces: Iterator[bytes], every: float, stop: threading.Event) -> threading.Thread:
    """Send one piece every ``every`` seconds until the server closes or ``stop`` is set."""

    def run() -> None:
        for piece in pieces:
            if stop.wait(every):
                return
            try:
                sock.sendall(piece)
            except OSError:
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def flood(sock: socket.socket, data: bytes) -> threading.Thread:
    """Send ``data`` (large) in the background; the server may stop reading and close meanwhile."""

    def run() -> None:
        try:
            sock.sendall(data)
        except OSError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(20)  # far longer than any deadline below: a missing answer fails, never hangs
    return sock


def forever(piece: bytes) -> Iterator[bytes]:
    while True:
        yield piece


def test_header_lines_sent_one_by_one_slowly_get_a_408() -> None:
    stop = threading.Event()
    with served(header_timeout=1) as port, connect(port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n")
        sender = trickle(sock, (b"X-Slow-%d: 1\r\n" % i for i in range(10_000)), 0.2, stop)
        answer = read_answer(sock)
        stop.set()
        sender.join()
        assert is_closed(sock)
    assert answer.status == 408 and answer.error_code() == "request_timeout"
    assert answer.headers["content-type"] == "application/json" and answer.headers["connection"] == "close"
    assert json.loads(answer.body)["error"]["type"] == "invalid_request_error"


def test_a_slow_request_after_a_quick_one_on_the_same_connection_gets_its_408_in_time() -> None:
    """The deadline timer outlives a request (one timer a connection): a later request is still held to
    its own deadline, counted from its first byte."""
    stop = threading.Event()
    with served(header_timeout=1) as port, connect(port) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
        assert reader.answer().status == 200
        time.sleep(0.6)  # the first request's timer is still armed, for before the second one's deadline
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n")
        sender = trickle(sock, (b"X-Slow-%d: 1\r\n" % i for i in range(10_000)), 0.2, stop)
        answer = reader.answer()
        waited = time.monotonic() - started
        stop.set()
        sender.join()
    assert answer.status == 408 and answer.error_code() == "request_timeout"
    assert 0.9 <= waited < 5  # its own second, not the first request's deadline nor none at all


def test_a_connection_that_sends_nothing_gets_a_408() -> None:
    with served(header_timeout=1) as port, connect(port) as sock:
        answer = read_answer(sock)
    assert answer.status == 408 and answer.error_code() == "request_timeout"


def test_body_bytes_sent_one_by_one_slowly_get_a_408() -> None:
    stop = threading.Event()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\nContent-Length: 100000\r\n\r\n"
    )
    with served(body_timeout=1, body_min_rate=1000) as port, connect(port) as sock:
        sock.sendall(head + b"{")
        sender = trickle(sock, forever(b" "), 0.2, stop)
        answer = read_answer(sock)
        stop.set()
        sender.join()
    assert answer.status == 408 and answer.error_code() == "request_timeout"


def test_a_huge_header_gets_a_431_before_it_is_read_to_its_end() -> None:
    with served() as port, connect(port) as sock:
        sender = flood(sock, b"GET /health HTTP/1.1\r\nHost: gateway\r\nX-Big: " + b"a" * (8 * 1024 * 1024))
        answer = read_answer(sock)
        sock.close()
        sender.join()
    assert answer.status == 431 and answer.error_code() == "headers_too_large"
    assert "65536 bytes" in json.loads(answer.body)["error"]["message"]


def test_many_headers_get_a_431() -> None:
    many = b"".join(b"X-Header-%d: 1\r\n" % i for i in range(40_000))
    with served() as port, connect(port) as sock:
        sender = flood(sock, b"GET /health HTTP/1.1\r\nHost: gateway\r\n" + many + b"\r\n")
        answer = read_answer(sock)
        sock.close()
        sender.join()
    assert answer.status == 431 and answer.error_code() == "headers_too_large"
    assert "more than 100 header fields" in json.loads(answer.body)["error"]["message"]


def test_headers_within_the_limits_are_served() -> None:
    fields = b"".join(b"X-Header-%d: %s\r\n" % (i, b"v" * 500) for i in range(98))
    with served() as port, connect(port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n" + fields + b"\r\n")
        answer = read_answer(sock)
    assert answer.status == 200 and json.loads(answer.body) == {"status": "ok"}


def test_a_kept_alive_connection_waits_between_requests_under_the_keep_alive_timeout() -> None:
    """The header deadline (0.5 s here) starts with a request's first byte, not when the last ended:
    between requests only uvicorn's keep-alive timeout (5 s) applies."""
    request = b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n"
    with served(header_timeout=0.5) as port, connect(port) as sock:
        reader = Reader(sock)
        sock.sendall(request)
        first = reader.answer()
        time.sleep(1.5)
        sock.sendall(request)
        second = reader.answer()
    assert (first.status, second.status) == (200, 200)


def test_a_kept_alive_connection_left_idle_is_closed_after_the_keep_alive_timeout() -> None:
    request = b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n"
    with served(timeout_keep_alive=1, header_timeout=30) as port, connect(port) as sock:
        reader = Reader(sock)
        for _ in range(3):  # each request pushes the idle deadline back
            sock.sendall(request)
            assert reader.answer().status == 200
            time.sleep(0.5)
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server, not by the 20 s socket timeout
        waited = time.monotonic() - started
    assert waited < 5


def test_a_kept_alive_connection_keeps_one_timer_however_many_requests_it_carries() -> None:
    """The deadlines and the keep-alive timeout move one timer a connection: none is left behind a request."""
    request = b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n"
    with served() as port, connect(port) as sock:
        reader = Reader(sock)
        sock.sendall(request)
        assert reader.answer().status == 200
        before = live_timers()
        for _ in range(50):
            sock.sendall(request)
            assert reader.answer().status == 200
        after = live_timers()
    assert after <= before + 2


def live_timers() -> int:
    """Timers scheduled and not yet fired or cancelled (the served gateway's loop runs in this process)."""
    return sum(1 for thing in gc.get_objects() if type(thing).__name__ == "TimerHandle" and not thing.cancelled())


def test_pipelined_requests_are_each_answered() -> None:
    request = b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n"
    body = json.dumps({"alias": "pipelined"}).encode()
    post = (
        b"POST /v1/keys HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + ADMIN_KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with served(header_timeout=1, body_timeout=1) as port, connect(port) as sock:
        sock.sendall(request + post + request)
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(3)]
    assert [a.status for a in answers] == [200, 201, 200]
