"""Running the gateway under uvicorn (uvloop + httptools), with one or many workers.

SIGTERM drains: at once no new connection completes (its client is refused at connect), connections
the kernel completed before are still accepted and answered, then the listener closes; in-flight
requests and streams finish (up to ``drain_grace`` seconds; then what is left is cancelled, and the app
answers it with an error), the lifespan shutdown flushes what must be kept, and the process exits 0.
With several workers the parent stops the shared listener and passes SIGTERM on as the signal arrives,
and closes its own copy of the listening socket, so that the socket is gone once every worker has
closed its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import signal
import socket
from collections.abc import Generator
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from anygate.app import Gateway, create_app
from anygate.listener import is_supported as listener_supported
from anygate.listener import queued_connections, refuse_new_connections
from anygate.protocol import LimitedConfig
from anygate.settings import Settings
from anygate.telemetry import configure_logging

HANDSHAKE_GRACE = 0.5  # seconds a handshake answered just before a stop has to complete (a round trip)
ACCEPT_QUEUE_LIMIT = 5.0  # at most this long accepting what was queued before the stop

log = logging.getLogger("anygate.server")


class DrainingServer(uvicorn.Server):
    """uvicorn's server, stopping without dropping a connection: at the signal no new connection
    completes any more, what the kernel completed before is still accepted and served (listener.py),
    then the listener closes and open requests drain. A SIGTERM it drained for is not re-raised (which
    exits 143)."""

    refusing = False  # whether the listener refuses new connections yet

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            self.refuse_new_connections()  # at once, not at the server's next tick
        super().handle_exit(sig, frame)

    def listening_descriptors(self) -> list[int]:
        servers = getattr(self, "servers", [])  # none before the server has started
        return [sock.fileno() for server in servers for sock in server.sockets or ()]

    def refuse_new_connections(self) -> None:
        # The signal and the shutdown both ask; the first that finds the listener open does it.
        if not self.refusing and refuse_new_connections(self.listening_descriptors()):
            self.refusing = True
            log.info("stopped accepting connections", extra={"fields": {"pid": os.getpid()}})

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.refuse_new_connections()  # again: a stop without a signal (or a signal before the start)
        await self.accept_queued_connections()
        await super().shutdown(sockets)

    async def accept_queued_connections(self) -> None:
        """Keep accepting until the accept queues are empty and handshakes answered just before the stop
        have had ``HANDSHAKE_GRACE`` seconds to complete: each of those connections gets its answer."""
        if not listener_supported():
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        descriptors = self.listening_descriptors()
        while loop.time() - started < ACCEPT_QUEUE_LIMIT:
            settled = loop.time() - started >= HANDSHAKE_GRACE
            if settled and not any(queued_connections(fd) for fd in descriptors):
                return
            await asyncio.sleep(0.01)


class DrainingMultiprocess(Multiprocess):
    """uvicorn's worker supervisor, except that a stop takes effect at the signal, not at its next
    half-second tick: no new connection completes from then on, the workers start their drain at once,
    and the parent closes its copy of the listener before it waits for them (while it holds it, the
    listener stays open)."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, self.handle_stop_signal)

    def handle_stop_signal(self, sig: int, frame: FrameType | None) -> None:
        if refuse_new_connections(self.sockets):
            log.info("stopped accepting connections", extra={"fields": {"pid": os.getpid()}})
        if sig == signal.SIGTERM:  # a terminal's Ctrl+C reaches the workers itself, as SIGINT
            for pid in [process.pid for process in self.processes if process.pid is not None]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        self.signal_queue.append(sig)  # the rest at the supervisor's tick, as uvicorn does it

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def worker_app(settings: Settings) -> Gateway:
    """The app factory each worker process calls, with the settings the parent validated (pickled)."""
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def server_config(app: Any, settings: Settings, **extra: Any) -> uvicorn.Config:
    # httptools, under the deadlines and header limits of ``settings.request_limits`` (protocol.py).
    return LimitedConfig(
        app,
        request_limits=settings.request_limits,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # The gateway serves no websocket: with none, uvicorn does not import a websocket library (~0.7 MiB).
        ws="none",
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


class CannotListen(Exception):
    """The listening address cannot be bound (in use, not this machine's, or a privileged port)."""


def bind_listener(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts: a port in use is one clear message at once,
    not a traceback after the store has been opened and the providers discovered."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CannotListen(describe_bind_failure(host, port, exc)) from None
    sock.set_inheritable(True)  # the workers serve it
    return sock


def describe_bind_failure(host: str, port: int, exc: OSError) -> str:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        reason = "the port is in use (another anygate, or another program); choose one with --port or ANYGATE_PORT"
    elif exc.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need privileges); choose another with --port or ANYGATE_PORT"
    elif exc.errno == errno.EADDRNOTAVAIL:
        reason = "that address is not one of this machine's; choose another with --host or ANYGATE_HOST"
    else:
        reason = exc.strerror or str(exc)
    return f"cannot listen on {address}: {reason}"


def run_server(settings: Settings, app_factory: str | None = None, listener: socket.socket | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain. ``app_factory`` names another function each worker calls
    to build its app (``module:function``; tests use it for an app with extra keys). ``listener`` is the
    socket ``bind_listener`` made, else one is bound here (raising CannotListen)."""
    listener = listener or bind_listener(settings.host, settings.port)
    configure_logging(settings.log_level, settings.log_format)
    if settings.workers == 1:
        app: Any = create_app(settings) if app_factory is None else app_factory
        DrainingServer(server_config(app, settings, factory=app_factory is not None)).run(sockets=[listener])
        return
    factory: Any = app_factory or functools.partial(worker_app, settings)
    config = server_config(factory, settings, factory=True, workers=settings.workers)
    DrainingMultiprocess(config, sockets=[listener]).run()
