"""The server's word that a client has left (``client_gone``): anygate's own protocol gives each request one
and fires it when the connection is lost before the answer is complete; the disconnect watch listens to it
and cancels the request at once, with no watcher task; under another server the watch falls back to one."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest

from anygate.api.disconnect import WATCH_AFTER_SECONDS, DisconnectWatch, DisconnectWatches
from anygate.api.http import ClientDisconnected
from anygate.app import create_app
from anygate.client_gone import ClientGone, client_gone
from anygate.settings import Settings
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import ADMIN_KEY, fake_provider, gateway_settings
from tests.support.served import served_with_own_server
from tests.support.waiting import eventually

CHAT = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "hi"}]}


def test_the_signal_fires_once_and_tells_a_late_listener_at_once() -> None:
    told: list[str] = []
    signal = ClientGone()
    signal.listen(lambda: told.append("first"))
    signal.fire()
    signal.fire()
    assert told == ["first"] and signal.gone
    signal.listen(lambda: told.append("late"))
    assert told == ["first", "late"]
    signal.listen(None)
    signal.fire()
    assert told == ["first", "late"]


def test_a_scope_without_the_extension_has_no_signal() -> None:
    assert client_gone({"type": "http"}) is None
    assert client_gone({"extensions": {"anygate.client_gone": {"signal": "not one"}}}) is None
    signal = ClientGone()
    assert client_gone({"extensions": {"anygate.client_gone": {"signal": signal}}}) is signal


async def test_a_watch_told_by_the_server_cancels_at_once_and_never_starts_a_watcher() -> None:
    async def receive() -> dict[str, Any]:
        raise AssertionError("the watch never reads: the server tells it")

    signal, watches, exchange = ClientGone(), DisconnectWatches(), SimpleNamespace(client_gone=False)

    async def request() -> None:
        async with DisconnectWatch(receive, exchange, watches, signal):  # type: ignore[arg-type]
            assert len(watches) == 0  # nothing for the sweep to start
            asyncio.get_running_loop().call_soon(signal.fire)
            await asyncio.sleep(WATCH_AFTER_SECONDS * 10)

    with pytest.raises(ClientDisconnected):  # cancelled by the signal, not after the long sleep
        await request()
    assert exchange.client_gone


async def test_a_watch_that_ended_ignores_a_late_signal() -> None:
    signal, exchange = ClientGone(), SimpleNamespace(client_gone=False)

    async def receive() -> dict[str, Any]:
        raise AssertionError("never read")

    async with DisconnectWatch(receive, exchange, DisconnectWatches(), signal):  # type: ignore[arg-type]
        pass
    signal.fire()
    assert not exchange.client_gone


@contextmanager
def served(app: Any, settings: Settings | None = None) -> Iterator[int]:
    """``app`` under ``anygate serve``'s own server configuration (its protocol), on an ephemeral port."""
    with served_with_own_server(app, settings or gateway_settings(port=0)) as port:
        yield port


@pytest.mark.sockets
def test_the_server_tells_a_request_whose_client_left_and_not_one_it_answered() -> None:
    seen: list[ClientGone | None] = []
    told = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        signal = client_gone(scope)
        seen.append(signal)
        await receive()  # the body
        if scope["path"] == "/answered":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        assert signal is not None
        task = asyncio.current_task()
        assert task is not None

        def left() -> None:
            told.set()
            task.cancel()

        signal.listen(left)
        await asyncio.sleep(30)  # a long answer: the client leaves first, and this is cancelled

    with served(app) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /answered HTTP/1.1\r\nhost: x\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.1 204")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
            eventually(lambda: len(seen) == 2, "the slow request reached the app")
        assert told.wait(10), "the app was not told that its client left"
    answered = seen[0]
    assert answered is not None and not answered.gone


@pytest.mark.sockets
def test_a_client_that_leaves_the_served_gateway_cancels_its_upstream_request(tmp_path: Path) -> None:
    with FakeUpstream.start_in_thread() as upstream:
        upstream.script(Reply(hang_before_headers=True), path="/v1/chat/completions")
        settings = gateway_settings(fake_provider(upstream), data_dir=tmp_path / "data", port=0)
        with served(create_app(settings), settings) as port:
            with (
                httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=0.5) as client,
                pytest.raises(httpx2.ReadTimeout),
            ):
                client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {ADMIN_KEY}"})
            eventually(lambda: upstream.disconnects > 0, "the upstream saw the gateway leave")
    assert upstream.disconnects == 1
