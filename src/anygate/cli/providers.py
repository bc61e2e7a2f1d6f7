"""``anygate models`` and ``anygate providers [test|add|update|remove]``: what the providers serve, and the
store's providers."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from anygate.cli.common import (
    DEFAULT_TIMEOUT,
    ConfigOption,
    TimeoutOption,
    err_console,
    err_console_print,
    fail,
    load,
    progress,
    run_async,
    settings_or_exit,
    with_store,
)
from anygate.cli.running_gateway import GatewayUnreadable
from anygate.cli.serve import NO_PROVIDER_HINT
from anygate.egress import Proxy
from anygate.errors import GatewayError
from anygate.settings import ProviderConfig, Settings
from anygate.store.crypto import SecretKeyError
from anygate.store.database import StoreUnavailable
from anygate.store.providers import KEEP, Keep, StoredProvider
from anygate.store.store import Store, open_store

# A gateway answers, but this command sees no provider: the quick start's variables were given to the gateway only.
UNSEEN_HERE = (
    "no provider is configured for this command, though a gateway answers at {url}: this command reads the"
    " environment, a .env in this folder, --config and the store, not what the gateway was started with. Give"
    " it the same variables (a .env in the folder you run both from does) or --config, or set ANYGATE_ADMIN_KEY"
    " to ask the gateway what it serves"
)

providers_app = typer.Typer(help="List and test providers.", invoke_without_command=True)


def models(config: ConfigOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT) -> None:
    """What each provider serves. With providers in the store, or none configured here: what the running
    gateway serves (its /v1/providers, asked with ANYGATE_ADMIN_KEY); otherwise, or when it cannot be read,
    each provider's list discovered now. Exit status 1 when a list could not be had."""
    settings = settings_or_exit(config_file=config)
    stored, problem = stored_providers(settings)
    if problem is not None:
        err_console_print(f"stored providers not included: {problem}")
    if stored:
        try:
            served = read_running_gateway(settings, timeout)
        except GatewayUnreadable as exc:
            err_console_print(f"the running gateway's lists could not be read ({exc}); discovering them from here")
        else:
            show_models(served)
            return
    if not settings.providers and not stored:
        gateways = nothing_configured_here(settings, timeout)
        if gateways is None:
            raise typer.Exit(1)
        show_models(gateways)
        return
    show_models(discover_here(settings, stored, timeout))


def nothing_configured_here(settings: Settings, timeout: float) -> list[dict[str, Any]] | None:
    """No provider in this command's configuration nor in the store: what the running gateway serves, read
    with ANYGATE_ADMIN_KEY when it is set (the README's quick start gives the gateway its provider in its own
    environment, which a command in another terminal does not share). Else None, after a line saying why
    nothing is seen (a gateway answers here) or how to add a provider (none does)."""
    from anygate.cli.running_gateway import gateway_answers, gateway_url

    if settings.admin_key is not None:
        try:
            return read_running_gateway(settings, timeout)
        except GatewayUnreadable as exc:
            err_console_print(f"no provider is configured here, and the running gateway could not be read ({exc})")
            return None
    if run_async(gateway_answers(settings, min(timeout, 2.0))):
        err_console_print(UNSEEN_HERE.format(url=gateway_url(settings)))
    else:
        err_console().print(NO_PROVIDER_HINT)
    return None


def read_running_gateway(settings: Settings, timeout: float) -> list[dict[str, Any]]:
    from anygate.cli.running_gateway import gateway_url, served_providers

    with progress(f"Asking the gateway at {gateway_url(settings)} what it serves"):
        served: list[dict[str, Any]] = run_async(served_providers(settings, timeout))
    return served


def discover_here(settings: Settings, stored: list[StoredProvider], timeout: float) -> list[dict[str, Any]]:
    """Every provider's list, discovered now from this machine (each given ``timeout`` seconds), in the shape
    of the gateway's ``/v1/providers``."""
    from anygate.management.provider_view import routed_view
    from anygate.registry import ProviderRegistry
    from anygate.transport.network import NetworkTransport

    async def discover() -> list[dict[str, Any]]:
        transport = NetworkTransport()
        registry = ProviderRegistry(settings, transport)
        registry.replace_store_providers(readable_configs(stored))
        try:
            with progress("Discovering models") as describe:
                await discover_showing_progress(registry, describe, timeout)
        finally:
            await transport.aclose()
        return [routed_view(registry, runtime) for runtime in registry.runtimes.values()]

    described: list[dict[str, Any]] = run_async(discover())
    return described


