"""``anygate models`` and ``anygate providers [test|add|update|remove]``: what the providers serve, and the
store's providers."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from anygate.cli.common import (
    ConfigOption,
    err_console,
    err_console_print,
    load,
    run_async,
    settings_or_exit,
    with_store,
)
from anygate.cli.serve import NO_PROVIDER_HINT
from anygate.errors import GatewayError
from anygate.settings import ProviderConfig, Settings
from anygate.store.crypto import SecretKeyError
from anygate.store.database import StoreUnavailable
from anygate.store.providers import KEEP, Keep, StoredProvider
from anygate.store.store import Store, open_store

providers_app = typer.Typer(help="List and test providers.", invoke_without_command=True)


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
    for check in ("models", "chat", "streaming", "stream_usage", "embeddings", "responses"):
        outcome = result.get(check) or {}
        mark = "[green]ok[/green]" if outcome.get("ok") else f"[red]{escape(str(outcome.get('error', 'no')))}[/red]"
        table.add_row(check, mark)
    Console().print(table)
    save_probe(settings, provider.id, result)
    if not result["capabilities"]["chat"]:
        raise typer.Exit(1)


def stored_providers(settings: Settings) -> tuple[list[StoredProvider], str | None]:
    """The store's providers for ``anygate providers``, or none and why when the store cannot be opened."""

    async def listing() -> list[StoredProvider]:
        store = await open_store(settings)
        try:
            return await store.providers.list()
        finally:
            await store.close()

    try:
        return run_async(listing()), None
    except (StoreUnavailable, SecretKeyError) as exc:
        return [], str(exc)


def save_probe(settings: Settings, provider_id: str, result: dict[str, Any]) -> None:
    """Store what ``anygate providers test`` found, as ``POST /v1/providers/{id}/test`` does."""

    async def save(store: Store) -> None:
        await store.providers.save_probe(provider_id, result)

    with_store(settings, save)


def read_api_key(api_key: str | None, from_stdin: bool) -> str | None | Keep:
    if from_stdin:
        return sys.stdin.readline().strip() or None
    return api_key if api_key is not None else KEEP


def provider_options(
    provider_type: str | None, base_url: str | None, name: str | None, models: list[str] | None, private: bool | None
) -> dict[str, Any]:
    given = {"type": provider_type, "base_url": base_url, "name": name, "models": models or None}
    spec: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if private is not None:
        spec["allow_private_network"] = private
    return spec


TypeOption = Annotated[str | None, typer.Option("--type", help="A preset id or 'custom'.")]


UrlOption = Annotated[str | None, typer.Option("--base-url")]


NameOption = Annotated[str | None, typer.Option("--name")]


ModelOption = Annotated[list[str] | None, typer.Option("--model", help="A model it serves (repeatable).")]


PrivateOption = Annotated[bool | None, typer.Option("--allow-private-network/--no-private-network")]


KeyOption = Annotated[str | None, typer.Option("--api-key", help="Prefer --api-key-stdin: shells keep history.")]


KeyStdinOption = Annotated[bool, typer.Option("--api-key-stdin", help="Read the provider key from stdin.")]


def provider_add(
    provider_id: str,
    provider_type: TypeOption = None,
    base_url: UrlOption = None,
    name: NameOption = None,
    model: ModelOption = None,
    allow_private_network: PrivateOption = None,
    api_key: KeyOption = None,
    api_key_stdin: KeyStdinOption = False,
    config: ConfigOption = None,
) -> None:
    """Add a provider to the store (its key encrypted)."""
    from anygate.management.providers import checked

    settings = load(config)
    if any(p.id == provider_id for p in settings.providers):
        err_console_print(f"provider '{provider_id}' is in the configuration already (the file wins)")
        raise typer.Exit(1)
    spec = {"id": provider_id, **provider_options(provider_type, base_url, name, model, allow_private_network)}
    key = read_api_key(api_key, api_key_stdin)

    async def add(store: Store) -> None:
        await checked(spec)
        await store.providers.create(spec, key if isinstance(key, str) else None)

    with_store(settings, add)
    Console().print(f"added provider {provider_id}")


def provider_update(
    provider_id: str,
    provider_type: TypeOption = None,
    base_url: UrlOption = None,
    name: NameOption = None,
    model: ModelOption = None,
    allow_private_network: PrivateOption = None,
    api_key: KeyOption = None,
    api_key_stdin: KeyStdinOption = False,
    config: ConfigOption = None,
) -> None:
    """Change a stored provider; options not given stay as they are. A new base URL on another scheme,
    host or port needs the key again (--api-key-stdin): a stored key never follows a provider elsewhere."""
    from anygate.management.providers import checked, require_secrets_on_move

    changes = provider_options(provider_type, base_url, name, model, allow_private_network)
    key = read_api_key(api_key, api_key_stdin)

    async def update(store: Store) -> None:
        found = await store.providers.get(provider_id)
        if found is None:
            raise LookupError(f"no stored provider '{provider_id}'")
        stored = found.readable()
        spec = {**stored.config, **changes}
        try:
            require_secrets_on_move(stored, changes, key, await checked(spec))
        except GatewayError as exc:
            raise with_cli_hint(exc) from None
        await store.providers.update(spec, key)

    with_store(load(config), update)
    Console().print(f"updated provider {provider_id}")


def with_cli_hint(error: GatewayError) -> GatewayError:
    """A refused move, with how to give the secrets again from here."""
    if error.code != "api_key_required":
        return error
    hint = "give the key with --api-key-stdin (or --api-key)"
    if error.param != "api_key":
        hint = "replace or remove the other secrets through the management API or the console first"
    return type(error)(f"{error.message}; {hint}", param=error.param, code=error.code)


def provider_remove(provider_id: str, config: ConfigOption = None) -> None:
    """Remove a stored provider."""

    async def remove(store: Store) -> bool:
        return await store.providers.delete(provider_id)

    if not with_store(load(config), remove):
        err_console_print(f"no stored provider '{provider_id}'")
        raise typer.Exit(1)
    Console().print(f"removed provider {provider_id}")


def stored_provider(settings: Settings, provider_id: str) -> tuple[ProviderConfig, str | None]:
    """A provider from the store and its key (for ``anygate providers test``); exit when there is none."""

    async def find(store: Store) -> StoredProvider | None:
        found = await store.providers.get(provider_id)
        return found.readable() if found is not None else None

    stored = with_store(settings, find)
    if stored is None:
        err_console_print(f"no provider '{provider_id}' is configured or stored")
        raise typer.Exit(1)
    try:
        return ProviderConfig.model_validate(stored.config), stored.api_key
    except ValidationError as exc:
        from anygate.settings import describe_errors

        err_console_print(f"stored provider '{provider_id}' is invalid: {describe_errors(exc)}")
        raise typer.Exit(1) from None


providers_app.command("add")(provider_add)
providers_app.command("update")(provider_update)
providers_app.command("remove")(provider_remove)
