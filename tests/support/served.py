"""An ASGI app served as ``anygate serve`` serves the gateway: its own server configuration and protocol
(``anygate.server.server_config``), on an ephemeral port, in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from anygate.server import server_config
from anygate.settings import Settings


@contextmanager
def served_with_own_server(app: Any, settings: Settings, **extra: Any) -> Iterator[int]:
    """``app`` under the gateway's server configuration for ``settings``; yields the port."""
    server = uvicorn.Server(server_config(app, settings, **extra))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=15)
