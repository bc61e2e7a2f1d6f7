"""A loopback HTTP/1.1 server scripted byte by byte, for the tests of a transport itself.

A script gets each accepted connection and writes exactly the bytes it wants; the connection is closed
when the script returns (or when the server stops, for a script that waits forever):

    async def answer(connection: RawConnection) -> None:
        while await connection.read_request() is not None:      # keep-alive: every request on it
            await connection.send(response(200, b"ok"))

    async with RawServer(answer) as server:
        ... server.url("/v1/models") ...

The server counts what a pool test needs (connections accepted, open at once) and records every
request's bytes exactly as they arrived. A script that fails for another reason than the peer going
away fails the test when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

# What a script may meet when the client hangs up mid-answer: part of the scenario, not a failure.
PEER_GONE = (ConnectionError, asyncio.IncompleteReadError)
LAST_CHUNK = b"0\r\n\r\n"


@dataclass(frozen=True)
class RawRequest:
    """One request as it arrived: its head parsed, ``raw`` the bytes themselves."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    raw: bytes

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None


class RawConnection:
    """One accepted connection, as the script sees it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        self.reader = reader
        self.writer = writer
        self._server = server

    async def read_request(self) -> RawRequest | None:
        """The next request (its body by ``Content-Length``), or None when the client closed first."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            self._server.received += exc.partial
            return None
        self._server.received += head
        request_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers = tuple((name.strip(), value.strip()) for name, value in (line.split(":", 1) for line in lines))
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        body = await self.reader.readexactly(length)
        self._server.received += body
        request = RawRequest(method, target, headers, body, head + body)
        self._server.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def wait_for_client_to_close(self) -> None:
        """Read (and drop) whatever comes until the client closes the connection."""
        while await self.reader.read(65536):
            pass


Script = Callable[[RawConnection], Awaitable[None]]


class RawServer:
    """An asyncio server on 127.0.0.1 (an ephemeral port) running ``script`` on every connection."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self._script = script
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.errors: list[BaseException] = []
        self.requests: list[RawRequest] = []
        self.received = b""  # every byte any client sent, in arrival order
        self.accepted = 0
        self.closed = 0
        self.open_now = 0
        self.most_open = 0

    @property
    def port(self) -> int:
        assert self._port is not None, "the server is not started"
        return self._port

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.accepted += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            await self._script(RawConnection(reader, writer, self))
        except (*PEER_GONE, asyncio.CancelledError):  # the client hung up; the server is stopping
            pass
        except Exception as exc:  # noqa: BLE001 - kept, and raised when the server stops
            self.errors.append(exc)
        finally:
            self.open_now -= 1
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(*PEER_GONE, asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 5)
            self.closed += 1

    async def wait_until(self, check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
        """Wait until ``check()`` holds (the server's own counters); fail after ``seconds``."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not check():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting until {what}")
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        handlers = list(self._handlers)
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await self._server.wait_closed()
        if kind is None and self.errors:
            raise AssertionError(f"the server's script failed: {self.errors[0]!r}") from self.errors[0]


def response(status: int, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A whole response delimited by ``Content-Length``."""
    return head(status, (*headers, ("Content-Length", str(len(body))))) + body


def head(status: int, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A status line and headers, up to and including the blank line."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a ``Transfer-Encoding: chunked`` body (``LAST_CHUNK`` ends the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKED = (("Transfer-Encoding", "chunked"),)
REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    302: "Found",
    307: "Temporary Redirect",
    304: "Not Modified",
    404: "Not Found",
}
