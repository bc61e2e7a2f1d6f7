"""One HTTP/1.1 connection to an upstream: it writes a request and parses the response as it arrives.

The connection is an asyncio ``Protocol`` with httptools' response parser (the C parser uvicorn uses for
requests) fed straight from ``data_received``: no stream reader, no per-chunk task. A response's body
waits in a buffer until it is read; past ``HIGH_WATER`` buffered bytes the socket stops being read, so a
slow client holds a stream's upstream back instead of growing memory. A compressed body is decoded the
same way, a bounded piece at a time as the reader takes it (``anygate.transport.decoding``).

Timers. An exchange has a read timeout (from sending until the first byte: the first-byte timeout; then,
after ``set_read_timeout``, between reads) and an optional deadline for the whole exchange. Both are
watched by one timer that is re-armed lazily: data arriving only notes the time, and the timer, when it
fires early, sets itself again for the new deadline. The read timeout counts only while the connection
waits for the upstream: not while a body sits unread or the socket is paused for a slow reader.

Upstream bytes are untrusted: the response head is bounded (``MAX_HEAD_BYTES``), a response the parser
refuses ends the exchange, and every failure is a gateway error naming the origin, never a URL or a header.
"""

from __future__ import annotations

import asyncio
import select
import zlib
from collections import deque
from collections.abc import Callable

import httptools

from anygate.deadline_timer import DeadlineTimer
from anygate.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from anygate.transport.decoding import BodyDecoder

HIGH_WATER = 256 * 1024  # buffered body bytes past which the socket is paused (until the reader takes them)
MAX_HEAD_BYTES = 256 * 1024  # status line and headers together


