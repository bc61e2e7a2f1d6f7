"""Running the gateway under uvicorn (uvloop + httptools), with one or many workers."""

from __future__ import annotations

import uvicorn
from rich.console import Console

from anygate.api.app import Gateway, create_app
from anygate.auth import ensure_admin_key
from anygate.settings import Settings, load_settings
from anygate.telemetry import configure_logging


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


def run_server(settings: Settings) -> None:
    configure_logging(settings.log_level)
    common = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 30,
        "server_header": False,
    }
    if settings.workers > 1:
        uvicorn.run("anygate.server:worker_app", factory=True, workers=settings.workers, **common)  # type: ignore[arg-type]
    else:
        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
