"""Stopping a listener: new connections refused at connect, those the kernel completed before kept."""

from __future__ import annotations

import socket
import sys
import threading

import pytest

from anygate.listener import queued_connections, refuse_new_connections

pytestmark = [
    pytest.mark.sockets,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the socket filter is Linux's"),
]


def test_a_stopped_listener_keeps_its_queue_and_refuses_new_connections_at_connect() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        address = listener.getsockname()
        early = [socket.create_connection(address, timeout=10) for _ in range(2)]
        assert queued_connections(listener) == 2
        assert refuse_new_connections([listener])
        outcome: list[str] = []

        def connect_late() -> None:
            try:
                socket.create_connection(address, timeout=20).close()
                outcome.append("connected")
            except ConnectionRefusedError:
                outcome.append("refused")

        late = threading.Thread(target=connect_late)
        late.start()
        accepted = [listener.accept()[0] for _ in early]  # completed before the stop: still there
        for client, server_side in zip(early, accepted, strict=True):
            client.sendall(b"ping")
            assert server_side.recv(4) == b"ping"
        assert queued_connections(listener) == 0
        late.join(timeout=0.5)
        assert late.is_alive()  # its SYN is dropped: it waits, and is not queued
        assert queued_connections(listener) == 0
    late.join(timeout=20)  # the listener is closed: its retried SYN is refused
    assert outcome == ["refused"]
    for sock in [*early, *accepted]:
        sock.close()
