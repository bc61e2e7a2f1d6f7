"""The HTTP/1.1 protocol anygate serves with: uvicorn's httptools protocol, with deadlines and limits on
what a client sends (uvicorn has neither with httptools), set by ``Settings.request_limits``.

- The request line and headers must arrive within ``header_timeout`` seconds: from the connection for
  its first request, from the request's first byte for the next ones. Else 408.
- They may be at most ``max_header_bytes`` bytes and ``max_headers`` fields. Else 431; the bytes are
  counted as they arrive, so an endless header is refused after about that many, not read to its end.
- The body must arrive within ``body_timeout`` seconds of the headers, a deadline that every
  ``body_min_rate`` bytes received push back by one second (Apache's mod_reqtimeout rule: a large upload
  goes on while it keeps that pace; one byte every half second does not). Else 408, or, when the app has
  already answered, the connection is closed.

Between requests on a kept-alive connection uvicorn's keep-alive timeout rules: these deadlines run only
while a request is being received, and stand still while the gateway itself has paused reading (its
back-pressure, or a pipelined request waiting its turn). A refusal is the contract's JSON error with
``Connection: close``; the connection is then half-closed and what the client still sends is read and
dropped for a moment (a lingering close), so that the answer reaches it rather than a reset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from anygate.client_gone import CLIENT_GONE, ClientGone, client_gone
from anygate.deadline_timer import DeadlineTimer
from anygate.errors import GatewayError, HeadersTooLarge, RequestTimeout
from anygate.settings import RequestLimits

log = logging.getLogger("anygate.server")

LINGER_SECONDS = 2.0  # after a refusal, how long what the client still sends is read and dropped


class LimitedConfig(uvicorn.Config):
    """uvicorn's Config, serving with ``LimitedHttpToolsProtocol`` under ``request_limits``.

    Its app may also be a picklable app factory (``functools.partial(make_app, settings)``), not only an
    import string: each worker process gets the Settings the parent validated, as an argument, rather
    than rebuilding them from an environment the parent would have had to write."""

    def __init__(self, app: Any, *, request_limits: RequestLimits, **options: Any) -> None:
        super().__init__(app, http=LimitedHttpToolsProtocol, **options)
        self.request_limits = request_limits

    def load_app(self) -> Any:
        return self.app if callable(self.app) else super().load_app()


class Refused(Exception):
    """Raised inside a parser callback: the request is answered with ``error`` and not read further."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.error = error


