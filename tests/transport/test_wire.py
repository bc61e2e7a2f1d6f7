"""What goes on the wire: the request as given (method, target, headers, body, one user agent), and no
injection: a header with a line break is refused unsent, a URL never splits the request line."""

from __future__ import annotations

import pytest

from anygate.errors import GatewayError
from tests.support.raw_server import RawServer
from tests.transport.contract import TransportFactory, answers_by_target, everything_sent_is_received, fetched, outgoing

pytestmark = pytest.mark.sockets  # every test talks to a server on a loopback port


async def test_the_request_goes_on_the_wire_as_given(make_transport: TransportFactory) -> None:
    body = b'{"model": "m", "messages": []}'
    headers = {"Authorization": "Bearer sk-upstream", "Content-Type": "application/json", "X-Request-Id": "r-1"}
    async with RawServer(answers_by_target()) as server:
        url = server.url("/v1/chat/completions?api-version=2024-06-01&q=a%20b")
        await fetched(make_transport(), outgoing(url, "POST", headers=headers, body=body))
    [sent] = server.requests
    assert (sent.method, sent.target) == ("POST", "/v1/chat/completions?api-version=2024-06-01&q=a%20b")
    assert sent.values("Host") == [f"127.0.0.1:{server.port}"]
    assert sent.values("Content-Length") == [str(len(body))]
    assert sent.body == body
    for name, value in headers.items():
        assert sent.values(name) == [value]
    assert sent.values("User-Agent") and sent.values("User-Agent")[0]
    assert not sent.values("Transfer-Encoding")


async def test_a_request_of_its_own_user_agent_sends_that_one_alone(make_transport: TransportFactory) -> None:
    async with RawServer(answers_by_target()) as server:
        request = outgoing(server.url(), headers={"User-Agent": "custom/1.0"})
        await fetched(make_transport(), request)
    assert server.requests[0].values("user-agent") == ["custom/1.0"]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Note": "ok\r\nX-Injected: yes"},
        {"X-Note": "ok\nX-Injected: yes"},
        {"X-Note\r\nX-Injected": "yes"},
    ],
    ids=["crlf-in-value", "lf-in-value", "crlf-in-name"],
)
async def test_a_header_with_a_line_break_is_refused_and_nothing_of_it_is_sent(
    make_transport: TransportFactory, headers: dict[str, str]
) -> None:
    # The contract the gateway needs: the injected line never reaches the upstream. aiohttp (and the
    # network transport) raise ValueError before writing the head; a GatewayError would do as well.
    async with RawServer(answers_by_target()) as server:
        transport = make_transport()
        with pytest.raises((GatewayError, ValueError)):
            await fetched(transport, outgoing(server.url(), "POST", headers=headers, body=b"{}"))
        await everything_sent_is_received(transport, server)
    assert b"X-Injected" not in server.received
    assert server.requests == []


async def test_a_url_with_spaces_and_line_breaks_never_splits_the_request_line(
    make_transport: TransportFactory,
) -> None:
    # A path built from a client's input (a deployment or model name): either refused, or sent escaped.
    async with RawServer(answers_by_target()) as server:
        url = server.url("/v1/models/m HTTP/1.1\r\nX-Injected: yes\r\nX-Tail: z")
        transport = make_transport()
        try:
            await fetched(transport, outgoing(url))
        except (GatewayError, ValueError):
            pass
        await everything_sent_is_received(transport, server)
    assert b"\nX-Injected" not in server.received
    for sent in server.requests:
        assert " " not in sent.target and sent.raw.split(b"\r\n", 1)[0].endswith(b" HTTP/1.1")
