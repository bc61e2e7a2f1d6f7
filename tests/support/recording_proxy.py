"""A recording HTTP proxy on loopback: what an egress proxy sees of the gateway's requests.

    with RecordingProxy.start_in_thread(hosts={"upstream.test": "127.0.0.1"}) as proxy:
        ...                                   # point a provider's ``proxy: {url: proxy.url}`` at it
        proxy.requests                        # [ProxiedRequest("CONNECT", "upstream.test:443", {...}), ...]

It serves the two ways a client uses a proxy: ``CONNECT host:port`` opens a tunnel (the client's TLS runs
through it; the proxy sees only the CONNECT), and an absolute-form request (``GET http://host/path``) is
forwarded to its host with the ``Proxy-*`` headers taken off, one request per connection. ``hosts`` maps
names to the addresses the proxy connects to (a name the test resolves to loopback). With
``require_authorization`` set, a request without exactly that ``Proxy-Authorization`` gets 407.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"})


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    target: str  # host:port for CONNECT, the absolute URL otherwise
    headers: dict[str, str] = field(repr=False)  # names lower-cased

    def __repr__(self) -> str:
        return f"ProxiedRequest({self.method} {self.target})"


class RecordingProxy:
    def __init__(self, hosts: Mapping[str, str] | None = None, require_authorization: str | None = None) -> None:
        self.hosts = dict(hosts or {})
        self.require_authorization = require_authorization
        self.requests: list[ProxiedRequest] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    def __repr__(self) -> str:
        return f"<RecordingProxy port={self._port} requests={len(self.requests)}>"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def targets(self) -> list[str]:
        return [f"{r.method} {r.target}" for r in self.requests]

    # ------------------------------------------------------------------------------ running

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    @classmethod
    def start_in_thread(cls, **options: object) -> Self:
        proxy = cls(**options)  # type: ignore[arg-type]
        proxy._loop = asyncio.new_event_loop()
        proxy._thread = threading.Thread(target=proxy._loop.run_forever, name="recording-proxy", daemon=True)
        proxy._thread.start()
        return asyncio.run_coroutine_threadsafe(proxy.start(), proxy._loop).result(timeout=10)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ serving

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Tracked, so that stopping cancels what is still under way and closes its sockets: a handler left
        # pending when the loop stops is destroyed later by the collector, in some other test, with
        # "Task was destroyed but it is pending" and unclosed sockets.
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._handle(reader, writer)
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        raw_headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines if ":" in line]
        headers = {name.lower(): value for name, value in raw_headers}
        self.requests.append(ProxiedRequest(method, target, headers))
        if self.require_authorization is not None and headers.get("proxy-authorization") != self.require_authorization:
            writer.write(
                b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n'
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await self._close(writer)
            return
        if method == "CONNECT":
            await self._tunnel(target, reader, writer)
        else:
            await self._forward(method, target, version, raw_headers, reader, writer)

    def _address(self, host: str) -> str:
        return self.hosts.get(host, host)

    async def _tunnel(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(self._address(host.strip("[]")), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await self._close(writer)
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await self._pipe_both(reader, writer, up_reader, up_writer)

    async def _forward(
        self,
        method: str,
        target: str,
        version: str,
        raw_headers: list[tuple[str, ...]],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        url = urlsplit(target)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        up_reader, up_writer = await asyncio.open_connection(self._address(url.hostname or ""), url.port or 80)
        kept = [f"{name}: {value}" for name, value in raw_headers if name.lower() not in HOP_BY_HOP]
        head = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close", "", ""])
        up_writer.write(head.encode("latin-1"))
        await up_writer.drain()
        body = asyncio.create_task(self._copy(reader, up_writer, close=False))
        try:
            answer_head = await up_reader.readuntil(b"\r\n\r\n")
            status_line, *answer_lines = answer_head.decode("latin-1").split("\r\n")
            kept_answer = [line for line in answer_lines if line and line.split(":", 1)[0].lower() not in HOP_BY_HOP]
            writer.write("\r\n".join([status_line, *kept_answer, "Connection: close", "", ""]).encode("latin-1"))
            await self._copy(up_reader, writer, close=True)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self._close(writer)
        finally:
            body.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await body
            await self._close(up_writer)

    async def _pipe_both(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        await asyncio.gather(self._copy(reader, up_writer, close=True), self._copy(up_reader, writer, close=True))

    @staticmethod
    async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter, close: bool) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            if close:
                await RecordingProxy._close(sink)

    @staticmethod
    async def _close(writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
