"""The transport seam: what the upstream client needs from HTTP, and nothing of any HTTP library.

A ``Transport`` sends one ``OutgoingRequest`` and returns a ``Response`` as soon as its status line and
headers have arrived. The response's body is read through it (whole, or chunk by chunk) with the
request's timers applied inside: the first byte must come within ``Timeouts.first_byte`` of sending,
and once it has, no gap between reads may exceed the read timeout (``set_read_timeout`` changes it
while the response is open: a stream switches to its idle timeout after the first event).

A request may go through an HTTP proxy (``OutgoingRequest.proxy``, ``anygate.egress``): a ``CONNECT`` tunnel
for ``https://``, the request itself for ``http://``; the SSRF guard checks the upstream's host either way.

Every failure of the network or the peer is raised as the gateway's own error (``UpstreamUnavailable``
or ``UpstreamTimeout``) naming ``OutgoingRequest.origin``, never a URL, a header or a key; the one
implementation that talks to the network (``anygate.transport.aiohttp_transport``) maps its library's
exceptions there and nowhere else. Tests drive the whole gateway through an in-memory transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from anygate.egress import Proxy
from anygate.errors import UpstreamResponseTooLarge

USER_AGENT = "anygate/0.1"  # sent unless a request names its own


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: to connect; from sending to the first byte; between reads after it; for the whole exchange."""

    connect: float = 10.0
    first_byte: float = 30.0
    idle: float = 30.0
    total: float | None = 600.0

    def capped(self, seconds: float, whole_request: bool = False) -> Timeouts:
        """These timeouts with the connect and first-byte waits at most ``seconds`` (and the total too when
        the cap is for the whole request)."""
        seconds = max(seconds, 0.001)
        total = self.total
        if whole_request:
            total = seconds if total is None else min(total, seconds)
        return Timeouts(min(self.connect, seconds), min(self.first_byte, seconds), self.idle, total)


@dataclass(slots=True)  # not frozen: made per request (docs/architecture.md, Hot path)
class OutgoingRequest:
    """One request to an upstream. ``origin`` is how errors name the peer (``Provider 'groq'``).

    ``proxy``: the HTTP proxy it goes through (None: directly). The upstream's host is still resolved and
    checked here, under ``allow_private_network``, before anything is sent to the proxy. ``max_body``: an
    answer read whole (``read()``) longer than this raises ``UpstreamResponseTooLarge`` as soon as it is
    known (its ``Content-Length``, or the bytes read so far), and the connection is dropped."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    body: bytes | None = field(default=None, repr=False)
    timeouts: Timeouts = Timeouts()
    allow_private_network: bool = False
    origin: str = "upstream"
    proxy: Proxy | None = None
    max_body: int | None = None  # the most bytes ``read()`` returns (None: no limit): past it, an error


class Headers:
    """Response headers as received: raw ``(name, value)`` byte pairs, names compared case-insensitively."""

    __slots__ = ("raw",)

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self.raw: tuple[tuple[bytes, bytes], ...] = tuple(raw)

    def get(self, name: str) -> str | None:
        wanted = name.lower().encode("latin-1")
        for key, value in self.raw:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    @property
    def content_type(self) -> str:
        """The media type alone, lower-cased (``text/event-stream``), or ``""``."""
        value = self.get("content-type") or ""
        return value.split(";", 1)[0].strip().lower()

    def __repr__(self) -> str:
        return f"Headers({[k.decode('latin-1') for k, _ in self.raw]})"


def check_declared_length(headers: Headers, limit: int, origin: str) -> None:
    """Refuse an answer whose ``Content-Length`` says it is longer than ``limit``, before reading it."""
    declared = headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise UpstreamResponseTooLarge(origin, limit)


class Response(Protocol):
    """An open response: the body is not read yet. ``aclose`` gives the connection back (or drops it)."""

    status: int
    headers: Headers

    async def read(self) -> bytes:
        """The whole body."""
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, chunk by chunk."""
        ...

    @property
    def ended(self) -> bool:
        """Whether the whole body has arrived and ``chunks`` has handed all of it out (the next step of
        ``chunks`` ends at once): what a relay sends last can then go out with the end of its answer."""
        ...

    def set_read_timeout(self, seconds: float) -> None:
        """From now on, fail when no byte arrives for ``seconds``."""
        ...

    async def aclose(self) -> None: ...


class Transport(Protocol):
    async def send(self, request: OutgoingRequest) -> Response:
        """Send the request and wait for the status line and headers. Redirects are never followed."""
        ...

    async def aclose(self) -> None: ...
