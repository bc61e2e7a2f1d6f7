"""``anygate db ...`` (migrations, backups) and ``anygate secrets rotate``: the store and its secret key."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from anygate.cli.common import ConfigOption, err_console_print, fail, load, progress, run_async, with_store
from anygate.settings import Settings
from anygate.store.store import Store, rotate_secrets

db_app = typer.Typer(help="The database: migrations and backups.", no_args_is_help=True)
secrets_app = typer.Typer(help="The key that encrypts stored secrets.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply every migration (also done at each start)."""

    async def upgrade(store: Store) -> str | None:
        return await store.db.current_head()

    with progress("Migrating the database"):
        head = with_store(load(config), upgrade)
    Console().print(f"database at revision {head}")


@db_app.command("current")
def db_current(config: ConfigOption = None) -> None:
    """The revision the database is at, and the newest this anygate ships (nothing is changed)."""
    from anygate.store.database import StoreUnavailable, async_url, revision_at, safe_url, shipped_revisions

    settings = load(config)
    try:
        recorded = run_async(revision_at(settings.resolved_database_url))
    except StoreUnavailable as exc:
        fail(str(exc))
    shipped = shipped_revisions()
    where = safe_url(async_url(settings.resolved_database_url))
    Console(soft_wrap=True).print(describe_revision(where, recorded, shipped), highlight=False, markup=False)


def describe_revision(where: str, recorded: str | None, shipped: list[str]) -> str:
    if recorded is None:
        return f"{where}: no anygate tables yet (made at the first start, or by `anygate db upgrade`)"
    if recorded not in shipped:
        return (
            f"{where}: at revision {recorded}, which this anygate does not ship (newest here: {shipped[-1]}): "
            f"a newer anygate migrated it; its `anygate db downgrade {shipped[-1]}` goes back"
        )
    pending = shipped[shipped.index(recorded) + 1 :]
    if not pending:
        return f"{where}: at revision {recorded}, the newest this anygate ships"
    return f"{where}: at revision {recorded}; {len(pending)} to apply ({', '.join(pending)}): `anygate db upgrade`"


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="The revision to go back to (its id, or a unique start: 0003).")],
    yes: Annotated[bool, typer.Option("--yes", help="Go on: the newer tables and columns are dropped.")] = False,
    config: ConfigOption = None,
) -> None:
    """Undo the migrations after REVISION, to run an older anygate on this database. Stop every gateway
    first and take a backup: what the undone migrations added is dropped with its data."""
    from anygate.store.database import Database, StoreUnavailable, safe_url, shipped_revisions

    shipped = shipped_revisions()
    matches = [r for r in shipped if r.startswith(revision)] if revision != "base" else ["base"]
    if len(matches) != 1:
        fail(f"no single revision starts with '{revision}' (this anygate ships: {', '.join(shipped)})")
    if not yes:
        fail(
            f"downgrading to {matches[0]} drops what later migrations added, with its data; back up first "
            "(anygate db backup PATH, or pg_dump), stop every gateway, then add --yes"
        )
    database = Database(load(config).resolved_database_url)

    async def downgrade() -> str | None:
        try:
            await database.downgrade(matches[0])
            return await database.recorded()
        finally:
            await database.close()

    try:
        with progress(f"Downgrading to {matches[0]}"):
            now = run_async(downgrade())
    except StoreUnavailable as exc:
        fail(str(exc))
    Console(soft_wrap=True).print(
        f"{safe_url(database.url)}: at revision {now or 'base (no anygate tables)'}", highlight=False
    )
    err_console_print("start only an anygate that ships this revision: a newer one migrates the database again")


@db_app.command("backup")
def db_backup(
    path: Annotated[Path, typer.Argument(help="The new file to write (it must not exist).")],
    config: ConfigOption = None,
) -> None:
    """Copy the SQLite database to PATH while gateways keep running (SQLite's online backup). PostgreSQL:
    use pg_dump. The stored provider keys need the secret key to be read: back that up too, apart."""
    from anygate.store.database import Database, StoreUnavailable

    settings = load(config)
    database = Database(settings.resolved_database_url)
    try:
        with progress(f"Copying the database to {path}"):
            database.backup(path)
    except StoreUnavailable as exc:
        fail(f"{exc} (see docs/deployment.md, Backups)")
    finally:
        run_async(database.close())
    Console(soft_wrap=True).print(f"backed up to {path}", highlight=False, markup=False)
    err_console_print(secret_key_reminder(settings))


def secret_key_reminder(settings: Settings) -> str:
    from anygate.store.crypto import KEY_FILE

    where = "ANYGATE_SECRET_KEY" if settings.secret_key else str(settings.data_dir / KEY_FILE)
    return f"the stored provider keys in it can only be read with the secret key ({where}): keep a copy of it, apart"


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
