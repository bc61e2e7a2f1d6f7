"""``anygate db|secrets|keys|users`` and ``anygate providers add|update|remove``: the store from the terminal.

These commands write to the database directly; running gateways pick the change up within seconds.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from anygate.errors import GatewayError
from anygate.settings import ProviderConfig, Settings
from anygate.store.crypto import SecretKeyError
from anygate.store.database import StoreUnavailable
from anygate.store.providers import KEEP, DuplicateProvider, StoredProvider
from anygate.store.store import Store, open_store, rotate_secrets

T = TypeVar("T")

db_app = typer.Typer(help="The database: migrations.", no_args_is_help=True)
secrets_app = typer.Typer(help="The key that encrypts stored secrets.", no_args_is_help=True)
keys_app = typer.Typer(help="Keys issued by anygate.", no_args_is_help=True)
users_app = typer.Typer(help="Users that own keys.", no_args_is_help=True)


def with_store(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store, run ``work``, close it; a store or key problem exits with its message."""
    from anygate.cli import err_console, run_async

    async def run() -> T:
        store = await open_store(settings)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        result: T = run_async(run())
    except (StoreUnavailable, SecretKeyError, GatewayError, DuplicateProvider, LookupError) as exc:
        message = exc.message if isinstance(exc, GatewayError) else str(exc)
        if isinstance(exc, DuplicateProvider):
            message = f"provider '{exc}' already exists"
        err_console().print(f"anygate: {message}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    return result


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


def stored_providers(settings: Settings) -> tuple[list[StoredProvider], str | None]:
    """The store's providers for ``anygate providers``, or none and why when the store cannot be opened."""
    from anygate.cli import run_async

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


def load(config: Any = None) -> Settings:
    from anygate.cli import settings_or_exit

    return settings_or_exit(config_file=config)


ConfigOption = Annotated[Any, typer.Option("--config", "-c", help="YAML config file (or ANYGATE_CONFIG).")]

# ---------------------------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply every migration (also done at each start)."""

    async def upgrade(store: Store) -> str | None:
        return await store.db.current_head()

    head = with_store(load(config), upgrade)
    Console().print(f"database at revision {head}")


# ---------------------------------------------------------------------------------------------- secrets


@secrets_app.command("rotate")
def secrets_rotate(
    config: ConfigOption = None,
    new_key: Annotated[
        bool, typer.Option("--new-key-stdin", help="Read the new key from stdin (needed with ANYGATE_SECRET_KEY).")
    ] = False,
) -> None:
    """Re-encrypt every stored secret under a new key, without stopping the gateway."""
    settings = load(config)
    given = sys.stdin.readline().strip() if new_key else None

    async def rotate(store: Store) -> tuple[str, int]:
        return await rotate_secrets(store, settings, given)

    key_id, count = with_store(settings, rotate)
    Console().print(f"re-encrypted {count} secret(s) under key id {key_id}")


# ---------------------------------------------------------------------------------------------- providers


def read_api_key(api_key: str | None, from_stdin: bool) -> Any:
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
    from anygate.provider_input import checked

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
    from anygate.provider_input import checked, require_secrets_on_move

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


def err_console_print(message: str) -> None:
    Console(stderr=True).print(f"anygate: {message}", highlight=False, markup=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------- keys


@keys_app.command("create")
def keys_create(
    alias: Annotated[str, typer.Option("--alias", help="A name for the key.")],
    user: Annotated[str | None, typer.Option("--user", help="The user that owns it.")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Allowed model glob (repeatable).")] = None,
    provider: Annotated[list[str] | None, typer.Option("--provider", help="Allowed provider glob.")] = None,
    expires: Annotated[datetime | None, typer.Option("--expires", help="Expiry (UTC).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="An admin key.")] = False,
    budget_tokens: Annotated[int | None, typer.Option(help="Token budget per period.")] = None,
    budget_usd: Annotated[float | None, typer.Option(help="USD budget per period.")] = None,
    budget_period: Annotated[str, typer.Option(help="daily | weekly | monthly | none")] = "none",
    budget_mode: Annotated[str, typer.Option(help="hard (reject, clamp max_tokens) | soft (report only)")] = "hard",
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Requests in flight at once.")] = None,
    config: ConfigOption = None,
) -> None:
    """Issue a key and print it (shown this once)."""
    from anygate.api.schemas import KeyCreate
    from anygate.api.validation import validate

    budget = None
    if budget_tokens is not None or budget_usd is not None:
        budget = {"tokens": budget_tokens, "usd": budget_usd, "period": budget_period, "mode": budget_mode}
    limits = None
    if rpm is not None or tpm is not None or concurrency is not None:
        limits = {"rpm": rpm, "tpm": tpm, "concurrency": concurrency}
    spec = {
        "alias": alias,
        "user_id": user,
        "models": model or None,
        "providers": provider or None,
        "expires_at": expires,
        "role": "admin" if admin else "user",
        "budget": budget,
        "limits": limits,
    }

    async def create(store: Store) -> tuple[str, str]:
        fields = validate(KeyCreate, spec).model_dump()  # a bad field is reported like the API's 400
        if user is not None and await store.keys.get_user(user) is None:
            raise LookupError(f"no user '{user}'")
        record, secret = await store.keys.create_key(fields, created_by="cli")
        return record.id, secret

    key_id, secret = with_store(load(config), create)
    err_console_print(f"created key {key_id} (the key below is shown this once)")
    Console().print(secret, highlight=False, soft_wrap=True)


@keys_app.command("list")
def keys_list(config: ConfigOption = None) -> None:
    """Every key (never the secret); a key made by another key is revoked or expired with it."""
    from anygate.store.families import lineages
    from anygate.store.tables import utcnow

    async def listing(store: Store) -> list[Any]:
        return await store.keys.list_keys()

    records = with_store(load(config), listing)
    chains = lineages({record.id: record for record in records})
    table = Table("id", "alias", "prefix", "user", "role", "created by", "status", "expires")
    for record in records:
        expires = record.expires_at.isoformat() if record.expires_at else ""
        table.add_row(
            record.id,
            record.alias,
            record.key_prefix,
            record.user_id or "",
            record.role,
            record.created_by or "",
            chains[record.id].status(utcnow()),
            expires,
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: ConfigOption = None) -> None:
    """Revoke a key and every key made from it: they stop working everywhere within seconds."""

    async def revoke(store: Store) -> Any:
        return await store.keys.revoke_key(key_id)

    if with_store(load(config), revoke) is None:
        err_console_print(f"no key '{key_id}'")
        raise typer.Exit(1)
    Console().print(f"revoked key {key_id}")


# ---------------------------------------------------------------------------------------------- users


@users_app.command("create")
def users_create(name: str, config: ConfigOption = None) -> None:
    """Add a user (then give it keys with `anygate keys create --user <id>`)."""

    async def create(store: Store) -> str:
        return (await store.keys.create_user({"name": name})).id

    Console().print(with_store(load(config), create))


@users_app.command("list")
def users_list(config: ConfigOption = None) -> None:
    async def listing(store: Store) -> list[Any]:
        return await store.keys.list_users()

    table = Table("id", "name", "created")
    for user in with_store(load(config), listing):
        table.add_row(user.id, user.name, user.created_at.isoformat())
    Console().print(table)


@users_app.command("remove")
def users_remove(user_id: str, config: ConfigOption = None) -> None:
    """Delete a user and every key it owns."""

    async def remove(store: Store) -> bool:
        return await store.keys.delete_user(user_id)

    if not with_store(load(config), remove):
        err_console_print(f"no user '{user_id}'")
        raise typer.Exit(1)
    Console().print(f"removed user {user_id}")


def register_store_commands(app: typer.Typer, providers_app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.add_typer(secrets_app, name="secrets")
    app.add_typer(keys_app, name="keys")
    app.add_typer(users_app, name="users")
    providers_app.command("add")(provider_add)
    providers_app.command("update")(provider_update)
    providers_app.command("remove")(provider_remove)
