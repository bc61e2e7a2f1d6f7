"""``anygate db upgrade`` and ``anygate secrets rotate``: the store's migrations and its secret key."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from anygate.cli.common import ConfigOption, load, with_store
from anygate.store.store import Store, rotate_secrets

db_app = typer.Typer(help="The database: migrations.", no_args_is_help=True)
secrets_app = typer.Typer(help="The key that encrypts stored secrets.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply every migration (also done at each start)."""

    async def upgrade(store: Store) -> str | None:
        return await store.db.current_head()

    head = with_store(load(config), upgrade)
    Console().print(f"database at revision {head}")


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