def readable_configs(stored: list[StoredProvider]) -> list[tuple[ProviderConfig, str | None]]:
    entries = []
    for entry in stored:
        if entry.error is None:
            try:
                entries.append((entry.validated(), entry.api_key))
            except ValidationError:
                err_console_print(f"stored provider '{entry.id}' is invalid: skipped")
    return entries


async def discover_showing_progress(registry: Any, describe: Callable[[str], None], timeout: float) -> None:
    """Discover every provider at once, each for at most ``timeout`` seconds; the spinner names those still
    being waited for."""
    waiting = {runtime.id: runtime for runtime in registry.runtimes.values()}

    async def discover_one(provider_id: str) -> None:
        runtime = waiting[provider_id]
        try:
            await asyncio.wait_for(registry.discover(runtime), timeout)
        except TimeoutError:
            runtime.discovery_error = f"no answer within {timeout:g} s (--timeout)"
        del waiting[provider_id]
        describe(describe_waiting(waiting))

    describe(describe_waiting(waiting))
    await asyncio.gather(*(discover_one(provider_id) for provider_id in list(waiting)))


def describe_waiting(waiting: dict[str, Any]) -> str:
    return f"Discovering models of {escape(', '.join(waiting))}" if waiting else "Discovered"


def show_models(providers: list[dict[str, Any]]) -> None:
    """One row per model; a provider whose list could not be had is one line on stderr, and exit status 1."""
    table = Table("provider", "model", "source")
    for provider in providers:
        for model in provider.get("models") or []:
            table.add_row(escape(str(provider.get("id"))), escape(str(model)), str(provider.get("models_source", "")))
    if table.row_count:
        Console().print(table)
    failed = [p for p in providers if p.get("discovery_error")]
    for provider in failed:
        shown = "showing its configured or last known list" if provider.get("models") else "no list known"
        err_console_print(f"{provider.get('id')}: model discovery failed: {provider['discovery_error']} ({shown})")
    if failed:
        raise typer.Exit(1)


@providers_app.callback()
def providers_list(ctx: typer.Context, config: ConfigOption = None, timeout: TimeoutOption = DEFAULT_TIMEOUT) -> None:
    """List the providers: the configured ones and the store's (no secrets). With providers in the store,
    the models column counts what the running gateway serves (read with ANYGATE_ADMIN_KEY); with none
    configured here, the running gateway's own (read with ANYGATE_ADMIN_KEY)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_or_exit(config_file=config)
    stored, problem = stored_providers(settings)
    if not settings.providers and not stored and problem is None:
        show_served_providers(nothing_configured_here(settings, timeout) or [])
        return
    served = served_counts(settings, timeout) if stored else {}
    table = Table("id", "name", "type", "base_url", "origin", "key", "models")
    origin = "file" if settings.config_file else "env"
    for provider in settings.providers:
        key = key_state(settings.provider_key(provider), provider.auth)
        add_provider_row(table, provider, origin, key, served.get(provider.id))
    configured = {p.id for p in settings.providers}
    for entry in stored:
        if entry.id in configured:
            continue  # the file wins
        try:
            shown = entry.validated()
        except ValidationError:
            shown = ProviderConfig.model_construct(**entry.config)
        state = f"[red]{escape(entry.error)}[/red]" if entry.error else key_state(entry.api_key, shown.auth)
        add_provider_row(table, shown, "store", state, served.get(entry.id))
    Console().print(table)
    if problem is not None:
        err_console_print(f"stored providers not shown: {problem}")


def show_served_providers(served: list[dict[str, Any]]) -> None:
    """The running gateway's providers (``GET /v1/providers``), as the table of ``anygate providers``."""
    if not served:
        return
    table = Table("id", "name", "type", "base_url", "origin", "key", "models")
    for provider in served:
        cells = [escape(str(provider.get(name) or "")) for name in ("id", "name", "type", "base_url")]
        key = "yes" if provider.get("configured") else "[red]missing[/red]"
        origin = f"gateway ({escape(str(provider.get('origin') or ''))})"
        table.add_row(*cells, origin, key, str(len(provider.get("models") or [])))
    Console().print(table)


def served_counts(settings: Settings, timeout: float) -> dict[str, int]:
    """How many models the running gateway serves per provider; empty, with a line saying why, when it
    cannot be read (the models column then counts the configured lists)."""
    from anygate.cli.running_gateway import GatewayUnreadable

    try:
        served = read_running_gateway(settings, timeout)
    except GatewayUnreadable as exc:
        err_console_print(f"models column: configured lists only; the running gateway could not be read ({exc})")
        return {}
    return {str(p.get("id")): len(p.get("models") or []) for p in served}


