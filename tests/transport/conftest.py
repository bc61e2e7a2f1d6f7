"""The transport seam's contract, held by every transport that talks to the network.

Each test runs on the aiohttp transport and on the lean HTTP/1.1 client (``anygate.transport.network``)
against a server on a loopback port that writes exactly the bytes the case needs
(``tests/support/raw_server.py``). Waits that only bound a hang are generous (``within``); no test asserts
how long anything took. One concept a module:

- ``test_framing.py``: where a body begins and ends, interim answers, gzip, a large body read slowly;
- ``test_pool.py``: keep-alive and the pool: reuse, connections that close, the connection limit;
- ``test_failures.py``: failures and their messages, which name the origin and never the path;
- ``test_timers.py``: the connect, first-byte, read and total deadlines;
- ``test_guard.py``: redirects returned, not followed, and the SSRF guard;
- ``test_wire.py``: what goes on the wire, and no header or request-line injection;
- ``test_tls.py``: TLS to an upstream trusted or not.

Here: the fixtures that run every test on each transport. ``contract.py``: the helpers the modules share.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from anygate.transport.aiohttp_transport import AiohttpTransport
from anygate.transport.base import Transport
from anygate.transport.network import NetworkTransport
from tests.support.names import MappedResolver
from tests.transport.contract import NAMES, TransportFactory

TRANSPORT_CLASSES: dict[str, TransportFactory] = {"aiohttp": AiohttpTransport, "network": NetworkTransport}


@pytest.fixture(params=["aiohttp", "network"])
def transport_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def make_transport(transport_kind: str) -> AsyncIterator[TransportFactory]:
    """``make_transport(**options)``: a transport of the kind under test that resolves the test's names
    (no real DNS), closed when the test ends (closing one the test closed already must be harmless)."""
    cls = TRANSPORT_CLASSES[transport_kind]
    made: list[Transport] = []

    def make(**options: Any) -> Transport:
        transport: Transport = cls(**{"resolver": lambda: MappedResolver(NAMES), **options})
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.aclose()
    gc.collect()  # whatever a transport leaked warns now, in the test that leaked it
