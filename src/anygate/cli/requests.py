"""``anygate requests``: the request log (the usage ledger's rows, newest first) read from the store, with
the filters of ``GET /v1/requests``; a table on a terminal, or ``--json`` in the API's shape.

The table fits 80 columns: the time, the key, the model, the status (and the failure's code), tokens in and
out (``~`` estimated; ``+c`` some of the input came from the prompt cache) and the cost (``*`` the
upstream's own figure, ``unknown`` when no price is known). ``--json`` has every field.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from anygate.cli.common import ConfigOption, fail, progress, settings_or_exit
from anygate.quota.display import compact, money

# The ledger's modules (SQLAlchemy) load when the command runs, so that ``anygate --help`` stays light.
MAX_LIMIT = 200


def requests(
    config: ConfigOption = None,
    key_id: Annotated[str | None, typer.Option("--key", help="Only this key id.")] = None,
    user_id: Annotated[str | None, typer.Option("--user", help="Only this user id.")] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider id.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this upstream model.")] = None,
    status: Annotated[int | None, typer.Option(min=100, max=599, help="Only this HTTP status.")] = None,
    since: Annotated[str | None, typer.Option(help="From (inclusive): UNIX seconds or ISO 8601.")] = None,
    until: Annotated[str | None, typer.Option(help="Until (exclusive): UNIX seconds or ISO 8601.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="Rows to show.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="Go on from where a page ended (its next_cursor).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the page as GET /v1/requests answers it.")] = False,
) -> None:
    """The newest requests from the usage ledger, one row each."""
    from sqlalchemy.exc import SQLAlchemyError

    from anygate.accounting.request_log import BadCursor, Page, RequestQuery, list_requests, moment_of
    from anygate.store.database import Database

    query = RequestQuery(
        key_id=key_id,
        user_id=user_id,
        provider_id=provider,
        model=model,
        status=status,
        since=parsed_moment(since, "--since", moment_of),
        until=parsed_moment(until, "--until", moment_of),
    )
    settings = settings_or_exit(config_file=config)

    async def read() -> Page:
        db = Database(settings.resolved_database_url)  # the store's engine, with its SQLite pragmas
        try:
            return await list_requests(db.engine, query, limit, cursor)
        finally:
            await db.close()

    try:
        with progress("Reading the request log"):
            page = asyncio.run(read())
    except BadCursor:
        fail("--cursor is not one this log gave out: pass next_cursor as it came", status=2)
    except SQLAlchemyError as exc:
        fail(f"cannot read the usage ledger at {settings.resolved_database_url.split('@')[-1]}: {type(exc).__name__}")
    if as_json:
        answer = {"object": "list", "data": page.records, "next_cursor": page.next_cursor}
        typer.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
        return
    console = Console()
    if not page.records:
        console.print("no requests match", highlight=False, markup=False)
        return
    console.print(requests_table(page.records))
    for line in legend(page.records, page.next_cursor):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def parsed_moment(value: str | None, option: str, parse: Any) -> float | None:
    if value is None:
        return None
    try:
        moment: float = parse(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is neither UNIX seconds nor an ISO 8601 time", param_hint=option) from None
    return moment


def requests_table(records: Sequence[dict[str, Any]]) -> Table:
    """One row per request; key ids whole (to be copied), a long model name or error folded in its cell."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("key", no_wrap=True)
    table.add_column("model", overflow="fold", ratio=3)
    table.add_column("status", overflow="fold", ratio=2)
    for name in ("in", "out", "cost"):
        table.add_column(name, justify="right", no_wrap=True)
    for record in records:
        table.add_row(
            record["created_at"][5:16].replace("T", " "),  # MM-DD HH:MM
            record["key_id"],
            record["model"] or "",
            str(record["status"]) + (f" {record['error']}" if record["error"] else ""),
            *token_cells(record),
            cost_cell(record),
        )
    return table


def token_cells(record: dict[str, Any]) -> tuple[str, str]:
    estimated = "~" if record["usage_source"] == "estimated" else ""
    cached = "+c" if record["cached_input_tokens"] else ""
    return estimated + compact(record["input_tokens"]) + cached, estimated + compact(record["output_tokens"])


def cost_cell(record: dict[str, Any]) -> str:
    cost = record["cost_usd"]
    if cost is None:
        return "unknown"
    return money(cost, "USD") + ("*" if record["cost_source"] == "upstream" else "")


def legend(records: Sequence[dict[str, Any]], next_cursor: str | None) -> list[str]:
    """What the marks in the table mean (only those it shows), and how to see the next page."""
    lines = []
    if any(r["usage_source"] == "estimated" for r in records):
        lines.append("~  tokens estimated (the upstream reported no usage)")
    if any(r["cached_input_tokens"] for r in records):
        lines.append("+c some input tokens read from the prompt cache (--json: cached_input_tokens)")
    if any(r["cost_source"] == "upstream" for r in records):
        lines.append("*  the cost the upstream reported")
    if next_cursor is not None:
        lines.append(f"more: the same command with --cursor {next_cursor}")
    return lines