class Connection(asyncio.Protocol):
    """A connection and the one exchange it carries at a time. ``key`` names the pool it belongs to."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, key: object, on_lost: Callable[[Connection], None] | None = None
    ) -> None:
        self.loop = loop
        self.key = key
        self._on_lost = on_lost  # the pool forgets a lost connection, whoever still holds it
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.is_open = False  # connected and not lost
        self.exchanges = 0  # how many exchanges it has carried (a reused connection may be stale)
        # The parser calls back into this connection, which holds it: a cycle, broken when the connection
        # is lost, or every closed connection would wait for the cyclic collector (which anygate runs
        # rarely) with its buffers (``connection_lost``).
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._lost: asyncio.Future[None] | None = None
        # One timer for the connection's exchanges, left set from one to the next (``finish``): the
        # connection's, not an exchange's, so ``_reset_exchange`` never drops it while it is scheduled.
        self._timer = DeadlineTimer(loop)
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self.origin = "upstream"
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.received_any = False  # a byte of this exchange's response has arrived
        self.lost_before_answer = False  # the upstream closed the connection before a byte of the answer
        self.complete = False  # the whole response has arrived
        self._keep_alive = False  # the upstream keeps the connection open after it
        self.error: GatewayError | None = None
        self._head: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._head_bytes = 0
        self._head_done = False
        self._framed = False  # the body's end is declared (length or chunked), so EOF before it is an error
        self._expects_body = True  # False for HEAD: the answer's Content-Length describes a body never sent
        self._decoder: BodyDecoder | None = None
        self._read_timeout = 0.0
        self._last_data = 0.0
        self._total_deadline: float | None = None

    # -------------------------------------------------------------------------------- the exchange

    def begin(
        self, origin: str, data: bytes, first_byte: float, total: float | None, method: str = "GET"
    ) -> asyncio.Future[None]:
        """Send a request (``data``: head and body) and return a future that is done when the response's
        head has arrived (or the exchange failed: ``error`` says how)."""
        assert self.transport is not None
        self._reset_exchange()
        self.origin = origin
        self._expects_body = method != "HEAD"
        self.exchanges += 1
        now = self.loop.time()
        self._read_timeout = first_byte
        self._last_data = now
        self._total_deadline = None if total is None else now + total
        self._head = self.loop.create_future()
        self._arm_by(self._next_deadline())
        self.transport.write(data)
        return self._head

    def take(self) -> bytes | None:
        """The body that has arrived and not been taken (b"" when none yet), or None at its end."""
        if not self._body and self._decoder is not None:
            self._decode()  # compressed bytes held back until the reader caught up
        data: bytes | None = None
        if self._body:
            data = b"".join(self._body) if len(self._body) > 1 else self._body[0]
            self._body.clear()
            self._buffered = 0
            self._last_data = self.loop.time()  # the reader has caught up: the read timeout starts afresh
        if self._paused and not self._holds_undecoded and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        if data is not None:
            return data
        if self.error is not None:
            raise self.error
        return None if self.complete and self._decoder is None else b""

    async def next_piece(self) -> bytes | None:
        """The next part of the body as soon as there is one, or None at its end (raises the exchange's
        failure)."""
        while (data := self.take()) == b"":
            await self.wait_for_body()
        return data

    async def wait_for_body(self) -> None:
        """Until more body arrives, the body ends, or the exchange fails."""
        if self._body or self.complete or self.error is not None:
            return
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def set_read_timeout(self, seconds: float) -> None:
        self._read_timeout = max(seconds, 0.001)
        self._last_data = self.loop.time()
        self._arm_by(self._next_deadline())

    @property
    def body_ended(self) -> bool:
        """Whether the whole body has arrived and been taken: the next ``take`` returns None."""
        return self.complete and self.error is None and not self._body and self._decoder is None

    @property
    def reusable(self) -> bool:
        """Whether another exchange may use this connection: its last response ended cleanly and the
        upstream keeps the connection alive."""
        return (
            self.is_open
            and self.complete
            and self.error is None
            and not self._body
            and self._decoder is None
            and self._keep_alive
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def has_news(self) -> bool:
        """Whether the upstream has sent anything (its close, most often) that the event loop has not
        delivered yet: an idle connection with news is not reused. One ``select`` with no wait."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def finish(self) -> None:
        """The exchange is over for its caller. An answer read whole leaves its timer be: it finds the
        exchange complete when it fires, or the next exchange's deadlines (one timer a connection, not one
        a request: creating and cancelling a timer costs ~2 µs)."""
        if not self.complete:
            self._disarm()
        self._head = self._waiter = None

    def close(self) -> None:
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self._disarm()
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self) -> None:
        if self.is_open and self._lost is not None:
            await asyncio.shield(self._lost)

    # -------------------------------------------------------------------------------- protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        self.is_open = True
        self._lost = self.loop.create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_open = False
        self._parser = None
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        if self._on_lost is not None:
            self._on_lost(self)
        if self.complete or self._head is None and self._waiter is None and not self.received_any:
            self._disarm()  # a timer left armed (``finish``) would keep this closed connection until it fires
            return  # idle, or the response had ended
        if not self._head_done:
            self.lost_before_answer = not self.received_any and self.error is None
            self._fail(UpstreamUnavailable(f"{self.origin} closed the connection"))
        elif self._framed:
            self._fail(UpstreamUnavailable(f"{self.origin} sent an incomplete response"))
        else:  # a body delimited by the connection's end has ended
            self.complete = True
            self._flush_decoder()
            self._wake()

    def eof_received(self) -> bool | None:
        return False  # close our side too: connection_lost follows

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        self._last_data = self.loop.time()
        if not self._head_done:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(UpstreamUnavailable(f"{self.origin} sent response headers that are too large"))
                return
        parser = self._parser
        if parser is None:
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(UpstreamUnavailable(f"{self.origin} sent an invalid HTTP response"))

    # -------------------------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer to one request (or bytes while idle): never a next exchange's
            raise ConnectionError("a response after the exchange's own")  # the parser refuses: closed

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None  # called from inside its feed_data
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self.raw_headers = []
            return
        self.status = status
        self._head_done = True
        for name, value in self.raw_headers:
            lowered = name.lower()
            if lowered == b"content-length" or lowered == b"transfer-encoding":
                self._framed = True
            elif lowered == b"content-encoding":
                self._decoder = BodyDecoder.for_encoding(value)
        if not self._expects_body:
            # The parser cannot be told the request was HEAD: it would wait for the body the length
            # describes. The answer ends here, and the connection with it (its parser is mid-message).
            self.complete = True
            self._decoder = None
            self._disarm()
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.complete:  # bytes sent as the body of an answer to HEAD: never part of any answer
            return
        if self._decoder is not None:
            self._decoder.feed(body)
            if self._buffered < HIGH_WATER:
                self._decode()
            else:
                self._pause_if_behind()
            return
        self._add_body(body)

    def _add_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        self._pause_if_behind()
        self._wake()

    def _pause_if_behind(self) -> None:
        behind = self._buffered > HIGH_WATER or self._holds_undecoded
        if behind and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    @property
    def _holds_undecoded(self) -> bool:
        return self._decoder is not None and self._decoder.has_input

    def _decode(self) -> None:
        """Decode a bounded piece of the compressed body held (all of it flushed once the body ended)."""
        decoder = self._decoder
        assert decoder is not None
        try:
            data = decoder.decode(HIGH_WATER)
            if self.complete and not decoder.has_input:
                data += decoder.flush()
                self._decoder = None
        except zlib.error:
            self._decoder = None
            self.complete = False  # a body that does not decode did not end well, wherever its bytes stopped
            self._fail(UpstreamUnavailable(f"{self.origin} sent a body that does not decompress"))
            return
        if data:
            self._add_body(data)
        else:
            self._pause_if_behind()

    def on_message_complete(self) -> None:
        if not self._head_done or self.complete:  # the end of an interim answer; of a HEAD answer's bogus body
            return
        self._keep_alive = (
            self._parser is not None and self._parser.should_keep_alive()
        )  # asked now: the parser forgets it after
        self.complete = True
        self._flush_decoder()
        self._wake()  # the timer is left to find the exchange complete (``finish``)

    # -------------------------------------------------------------------------------- helpers

    def _flush_decoder(self) -> None:
        """At the body's end: decode what is left now, unless the reader is behind (``take`` will)."""
        if self._decoder is not None and not self._holds_undecoded and not self._body:
            self._decode()

    def _fail(self, error: GatewayError) -> None:
        if self.error is None and not self.complete:
            self.error = error
        self.abort()
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _next_deadline(self) -> float:
        deadline = self._last_data + self._read_timeout
        if self._total_deadline is not None and self._total_deadline < deadline:
            return self._total_deadline
        return deadline

    def _arm_by(self, when: float) -> None:
        self._timer.fire_by(when, self._on_timer)

    def _disarm(self) -> None:
        self._timer.cancel()

    def _on_timer(self) -> None:
        self._timer.fired()
        if self.complete or self.error is not None:
            return
        now = self.loop.time()
        if self._total_deadline is not None and now >= self._total_deadline:
            self._fail(UpstreamTimeout(f"{self.origin} did not answer in time"))
            return
        waiting_for_upstream = not self._body and not self._paused
        if waiting_for_upstream and now >= self._last_data + self._read_timeout:
            self._fail(UpstreamTimeout(f"{self.origin} did not answer in time"))
            return
        if not waiting_for_upstream:
            self._last_data = now  # the read timeout counts again once the reader has caught up
        self._timer.fire_at(self._next_deadline(), self._on_timer)
