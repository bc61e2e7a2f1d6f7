"""The SSRF guard: a redirect is returned, never followed; a name resolving to the metadata address, or
to loopback when private networks are not allowed, and a literal address the guard forbids are refused
before any connection is tried."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from anygate.errors import UpstreamUnavailable
from anygate.transport.base import Timeouts
from tests.support.raw_server import RawConnection, RawServer, response
from tests.transport.contract import (
    SECRET_PATH,
    TransportFactory,
    answers_by_target,
    assert_names_origin_only,
    differs_on_aiohttp,
    fetched,
    opened,
    outgoing,
)

pytestmark = pytest.mark.sockets  # every test talks to a server on a loopback port


@pytest.mark.parametrize("status", [302, 307])
async def test_a_redirect_is_returned_not_followed(make_transport: TransportFactory, status: int) -> None:
    async with RawServer(answers_by_target()) as elsewhere:

        async def redirect(connection: RawConnection) -> None:
            await connection.read_request()
            await connection.send(response(status, b"", (("Location", elsewhere.url("/moved")),)))

        async with RawServer(redirect) as server:
            async with opened(make_transport(), outgoing(server.url(), "POST", body=b"{}")) as reply:
                assert reply.status == status
                assert reply.headers.get("location") == elsewhere.url("/moved")
        assert elsewhere.accepted == 0


@pytest.fixture
def connect_attempts(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The addresses the process tries to connect a socket to, while the test runs."""
    attempts: list[Any] = []
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def recorded(method: Callable[..., Any]) -> Callable[..., Any]:
        def record(sock: socket.socket, address: Any) -> Any:
            attempts.append(address)
            return method(sock, address)

        return record

    monkeypatch.setattr(socket.socket, "connect", recorded(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", recorded(connect_ex))
    return attempts


@pytest.mark.parametrize("allow_private_network", [False, True])
async def test_a_name_resolving_to_the_metadata_address_is_refused_before_connecting(
    make_transport: TransportFactory, connect_attempts: list[Any], allow_private_network: bool
) -> None:
    request = outgoing(
        f"http://evil.test{SECRET_PATH}",
        allow_private_network=allow_private_network,
        timeouts=Timeouts(connect=2),  # were it tried, a connection there would fail, not hang the test
    )
    with pytest.raises(UpstreamUnavailable) as caught:
        await fetched(make_transport(), request)
    assert_names_origin_only(caught.value, request)
    assert not [address for address in connect_attempts if str(address[0]).startswith("169.254.")]


async def test_a_name_resolving_to_loopback_is_refused_unless_private_networks_are_allowed(
    make_transport: TransportFactory,
) -> None:
    async with RawServer(answers_by_target()) as server:
        transport = make_transport()
        refused = outgoing(server.url(SECRET_PATH, host="upstream.test"), allow_private_network=False)
        with pytest.raises(UpstreamUnavailable) as caught:
            await fetched(transport, refused)
        assert_names_origin_only(caught.value, refused)
        assert server.accepted == 0
        allowed = outgoing(server.url("/models", host="upstream.test"), allow_private_network=True)
        assert await fetched(transport, allowed) == b"answer to /models"


@pytest.mark.parametrize(
    ("host", "allow_private_network"),
    [("169.254.169.254", False), ("169.254.169.254", True), ("127.0.0.1", False)],
)
async def test_a_literal_address_the_guard_forbids_is_refused_before_connecting(
    request: pytest.FixtureRequest,
    transport_kind: str,
    make_transport: TransportFactory,
    connect_attempts: list[Any],
    host: str,
    allow_private_network: bool,
) -> None:
    differs_on_aiohttp(
        request,
        transport_kind,
        "aiohttp asks no resolver for a literal address, so its guard never sees one (the gateway checks "
        "base URLs with netguard.check_url when it loads them)",
    )
    async with RawServer(answers_by_target()) as server:
        refused = outgoing(
            server.url(SECRET_PATH, host=host),
            allow_private_network=allow_private_network,
            timeouts=Timeouts(connect=2),  # were it tried, a connection there would fail, not hang the test
        )
        with pytest.raises(UpstreamUnavailable) as caught:
            await fetched(make_transport(), refused)
        assert server.accepted == 0
    assert_names_origin_only(caught.value, refused)
    assert not [address for address in connect_attempts if address[0] == host]
