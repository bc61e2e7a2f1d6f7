"""``anygate usage``: the usage ledger as a table (or CSV), grouped by key, model, day, provider or user."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table

from anygate.errors import ConfigError
from anygate.settings import load_settings

# The ledger's modules (SQLAlchemy) load when the command runs, so that ``anygate --help`` stays light.
GROUPS = ("day", "key", "model", "provider", "user")

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (or ANYGATE_CONFIG).")]


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
    from anygate.accounting.setup import make_engine

    groups = cast(list[GroupBy], parse_groups(by))
    try:
        settings = load_settings({"config_file": config})
    except ConfigError as exc:
        Console(stderr=True).print(f"anygate: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    start = None
    if days > 0:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = (today - timedelta(days=days - 1)).timestamp()

    async def read() -> list[dict[str, Any]]:
        engine = make_engine(settings)
        try:
            return await report(engine, UsageFilter(key_id=key, model=model, start=start), groups)
        finally:
            await engine.dispose()

    rows = asyncio.run(read())
    if as_csv_output:
        typer.echo(as_csv(rows, groups), nl=False)
        return
    table = Table(*groups, *REPORT_FIELDS)
    for row in rows:
        cost = row["cost_usd"]
        cells = [str(row.get(g) or "") for g in groups]
        cells += [str(row[f]) for f in ("requests", "input_tokens", "output_tokens", "estimated_requests")]
        cells += ["unknown" if cost is None else f"${cost:,.4f}", str(row["unpriced_requests"])]
        cells.append(f"${row['byok_cost_usd']:,.4f}")
        table.add_row(*cells)
    Console().print(table)
