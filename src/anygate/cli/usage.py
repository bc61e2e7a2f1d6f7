"""``anygate usage``: the usage ledger as a table (or CSV), grouped by key, model, day, provider or user.

The table is written to be read on an 80-column terminal: keys by alias and users by name (the ids are in
the CSV), counts and tokens in short form (``1.2K``), and what a number cannot say in a legend below it
(``~`` partly estimated tokens, ``+?`` requests whose price is unknown, refusals by status); ``tok in``
and ``tok out`` are the input and output tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, cast

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from anygate.cli.common import ConfigOption, fail, progress, settings_or_exit
from anygate.quota.display import compact, money

# The ledger's modules (SQLAlchemy) load when the command runs, so that ``anygate --help`` stays light.
GROUPS = ("day", "key", "model", "provider", "user")
NUMBERS = ("served", "refused", "tok in", "tok out", "cost")


def parse_groups(value: str) -> list[str]:
    groups = [g.strip() for g in value.split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise typer.BadParameter(f"unknown group '{unknown[0]}' (known: {', '.join(GROUPS)})")
    return groups


def usage(
    config: ConfigOption = None,
    by: Annotated[str, typer.Option(help="Group by: day, key, model, provider, user (comma-separated).")] = "key,model",
    days: Annotated[int, typer.Option(help="Only the last N UTC days (0: all).")] = 30,
    key: Annotated[str | None, typer.Option(help="Only this key id.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this upstream model.")] = None,
    as_csv_output: Annotated[bool, typer.Option("--csv", help="Print CSV (ids and every column) instead.")] = False,
) -> None:
    """Requests, tokens and cost from the usage ledger, one row per group."""
    from sqlalchemy.exc import SQLAlchemyError

    from anygate.accounting.reports import GroupBy, UsageFilter, as_csv, report
    from anygate.store.database import Database

    groups = cast(list[GroupBy], parse_groups(by))
    settings = settings_or_exit(config_file=config)
    start = first_day(days)

    async def read() -> list[dict[str, Any]]:
        db = Database(settings.resolved_database_url)  # the store's engine, with its SQLite pragmas
        try:
            return await report(db.engine, UsageFilter(key_id=key, model=model, start=start), groups)
        finally:
            await db.close()

    try:
        with progress("Reading the usage ledger"):
            rows = asyncio.run(read())
    except SQLAlchemyError as exc:
        fail(f"cannot read the usage ledger at {settings.resolved_database_url.split('@')[-1]}: {type(exc).__name__}")
    if as_csv_output:
        typer.echo(as_csv(rows, groups), nl=False)
        return
    Console().print(usage_table(rows, groups, period_caption(start)))
    for line in legend(rows):
        Console().print(line, highlight=False, markup=False)


def first_day(days: int) -> float | None:
    if days <= 0:
        return None
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=days - 1)).timestamp()


def period_caption(start: float | None) -> str:
    if start is None:
        return "all time"
    return f"since {datetime.fromtimestamp(start, UTC):%Y-%m-%d} 00:00 UTC"


def usage_table(rows: Sequence[dict[str, Any]], groups: Sequence[str], caption: str) -> Table:
    """The report as a table that fits 80 columns: names fold within their cell, never cut short."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_footer=len(rows) > 1, caption=caption)
    for index, group in enumerate(groups):
        table.add_column(group, overflow="fold", footer="total" if index == 0 else "")
    totals = total_of(rows)
    for name, footer in zip(NUMBERS, number_cells(totals), strict=True):
        table.add_column(name, justify="right", no_wrap=True, footer=footer)
    for row in rows:
        table.add_row(*(group_cell(row, group) for group in groups), *number_cells(row))
    return table


def group_cell(row: dict[str, Any], group: str) -> str:
    """A key by its alias and a user by its name (the id when it has none); a day, model or provider as is."""
    name = row.get({"key": "key_alias", "user": "user_name"}.get(group, ""))
    return str(name or row.get(group) or "")


def number_cells(row: dict[str, Any]) -> list[str]:
    estimated = "~" if row["estimated_requests"] else ""
    return [
        compact(row["served"]),
        compact(row["refused"]),
        estimated + compact(row["input_tokens"]),
        estimated + compact(row["output_tokens"]),
        cost_cell(row["cost_usd"], row["unpriced_requests"]),
    ]


def cost_cell(cost: float | None, unpriced: int) -> str:
    """``$0.42``; ``unknown`` when no request's price is known; ``$0.42+?`` when some are not."""
    if cost is None:
        return "unknown" if unpriced else money(0.0, "USD")
    return money(cost, "USD") + ("+?" if unpriced else "")


def total_of(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    summed = ("served", "refused", "input_tokens", "output_tokens", "estimated_requests", "unpriced_requests")
    total: dict[str, Any] = {name: sum(row[name] for row in rows) for name in summed}
    costs = [row["cost_usd"] for row in rows if row["cost_usd"] is not None]
    total["cost_usd"] = sum(costs) if costs else None
    return total


def legend(rows: Sequence[dict[str, Any]]) -> list[str]:
    """What the marks in the table mean, and the refusals by status; only what the table shows."""
    lines = []
    if any(row["estimated_requests"] for row in rows):
        lines.append("~  some tokens estimated (the upstream reported no usage)")
    if any(row["unpriced_requests"] for row in rows):
        lines.append("+? and requests of unknown price (not in the cost; --csv: unpriced_requests)")
    statuses: dict[str, int] = {}
    for row in rows:
        for status, count in (row.get("refused_statuses") or {}).items():
            statuses[status] = statuses.get(status, 0) + count
    if statuses:
        shown = ", ".join(f"{status} x{count}" for status, count in sorted(statuses.items()))
        lines.append(f"refused (an error answered, nothing charged) by status: {shown}")
    return lines
