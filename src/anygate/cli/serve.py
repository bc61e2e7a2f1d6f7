"""``anygate serve``: run the gateway, after a banner saying where it listens, where its console is, where the
admin key comes from, and what in the configuration looks wrong."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from anygate.cli.common import ConfigOption, err_console, err_console_print, run_async, settings_or_exit, with_store
from anygate.cli.running_gateway import local_url
from anygate.settings import Settings, environment_with
from anygate.store.store import Store

NO_PROVIDER_HINT = """[yellow]No upstream provider is configured yet.[/yellow] Add one of these and start again:
  • environment: [bold]OPENAI_COMPATIBLE_BASE_URL=https://api.groq.com/openai/v1 OPENAI_COMPATIBLE_API_KEY=...[/bold]
    (or [bold]OPENROUTER_API_KEY=...[/bold], or [bold]OLLAMA_ENABLED=true[/bold] for a local Ollama)
  • a config file: [bold]anygate serve --config anygate.yaml[/bold] with
        providers:
          - id: groq
            api_key: ${GROQ_API_KEY}
    (every setting: docs/configuration.md)
  • at runtime, with the admin key: [bold]anygate providers add[/bold] or [bold]POST /v1/providers[/bold]
    (see docs/management-api.md)"""


def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8080).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Accept requests without a key (loopback only).")] = False,
    log_level: Annotated[str | None, typer.Option(help="debug | info | warning | error")] = None,
    log_format: Annotated[
        str | None, typer.Option(help="auto (text on a terminal, JSON otherwise) | json | text")
    ] = None,
    drain_grace: Annotated[
        float | None,
        typer.Option("--drain-grace", "--grace", help="Seconds SIGTERM lets open requests finish (default 30)."),
    ] = None,
) -> None:
    """Run the gateway."""
    from anygate.server import CannotListen, bind_listener
    from anygate.server_process import exec_server

    flags: dict[str, Any] = {"config_file": config, "host": host, "port": port, "workers": workers}
    flags |= {"log_level": log_level, "log_format": log_format, "drain_grace": drain_grace}
    flags["no_auth"] = True if no_auth else None
    settings = settings_or_exit(**flags)
    try:
        listener = bind_listener(settings.host, settings.port)
    except CannotListen as exc:
        err_console_print(str(exc))
        raise typer.Exit(1) from None
    try:
        prepare(settings, listener, err_console())
    except BaseException:
        listener.close()  # a failed start gives the port back at once
        raise
    exec_server(flags, listener)  # the gateway runs without the command line's libraries (server_process.py)


def prepare(settings: Settings, listener: socket.socket, console: Console) -> None:
    """Before serving: the banner, the store migrated and its secret key checked, and what looks wrong."""
    from anygate.config_checks import static_warnings

    print_banner(settings, listener, console)
    stored = check_store(settings)
    for warning in static_warnings(settings):
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    if not settings.providers and not stored:
        console.print(NO_PROVIDER_HINT)


def print_banner(settings: Settings, listener: socket.socket, console: Console) -> None:
    """Where the gateway answers, its console, and which admin key opens it (a new one is printed once)."""
    from anygate import __version__

    base = local_url(settings.host, int(listener.getsockname()[1]))
    console.print(f"[bold]anygate {__version__}[/bold] listening on {base}", highlight=False)
    console.print(f"  console:   {base}/ui/", highlight=False)
    console.print(f"  API:       {base}/v1 (OpenAI-compatible)", highlight=False)
    console.print(f"  admin key: {admin_key_source(settings)}", highlight=False)
    console.print(f"  data:      {escape(str(settings.data_dir))}", highlight=False)


def admin_key_source(settings: Settings) -> str:
    """Which admin key the gateway accepts, and where it comes from; a key generated now is in the text
    (this once: only its hash is kept)."""
    from anygate.auth import ADMIN_KEY_FILE, ensure_admin_key

    if settings.no_auth:
        return "none needed (--no-auth: requests without a key are accepted, on loopback only)"
    if settings.admin_key is not None:
        return "the one you set (ANYGATE_ADMIN_KEY, or admin_key in the config file)"
    key = ensure_admin_key(settings.data_dir)
    if key is not None:
        return f"generated now and shown this once (only its hash is kept): [bold]{key}[/bold]"
    stored = escape(str(settings.data_dir / ADMIN_KEY_FILE))
    return (
        f"the one generated at an earlier start (only its hash is kept, in {stored}; "
        "set ANYGATE_ADMIN_KEY, or delete that file and start again for a new one)"
    )


def check_store(settings: Settings) -> int:
    """Before serving: migrate the store and check the secret key once, so a problem is one clear
    message and exit status 2 rather than a failed start in every worker. Return how many providers
    the store holds."""

    async def count(store: Store) -> int:
        return len(await store.providers.list())

    migrate_apart(settings)
    try:
        return with_store(settings, count)
    except typer.Exit:
        raise typer.Exit(2) from None


def migrate_apart(settings: Settings) -> None:
    """A database not at the newest revision (a first start, or after an upgrade of anygate) is migrated by
    ``anygate db upgrade`` in a process of its own: alembic and mako, imported to migrate, would otherwise stay
    in the gateway's memory (~9 MiB) for as long as it runs. A database that cannot be read is left to
    ``check_store``, which says why."""
    from anygate.store.database import SHIPPED_HEAD, StoreUnavailable, revision_at

    try:
        if run_async(revision_at(settings.resolved_database_url)) == SHIPPED_HEAD:
            return
    except StoreUnavailable:
        return
    argv = [sys.executable, "-m", "anygate", "db", "upgrade"]
    argv += ["--config", str(settings.config_file)] if settings.config_file is not None else []
    # The very database and data dir (its secret key file) these settings name, however they were given.
    place = {"ANYGATE_DATABASE_URL": settings.resolved_database_url, "ANYGATE_DATA_DIR": str(settings.data_dir)}
    done = subprocess.run(argv, env=environment_with(place), stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise typer.Exit(2)  # its message is on stderr