class WatchedFlowControl(FlowControl):
    """uvicorn's flow control, telling the protocol when the gateway pauses and resumes reading."""

    def __init__(self, transport: asyncio.Transport, on_change: Callable[[bool], None]) -> None:
        super().__init__(transport)
        self._on_change = on_change

    def pause_reading(self) -> None:
        if not self.read_paused:
            super().pause_reading()
            self._on_change(True)

    def resume_reading(self) -> None:
        if self.read_paused:
            super().resume_reading()
            self._on_change(False)


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HeadWithBody:
    """What a request's response is written through: its head is held until the first piece of body and
    both go out in one write, one system call and one segment instead of two (an answer read whole goes
    out in a single write). A head with no body by the end of the event loop's turn (a HEAD request, a
    stream whose first event is not ready) goes out alone then; closing writes it first."""

    __slots__ = ("_transport", "_loop", "_head", "_headed")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None
        self._headed = False  # the head has come (held or written)

    def write(self, data: bytes) -> None:
        if self._headed:
            head, self._head = self._head, None
            self._transport.write(data if head is None else head + data)
        elif data == CONTINUE:  # before the head, and must not wait for it: the client waits for it
            self._transport.write(data)
        else:
            self._headed = True
            self._head = data
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """One client connection: uvicorn's protocol with a deadline on each request's headers and body and
    limits on the headers' size and number."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        limits = getattr(config, "request_limits", None)
        self.limits = limits if isinstance(limits, RequestLimits) else RequestLimits()
        self.receiving_headers = False
        self.unparsed_header_bytes = 0  # bytes read while the headers are incomplete (httptools holds them)
        self.header_bytes = 0  # the request line and header fields parsed so far
        self.header_count = 0
        self.deadline: float | None = None  # when the headers or the body being received are due
        self.deadline_timer = DeadlineTimer(self.loop)  # for the deadlines and the keep-alive wait alike
        self.idle_until: float | None = None  # kept alive between requests: closed if nothing comes by then
        self.paused_at: float | None = None
        self.refused = False
        self.last_request = False  # the server is stopping: close after the request being received

    # ------------------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = WatchedFlowControl(transport, self.reading_paused)
        self.start_headers()  # the first request's headers are due from the connection on

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_deadline()
        self.disarm()
        super().connection_lost(exc)
        self.tell_client_gone()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # lingering: read and dropped
        self._unset_keepalive_if_required()
        if self.receiving_headers:
            self.unparsed_header_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, Refused):
                self.refuse(exc.__context__.error)
            else:
                self.invalid_request()
        except httptools.HttpParserError:
            self.invalid_request()
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.stop_deadline()  # the connection is another protocol's from here on
                self.disarm()
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        else:
            # Still no end of the headers: httptools keeps a header it has not finished in memory.
            if self.receiving_headers and self.unparsed_header_bytes > self.limits.max_header_bytes:
                self.refuse(self.headers_too_large())

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive timeout kept on the connection's one timer (``idle_until``) rather
        than a timer of its own made and cancelled for every request."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.idle_until = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self.idle_until = self.loop.time() + self.timeout_keep_alive
            self.arm_by(self.idle_until)

    def _unset_keepalive_if_required(self) -> None:
        self.idle_until = None  # something came: the timer, when it fires, finds no idle deadline

    def shutdown(self) -> None:
        """The server stops: a connection with a request on its way, or accepted before the stop with its
        first request not here yet, gets that request answered and then closes (uvicorn would close it
        unanswered); an idle or busy one is left to uvicorn (closed now, or after its response)."""
        between_requests = self.cycle is None or self.cycle.response_complete
        if self.receiving_headers and between_requests and not self.refused:
            self.last_request = True
            return
        super().shutdown()

    def tell_client_gone(self) -> None:
        """The request under way has lost its client (uvicorn marked its cycle): tell its app at once."""
        cycle = self.cycle
        if cycle is not None and cycle.disconnected:
            signal = client_gone(cycle.scope)
            if signal is not None:
                signal.fire()

    def invalid_request(self) -> None:
        self.stop_deadline()
        log.warning("invalid HTTP request received")
        self.send_400_response("Invalid HTTP request received.")

    # ------------------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self.receiving_headers:
            self.start_headers()

    # The next two are uvicorn's, with the limits counted in the same call: they run for every header of
    # every request, where a call into the base class and one to count the bytes cost more than their work.

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > self.limits.max_header_bytes:
            raise Refused(self.headers_too_large())

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > self.limits.max_headers:
            raise Refused(HeadersTooLarge(f"Request has more than {self.limits.max_headers} header fields"))
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.limits.max_header_bytes:
            raise Refused(self.headers_too_large())
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.receiving_headers = False
        self.start_deadline(self.limits.body_timeout)  # stopped at once when there is no body
        super().on_headers_complete()
        if self.cycle is not None:  # the transport the response is written through
            self.cycle.transport = HeadWithBody(self.transport, self.loop)  # type: ignore[assignment]
            # Before the app's task first runs (it was only made): the app may listen for the client leaving.
            self.cycle.scope.setdefault("extensions", {})[CLIENT_GONE] = {"signal": ClientGone()}
        if self.last_request and self.cycle is not None:
            self.cycle.keep_alive = False  # the server is stopping: this answer closes the connection

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self.deadline is not None:
            self.deadline += len(body) / self.limits.body_min_rate

    def on_message_complete(self) -> None:
        self.stop_deadline()
        super().on_message_complete()

    # ------------------------------------------------------------------------------ limits

    def start_headers(self) -> None:
        self.receiving_headers = True
        self.unparsed_header_bytes = 0
        self.header_bytes = 0
        self.header_count = 0
        self.start_deadline(self.limits.header_timeout)

    def headers_too_large(self) -> HeadersTooLarge:
        return HeadersTooLarge(f"Request headers are larger than the limit of {self.limits.max_header_bytes} bytes")

    # ------------------------------------------------------------------------------ the deadline

    def start_deadline(self, seconds: float) -> None:
        now = self.loop.time()
        self.deadline = now + seconds
        self.paused_at = now if self.flow is not None and self.flow.read_paused else None
        if self.paused_at is None:
            self.arm_by(self.deadline)

    def stop_deadline(self) -> None:
        # The timer is left be: it finds no deadline when it fires, or the next request's (one timer a
        # connection rather than two a request: creating and cancelling one costs ~2 µs).
        self.deadline = None
        self.paused_at = None

    def arm_by(self, deadline: float) -> None:
        self.deadline_timer.fire_by(deadline, self.check_deadline)

    def disarm(self) -> None:
        self.deadline_timer.cancel()

    def reading_paused(self, paused: bool) -> None:
        """The gateway paused or resumed reading: the client cannot send meanwhile, so the clock stops."""
        if self.deadline is None:
            return
        if paused and self.paused_at is None:
            self.paused_at = self.loop.time()  # the timer, if it fires meanwhile, finds the clock stopped
        elif not paused and self.paused_at is not None:
            self.deadline += self.loop.time() - self.paused_at
            self.paused_at = None
            self.arm_by(self.deadline)

    def check_deadline(self) -> None:
        self.deadline_timer.fired()
        if self.idle_until is not None:  # between requests: uvicorn's keep-alive timeout, on this timer
            if self.loop.time() < self.idle_until:
                self.arm_by(self.idle_until)
            elif not self.transport.is_closing():
                self.transport.close()
            return
        if self.deadline is None or self.paused_at is not None:
            return
        if self.loop.time() < self.deadline:  # pushed back by the body bytes that came meanwhile
            self.arm_by(self.deadline)
            return
        if self.receiving_headers:
            self.refuse(RequestTimeout(f"The request headers did not arrive within {self.limits.header_timeout:g} s"))
        else:
            self.refuse(RequestTimeout("The request body did not arrive in time"))

    # ------------------------------------------------------------------------------ refusing

    def refuse(self, error: GatewayError) -> None:
        """Answer ``error`` and close the connection; when a response is under way on it, cut it off."""
        self.stop_deadline()
        log.warning("request refused", extra={"fields": {"status": error.status, "error": error.message}})
        cycle = self.cycle
        if self.receiving_headers:  # ``cycle`` is the previous request's, if any
            answered_already = cycle is not None and not cycle.response_complete
        else:  # ``cycle`` is this request's: its app sees the client leave, and answers nowhere
            answered_already = cycle is not None and cycle.response_started
            if cycle is not None:
                cycle.disconnected = True
                cycle.message_event.set()
                self.tell_client_gone()
        if answered_already:  # another answer is (being) written on this connection: no room for ours
            self.transport.close()
            return
        self.transport.write(self.error_response(error))
        self.linger()

    def error_response(self, error: GatewayError) -> bytes:
        body = error.body_bytes()
        head = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/json\r\nx-content-type-options: nosniff\r\nconnection: close\r\n")
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        return b"".join([*head, body])

    def linger(self) -> None:
        """Half-close after the answer and drop what the client still sends, for a moment: closing with
        unread data would reset the connection, and the client could lose the answer."""
        self.refused = True
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
