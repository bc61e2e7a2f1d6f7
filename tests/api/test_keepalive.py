"""A translated stream's keep-alive: a ping each interval of the upstream's silence, none while it talks,
and none after ``stop``, even one held up by a slow client (it goes out before the stream's last message).

Nothing here depends on how fast the machine runs: the tests wait for what they expect to have happened
(with a generous bound), and the "keeps talking" case speaks ten times as often as the interval."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from anygate.api.keepalive import KeepAlive

PING = b"event: ping\ndata: {}\n\n"
INTERVAL = 0.02
PATIENCE = 10.0  # seconds to wait for something that must happen


class Client:
    """An ASGI ``send`` that records what it is sent; ``slow`` holds each send until ``reads`` is set."""

    def __init__(self, slow: bool = False) -> None:
        self.sent: list[bytes] = []
        self.started = 0  # sends begun, held or not
        self.reads = asyncio.Event()
        if not slow:
            self.reads.set()

    async def send(self, message: dict[str, Any]) -> None:
        self.started += 1
        await self.reads.wait()
        self.sent.append(message["body"])


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(PATIENCE):
        while not check():  # noqa: ASYNC110  (what is checked has no event of its own)
            await asyncio.sleep(INTERVAL / 4)


async def test_pings_go_out_while_the_upstream_is_silent_and_stop_with_the_stream() -> None:
    client = Client()
    keepalive = KeepAlive(client.send, PING, INTERVAL)
    await until(lambda: len(client.sent) >= 3)
    await keepalive.stop()
    pinged = len(client.sent)
    assert set(client.sent) == {PING}
    await asyncio.sleep(INTERVAL * 3)
    assert len(client.sent) == pinged  # none after stop


async def test_no_ping_while_the_upstream_keeps_talking() -> None:
    client = Client()
    interval = 0.3  # heard every 10 ms: only a stall of the whole loop for ~0.3 s would let a ping through
    keepalive = KeepAlive(client.send, PING, interval)
    for _ in range(60):
        await asyncio.sleep(0.01)
        keepalive.heard()
    await keepalive.stop()
    assert client.sent == []


async def test_a_ping_held_up_by_a_slow_client_goes_out_before_stop_returns() -> None:
    client = Client(slow=True)
    keepalive = KeepAlive(client.send, PING, INTERVAL)
    await until(lambda: client.started == 1)  # a ping is on its way, waiting for the client to read
    stopping = asyncio.ensure_future(keepalive.stop())
    await asyncio.sleep(INTERVAL)
    assert not stopping.done()  # the relay's last message must wait for it
    client.reads.set()
    await stopping
    assert client.sent == [PING]
    client.sent.append(b"the stream's last message")
    await asyncio.sleep(INTERVAL * 3)
    assert client.sent[-1] == b"the stream's last message"


async def test_a_relay_cancelled_while_it_waits_for_a_ping_takes_the_ping_back() -> None:
    client = Client(slow=True)
    keepalive = KeepAlive(client.send, PING, INTERVAL)
    await until(lambda: client.started == 1)
    stopping = asyncio.ensure_future(keepalive.stop())
    await asyncio.sleep(INTERVAL / 2)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    client.reads.set()
    await asyncio.sleep(INTERVAL * 3)
    assert client.sent == []  # the held ping never went out, and no other followed


async def test_a_ping_that_fails_is_dropped_and_the_next_one_still_goes(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[bytes] = []

    async def failing_once(message: dict[str, Any]) -> None:
        if not sent:
            sent.append(b"failed")
            raise RuntimeError("the client's socket broke")
        sent.append(message["body"])

    keepalive = KeepAlive(failing_once, PING, INTERVAL)
    await until(lambda: len(sent) >= 2)
    await keepalive.stop()
    assert sent[0] == b"failed" and set(sent[1:]) == {PING}
    assert "never retrieved" not in caplog.text
