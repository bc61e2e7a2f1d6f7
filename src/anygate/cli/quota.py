"""``anygate quota`` (what is left at each source) and ``anygate quota status`` (where each key comes from)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from anygate.cli.common import ConfigOption, progress, settings_or_exit

if TYPE_CHECKING:
    from anygate.quota.client import QuotaResult

quota_app = typer.Typer(help="What is left of your quotas, at anygate and other gateways.", invoke_without_command=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print the normalized results as JSON.")]


def echo_json(value: object) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@quota_app.callback()
def quota(
    ctx: typer.Context,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds each source has to answer, body included.")
    ] = 5.0,
) -> None:
    """Poll every quota source that has a key and print one row per source."""
    if ctx.invoked_subcommand is not None:
        return
    from anygate.quota.client import poll_sources  # aiohttp loads only when a command needs it

    settings = settings_or_exit(config_file=config)
    with progress("Asking each quota source what is left"):
        results = asyncio.run(poll_sources(settings, timeout))
    if as_json:
        echo_json([result.as_dict() for result in results])
        return
    if not results:
        Console(stderr=True).print("No quota sources: add quota_sources to ~/.config/anygate/config.yaml")
        return
    table = Table("source", "tokens", "cost", "resets")
    for result in results:
        table.add_row(result.source.label, *result_cells(result))
    Console().print(table)


def result_cells(result: QuotaResult) -> tuple[str, str, str]:
    from anygate.quota.display import cost_text, reset_text, tokens_text

    if result.skipped:
        return ("skipped: no API key", "", "")
    if result.error is not None or result.quota is None:
        return (f"error: {result.error}", "", "")
    tokens, cost = result.quota.tokens, result.quota.cost
    resets = (tokens.resets_at if tokens else None) or (cost.resets_at if cost else None)
    return (
        tokens_text(tokens) if tokens else "-",
        cost_text(cost) if cost else "-",
        reset_text(resets),
    )


@quota_app.command("status")
def status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Per source: the quota path, whether a key is configured, and where it was looked for."""
    from anygate.quota.client import key_status

    rows = key_status(settings_or_exit(config_file=config))
    if as_json:
        echo_json(rows)
        return
    console = Console(soft_wrap=True)  # a long path stays on its line, whatever the terminal's width
    for row in rows:
        console.print(row["provider_id"], style="bold", highlight=False, markup=False)
        for name in ("provider_id", "quota_path", "api_key_configured", "api_key_source"):
            value = str(row[name]).lower() if isinstance(row[name], bool) else row[name]
            console.print(f"  {name}: {value}", highlight=False, markup=False)
        paths = ", ".join(row["api_key_checked_paths"])
        console.print(f"  api_key_checked_paths: {paths}", highlight=False, markup=False)
    if not rows:
        console.print("No quota sources configured.")
