"""``anygate keys ...`` and ``anygate users ...``: keys and users in the store, from the terminal."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from anygate.cli.common import ConfigOption, err_console_print, load, with_store
from anygate.store.store import Store

keys_app = typer.Typer(help="Keys issued by anygate.", no_args_is_help=True)
users_app = typer.Typer(help="Users that own keys.", no_args_is_help=True)


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
    from anygate.management.schemas import KeyCreate
    from anygate.management.validation import validate

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
