"""``anygate serve``: run the gateway."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from anygate.cli.common import ConfigOption, err_console, settings_or_exit, with_store
from anygate.settings import Settings
from anygate.store.store import Store

NO_PROVIDER_HINT = """[yellow]No upstream provider is configured yet.[/yellow] Add one of these and start again:
  • environment: [bold]OPENAI_COMPATIBLE_BASE_URL=https://api.groq.com/openai/v1 OPENAI_COMPATIBLE_API_KEY=...[/bold]
    (or [bold]OPENROUTER_API_KEY=...[/bold], or [bold]OLLAMA_ENABLED=true[/bold] for a local Ollama)
  • a config file: [bold]anygate serve --config anygate.yaml[/bold] with
        providers:
          - id: groq
            api_key: ${GROQ_API_KEY}
  • at runtime, with the admin key: [bold]POST /v1/providers[/bold] (see docs/configuration.md)"""


def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8080).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Accept requests without a key (loopback only).")] = False,
    log_level: Annotated[str | None, typer.Option(help="debug | info | warning | error")] = None,
    drain_grace: Annotated[
        float | None,
        typer.Option("--drain-grace", "--grace", help="Seconds SIGTERM lets open requests finish (default 30)."),
    ] = None,
) -> None:
    """Run the gateway."""
    from anygate.server import announce_admin_key, run_server

    flags: dict[str, Any] = {"config_file": config, "host": host, "port": port, "workers": workers}
    flags |= {"log_level": log_level, "drain_grace": drain_grace}
    flags["no_auth"] = True if no_auth else None
    settings = settings_or_exit(**flags)
    console = err_console()
    announce_admin_key(settings, console)
    stored = check_store(settings)
    if not settings.providers and not stored:
        console.print(NO_PROVIDER_HINT)
    run_server(settings)


def check_store(settings: Settings) -> int:
    """Before serving: migrate the store and check the secret key once, so a problem is one clear
    message and exit status 2 rather than a failed start in every worker. Return how many providers
    the store holds."""

    async def count(store: Store) -> int:
        return len(await store.providers.list())

    try:
        return with_store(settings, count)
    except typer.Exit:
        raise typer.Exit(2) from None
