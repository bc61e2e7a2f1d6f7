"""Running the gateway under uvicorn (uvloop + httptools), with one or many workers.

SIGTERM drains: the listener closes (new connections are refused), in-flight requests and streams
finish (up to ``drain_grace`` seconds; then what is left is cancelled, and the app answers it with an
error), the lifespan shutdown flushes what must be kept, and the process exits 0. With several workers
the parent closes its copy of the listening socket before it passes SIGTERM on, so that the socket is
gone once every worker has closed its own.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Generator
from typing import Any

import uvicorn
from rich.console import Console
from uvicorn.supervisors import Multiprocess

from anygate.api.app import Gateway, create_app
from anygate.auth import ensure_admin_key
from anygate.protocol import LimitedConfig
from anygate.settings import Settings, load_settings
from anygate.telemetry import configure_logging

WORKER_APP = "anygate.server:worker_app"


class DrainingServer(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM it drained for is not re-raised (which exits 143)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]


class DrainingMultiprocess(Multiprocess):
    """uvicorn's worker supervisor, except that it stops listening before it stops the workers.

    The parent binds the socket and keeps it to start replacement workers; while it holds it, the kernel
    keeps accepting connections that no draining worker will ever serve.
    """

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def announce_admin_key(settings: Settings, console: Console) -> None:
    """At first start with no ANYGATE_ADMIN_KEY, make the admin key and print it this once."""
    if settings.admin_key is not None or settings.no_auth:
        return
    key = ensure_admin_key(settings.data_dir)
    if key is not None:
        console.print(
            f"[bold]anygate admin key (shown once, stored only as a hash):[/bold] {key}\n"
            f"Set ANYGATE_ADMIN_KEY to choose your own. Data dir: {settings.data_dir}",
            highlight=False,
        )


def worker_app() -> Gateway:
    """The app factory each worker process calls: settings come from the environment the CLI set."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def server_config(app: Any, settings: Settings, **extra: Any) -> uvicorn.Config:
    # httptools, under the deadlines and header limits of ``settings.request_limits`` (protocol.py).
    return LimitedConfig(
        app,
        request_limits=settings.request_limits,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        log_config=None,
        access_log=False,
        lifespan="on",
        # uvicorn hands it to asyncio.wait_for, which takes any number of seconds.
        timeout_graceful_shutdown=settings.drain_grace,
        server_header=False,
        # Nothing reads the client address; X-Forwarded-* from the client are dropped, never trusted.
        proxy_headers=False,
        **extra,
    )


def run_server(settings: Settings, app_factory: str = WORKER_APP) -> None:
    """Serve until SIGTERM or SIGINT, then drain. ``app_factory`` names the function each worker calls
    to build its app (``module:function``; tests use it for an app with extra keys)."""
    configure_logging(settings.log_level)
    if settings.workers == 1:
        app = create_app(settings) if app_factory == WORKER_APP else app_factory
        DrainingServer(server_config(app, settings, factory=app_factory != WORKER_APP)).run()
        return
    config = server_config(app_factory, settings, factory=True, workers=settings.workers)
    socket = config.bind_socket()
    DrainingMultiprocess(config, sockets=[socket]).run()
