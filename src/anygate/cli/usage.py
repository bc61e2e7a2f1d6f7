"""``anygate usage``: the usage ledger as a table (or CSV), grouped by key, model, day, provider or user."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table

from anygate.cli.common import ConfigOption, settings_or_exit
from anygate.quota.display import money
from anygate.settings import Settings

# The ledger's modules (SQLAlchemy) load when the command runs, so that ``anygate --help`` stays light.
GROUPS = ("day", "key", "model", "provider", "user")


def parse_groups(value: str) -> list[str]:
    groups = [g.strip() for g in value.split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise typer.BadParameter(f"unknown group '{unknown[0]}' (known: {', '.join(GROUPS)})")
    return groups


def usage(
    config: ConfigOption = None,
    by: Annotated[
        str, typer.Option(help="Group by: day, key, model, provider, user (comma-separated).")
    ] = "day,key,model",
    days: Annotated[int, typer.Option(help="Only the last N UTC days (0: all).")] = 30,
    key: Annotated[str | None, typer.Option(help="Only this key id.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this upstream model.")] = None,
    as_csv_output: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
) -> None:
    """Tokens and cost from the usage ledger, one row per group."""
    from anygate.accounting.reports import REPORT_FIELDS, GroupBy, UsageFilter, as_csv, report
    from anygate.store.database import Database

    groups = cast(list[GroupBy], parse_groups(by))
    settings = settings_or_exit(config_file=config)
    start = None
    if days > 0:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = (today - timedelta(days=days - 1)).timestamp()

    async def read() -> list[dict[str, Any]]:
        db = Database(settings.resolved_database_url)  # the store's engine, with its SQLite pragmas
        try:
            return await report(db.engine, UsageFilter(key_id=key, model=model, start=start), groups)
        finally:
            await db.close()

    rows = asyncio.run(read())
    if as_csv_output:
        typer.echo(as_csv(rows, groups), nl=False)
        return
    names = asyncio.run(display_names(settings)) if {"key", "user"} & set(groups) else {}
    table = Table(*groups, *REPORT_FIELDS)
    for column in table.columns[: len(groups)]:
        column.overflow = "fold"  # an alias or model name is shown whole, never cut to "key_3f…"
    for row in rows:
        cost = row["cost_usd"]
        cells = [names.get((g, row.get(g)), str(row.get(g) or "")) for g in groups]
        cells += [str(row[f]) for f in ("requests", "input_tokens", "output_tokens", "estimated_requests")]
        cells += ["unknown" if cost is None else money(cost, "USD"), str(row["unpriced_requests"])]
        cells.append(money(row["byok_cost_usd"] or 0.0, "USD"))
        table.add_row(*cells)
    Console().print(table)


async def display_names(settings: Settings) -> dict[tuple[str, Any], str]:
    """Keys by alias and users by name, from the store (ids stay where the store has none)."""
    from sqlalchemy.exc import SQLAlchemyError

    from anygate.store.database import Database
    from anygate.store.keys import KeyStore

    db = Database(settings.resolved_database_url)
    try:
        keys = KeyStore(db)
        names: dict[tuple[str, Any], str] = {("key", k.id): k.alias for k in await keys.list_keys() if k.alias}
        names.update({("user", u.id): u.name for u in await keys.list_users() if u.name})
    except SQLAlchemyError:
        return {}  # a ledger without the store's tables: ids it is
    finally:
        await db.close()
    return names
