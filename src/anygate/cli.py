"""``anygate ...``: serve the gateway, and look at providers and models from the terminal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table
from rich.text import Text

from anygate.accounting.commands import usage
from anygate.errors import ConfigError
from anygate.quota.commands import quota_app
from anygate.settings import ProviderConfig, Settings, export_for_workers, load_settings

app = typer.Typer(
    help="anygate: any OpenAI-compatible LLM endpoint behind one OpenAI-compatible API.", no_args_is_help=True
)
providers_app = typer.Typer(help="List and test providers.", invoke_without_command=True)
app.add_typer(providers_app, name="providers")
app.add_typer(quota_app, name="quota")
app.command("usage")(usage)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (or ANYGATE_CONFIG).")]

NO_PROVIDER_HINT = """[yellow]No upstream provider is configured yet.[/yellow] Add one of these and start again:
  • environment: [bold]OPENAI_COMPATIBLE_BASE_URL=https://api.groq.com/openai/v1 OPENAI_COMPATIBLE_API_KEY=...[/bold]
    (or [bold]OPENROUTER_API_KEY=...[/bold], or [bold]OLLAMA_ENABLED=true[/bold] for a local Ollama)
  • a config file: [bold]anygate serve --config anygate.yaml[/bold] with
        providers:
          - id: groq
            api_key: ${GROQ_API_KEY}
  • at runtime, with the admin key: [bold]POST /v1/providers[/bold] (see docs/configuration.md)"""


def err_console() -> Console:
    # Messages are never wrapped by rich: a piped terminal is 80 columns wide, and a hint with a command
    # in it must stay one line that can be copied.
    return Console(stderr=True, soft_wrap=True)


def settings_or_exit(**flags: Any) -> Settings:
    try:
        return load_settings(flags)
    except ConfigError as exc:
        # The message quotes the operator's file: text, never rich markup.
        err_console().print(Text(f"anygate: {exc}", style="red"), highlight=False)
        raise typer.Exit(2) from None


@app.command()
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
    from anygate.cli_store import check_store
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
    export_for_workers(flags)
    run_server(settings)


def run_async(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@app.command()
def models(config: ConfigOption = None) -> None:
    """What each provider serves (discovers the lists now)."""
    from anygate.registry import ProviderRegistry
    from anygate.transport.aiohttp_transport import AiohttpTransport

    settings = settings_or_exit(config_file=config)

    async def discover() -> ProviderRegistry:
        transport = AiohttpTransport()
        registry = ProviderRegistry(settings, transport)
        try:
            with Progress(
                SpinnerColumn(), TextColumn("{task.description}"), console=err_console(), transient=True
            ) as bar:
                await discover_showing_progress(registry, bar)
        finally:
            await transport.aclose()
        return registry

    registry = run_async(discover())
    table = Table("provider", "model", "source")
    for runtime in registry.runtimes.values():
        for model in runtime.models or []:
            table.add_row(runtime.id, escape(model), runtime.models_source)
        if not runtime.models:
            problem = escape(runtime.discovery_error or "no models")
            table.add_row(runtime.id, f"[red]{problem}[/red]", runtime.models_source)
    Console().print(table)


async def discover_showing_progress(registry: Any, bar: Progress) -> None:
    """Discover every provider at once; the bar names those still being waited for."""
    waiting = {runtime.id: runtime for runtime in registry.runtimes.values()}
    task = bar.add_task("Discovering models", total=len(waiting))

    async def discover_one(provider_id: str) -> None:
        await registry.discover(waiting[provider_id])
        del waiting[provider_id]
        bar.update(task, advance=1, description=describe_waiting(waiting))

    bar.update(task, description=describe_waiting(waiting))
    await asyncio.gather(*(discover_one(provider_id) for provider_id in list(waiting)))


def describe_waiting(waiting: dict[str, Any]) -> str:
    return f"Discovering models of {escape(', '.join(waiting))}" if waiting else "Discovered"


@providers_app.callback()
def providers_list(ctx: typer.Context, config: ConfigOption = None) -> None:
    """List the providers: the configured ones and the store's (no secrets)."""
    from anygate.cli_store import stored_providers

    if ctx.invoked_subcommand is not None:
        return
    settings = settings_or_exit(config_file=config)
    stored, problem = stored_providers(settings)
    table = Table("id", "name", "type", "base_url", "origin", "key", "models")
    origin = "file" if settings.config_file else "env"
    for provider in settings.providers:
        add_provider_row(table, provider, origin, key_state(settings.provider_key(provider), provider.auth))
    configured = {p.id for p in settings.providers}
    for entry in stored:
        if entry.id in configured:
            continue  # the file wins
        try:
            shown = ProviderConfig.model_validate(entry.config)
        except ValidationError:
            shown = ProviderConfig.model_construct(**entry.config)
        state = f"[red]{escape(entry.error)}[/red]" if entry.error else key_state(entry.api_key, shown.auth)
        add_provider_row(table, shown, "store", state)
    Console().print(table)
    if problem is not None:
        err_console().print(f"anygate: stored providers not shown: {problem}", highlight=False, markup=False)
    elif not settings.providers and not stored:
        err_console().print(NO_PROVIDER_HINT)


def key_state(api_key: str | None, auth: str | None) -> str:
    return "yes" if api_key else ("not needed" if auth == "none" else "[red]missing[/red]")


def add_provider_row(table: Table, provider: ProviderConfig, origin: str, key: str) -> None:
    # Names and URLs come from the operator: shown as text, never read as rich markup.
    cells = (provider.id, provider.name, provider.type, provider.base_url, origin)
    table.add_row(*(escape(str(cell or "")) for cell in cells), key, str(len(provider.models or [])))


@providers_app.command("test")
def providers_test(
    provider_id: str,
    config: ConfigOption = None,
    model: Annotated[
        str | None, typer.Option(help="Model to try (default: the provider's default_model, else the first listed).")
    ] = None,
) -> None:
    """Probe one provider live: model list, a 1-token chat, streaming, usage on streams, embeddings.

    What it supports is stored (shown as ``capabilities``, as after ``POST /v1/providers/{id}/test``);
    the exit status is 1 when the chat check fails."""
    from anygate.cli_store import save_probe, stored_provider
    from anygate.probe import capabilities, probe_provider
    from anygate.upstream import OpenAICompatibleProvider

    settings = settings_or_exit(config_file=config)
    provider = next((p for p in settings.providers if p.id == provider_id), None)
    api_key = settings.provider_key(provider) if provider is not None else None
    if provider is None:
        provider, api_key = stored_provider(settings, provider_id)

    async def probe() -> dict[str, Any]:
        async with OpenAICompatibleProvider.from_config(provider, api_key) as client:
            return await probe_provider(client, model or provider.default_model)

    result = run_async(probe())
    result["capabilities"] = capabilities(result)
    table = Table("check", "result")
    for check in ("models", "chat", "streaming", "stream_usage", "embeddings"):
        outcome = result.get(check) or {}
        mark = "[green]ok[/green]" if outcome.get("ok") else f"[red]{escape(str(outcome.get('error', 'no')))}[/red]"
        table.add_row(check, mark)
    Console().print(table)
    save_probe(settings, provider.id, result)
    if not result["capabilities"]["chat"]:
        raise typer.Exit(1)


def main() -> None:
    app()


from anygate.cli_store import register_store_commands  # noqa: E402 - the store's commands need the app above

register_store_commands(app, providers_app)
