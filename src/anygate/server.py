"""Running the gateway under uvicorn (uvloop + httptools), with one or many workers.

SIGTERM drains: the listener closes, in-flight requests and streams finish (up to the grace period),
the lifespan shutdown flushes what must be kept, and the process exits 0.
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
from anygate.settings import Settings, load_settings
from anygate.telemetry import configure_logging

GRACE_SECONDS = 30


class DrainingServer(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM it drained for is not re-raised (which exits 143)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]


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
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACE_SECONDS,
        server_header=False,
        **extra,
    )


def run_server(settings: Settings) -> None:
    configure_logging(settings.log_level)
    if settings.workers == 1:
        DrainingServer(server_config(create_app(settings), settings)).run()
        return
    config = server_config("anygate.server:worker_app", settings, factory=True, workers=settings.workers)
    socket = config.bind_socket()
    Multiprocess(config, sockets=[socket]).run()