def key_state(api_key: str | None, auth: str | None) -> str:
    return "yes" if api_key else ("not needed" if auth == "none" else "[red]missing[/red]")


def add_provider_row(table: Table, provider: ProviderConfig, origin: str, key: str, served: int | None) -> None:
    # Names and URLs come from the operator: shown as text, never read as rich markup.
    cells = (provider.id, provider.name, provider.type, provider.base_url, origin)
    count = served if served is not None else len(provider.models or [])
    table.add_row(*(escape(str(cell or "")) for cell in cells), key, str(count))


@providers_app.command("test")
def providers_test(
    provider_id: str,
    config: ConfigOption = None,
    model: Annotated[
        str | None, typer.Option(help="Model to try (default: the provider's default_model, else the first listed).")
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.1, help="Seconds for the whole probe, every check together (no retries)."),
    ] = DEFAULT_TIMEOUT,  # the probe's deadline as the API has it (``probe.PROBE_DEADLINE``)
) -> None:
    """Probe one provider live: model list, a 1-token chat, streaming, usage on streams, embeddings.

    What it supports is stored (shown as ``capabilities``, as after ``POST /v1/providers/{id}/test``);
    the exit status is 1 when the chat check fails or the probe runs out of time."""
    from anygate.probe import CHECKS, capabilities

    settings = settings_or_exit(config_file=config)
    provider = next((p for p in settings.providers if p.id == provider_id), None)
    api_key = settings.provider_key(provider) if provider is not None else None
    if provider is None:
        provider, api_key = stored_provider(settings, provider_id)
    routed = settings.routed(provider)  # as its requests go: the gateway-wide Cloudflare settings, its proxy
    probe = probe_within(routed, api_key, model or provider.default_model, timeout, settings.proxy_for(routed))
    result, finished = run_async(probe)
    table = Table("check", "result")
    for check in CHECKS:  # out of time, the check under way says so (``probe_until``)
        table.add_row(check, check_mark(result.get(check), finished, timeout))
    Console().print(table)
    if not finished:
        fail(f"the probe of '{provider.id}' ran out of time after {timeout:g} s (--timeout); nothing was stored")
    result["capabilities"] = capabilities(result)
    save_probe(settings, provider.id, result)
    if not result["capabilities"]["chat"]:
        raise typer.Exit(1)


async def probe_within(
    provider: ProviderConfig, api_key: str | None, model: str | None, timeout: float, proxy: Proxy | None = None
) -> tuple[dict[str, Any], bool]:
    """The probe's results so far, and whether it finished within ``timeout`` seconds; the spinner names
    the check under way."""
    from anygate.probe import CHECKS, probe_until
    from anygate.upstream import OpenAICompatibleProvider

    result: dict[str, Any] = {"provider": provider.id, "checked_at": int(time.time())}

    with progress(f"Probing {provider.id}: models") as describe:

        def show(so_far: dict[str, Any]) -> None:
            after = [c for c in CHECKS if c not in so_far]
            describe(f"Probing {provider.id} with {so_far.get('model')}: {after[0] if after else ''}")

        async with OpenAICompatibleProvider.from_config(provider, api_key, proxy=proxy) as client:
            finished = await probe_until(client, model, timeout, result, show, why="--timeout")
    return result, finished


def check_mark(outcome: dict[str, Any] | None, finished: bool, timeout: float) -> str:
    """ok, the error ("no answer within N s" for the check the time ran out in), or "not tried" (and why)
    for a check that was never made."""
    if outcome is None:
        return "[yellow]not tried[/yellow]" if finished else f"[yellow]not tried: out of time ({timeout:g} s)[/yellow]"
    if outcome.get("ok"):
        return "[green]ok[/green]"
    return f"[red]{escape(str(outcome.get('error', 'failed')))}[/red]"


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
        await store.audit.record("cli", "provider.create", "provider", spec.get("id"), None, spec)

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
        await store.audit.record("cli", "provider.update", "provider", spec.get("id"), None, spec)

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
        deleted = await store.providers.delete(provider_id)
        if deleted:
            await store.audit.record("cli", "provider.delete", "provider", provider_id, None, None)
        return deleted

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
        return stored.validated(), stored.api_key
    except ValidationError as exc:
        from anygate.settings import describe_errors

        err_console_print(f"stored provider '{provider_id}' is invalid: {describe_errors(exc)}")
        raise typer.Exit(1) from None


providers_app.command("add")(provider_add)
providers_app.command("update")(provider_update)
providers_app.command("remove")(provider_remove)
