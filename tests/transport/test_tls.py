"""TLS: an upstream signed by the authority the transport trusts is reached; one the system store does
not trust is unavailable before a request is sent."""

from __future__ import annotations

import pytest

from anygate.errors import UpstreamUnavailable
from tests.support.raw_server import RawServer
from tests.support.tls import CertificateAuthority
from tests.transport.contract import (
    SECRET_PATH,
    TransportFactory,
    answers_by_target,
    assert_names_origin_only,
    fetched,
    outgoing,
)

pytestmark = pytest.mark.sockets  # every test talks to a server on a loopback port


async def test_tls_to_an_upstream_signed_by_the_trusted_authority(make_transport: TransportFactory) -> None:
    authority = CertificateAuthority.make()
    async with RawServer(answers_by_target(), tls=authority.server_context("upstream.test")) as server:
        transport = make_transport(ssl=authority.client_context())
        assert await fetched(transport, outgoing(server.url("/secure", host="upstream.test"))) == b"answer to /secure"
        await transport.aclose()  # before the server stops: its TLS shutdown then has a peer that answers


async def test_tls_to_an_upstream_the_system_store_does_not_trust_is_unavailable(
    make_transport: TransportFactory,
) -> None:
    authority = CertificateAuthority.make()
    async with RawServer(answers_by_target(), tls=authority.server_context("upstream.test")) as server:
        request = outgoing(server.url(SECRET_PATH, host="upstream.test"))
        with pytest.raises(UpstreamUnavailable) as caught:
            await fetched(make_transport(), request)
        assert server.requests == []
    assert_names_origin_only(caught.value, request)
