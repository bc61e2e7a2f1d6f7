"""``anygate teams ...``: teams in the store, from the terminal.

Create and update build the body ``POST``/``PATCH /v1/teams`` take and check it with the same request
models (``management.schemas``): what the API refuses is refused here with the same message. Each change is
written to the audit log as the API writes it (actor ``cli``, the team as ``GET /v1/teams`` shows it).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from anygate.cli.common import ConfigOption, err_console_print, fail, load, with_store
from anygate.cli.roster import budget_option
from anygate.cli.spend_options import Concurrency, NoBudget, NoLimits, Rpm, Tpm, budgets_text
from anygate.store.records import TeamRecord
from anygate.store.store import Store

teams_app = typer.Typer(
    help="Teams: budgets, limits and allowlists that bind every member's keys.", no_args_is_help=True
)

TeamBudgets = Annotated[
    list[str] | None,
    typer.Option(
        "--budget",
        help="A team budget (repeatable): tokens=500000,usd=20,requests=1000,window=daily|weekly|monthly|none|5h,"
        "mode=hard|soft",
    ),
]
TeamModels = Annotated[
    list[str] | None, typer.Option("--model", help="Allowed model pattern, as provider/model (repeatable).")
]
TeamProviders = Annotated[list[str] | None, typer.Option("--provider", help="Allowed provider pattern (repeatable).")]


def limits_given(rpm: int | None, tpm: int | None, concurrency: int | None) -> dict[str, int]:
    given = {"rpm": rpm, "tpm": tpm, "concurrency": concurrency}
    return {name: value for name, value in given.items() if value is not None}


def audited(team: TeamRecord | None) -> dict[str, Any] | None:
    from anygate.api.routes_teams import team_view

    return None if team is None else team_view(team)


@teams_app.command("list")
def teams_list(config: ConfigOption = None) -> None:
    """Every team: its id, name, member count and budgets."""

    async def listing(store: Store) -> list[tuple[TeamRecord, int]]:
        return [(team, len(await store.teams.member_ids(team.id))) for team in await store.teams.list_teams()]

    rows = with_store(load(config), listing)
    if not rows:
        err_console_print("no teams yet: add one with anygate teams create --name NAME")
        return
    # Fits 80 columns: ids whole (to copy), a long name or budget list folds within its own column.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold", max_width=22)
    table.add_column("members", justify="right", no_wrap=True)
    table.add_column("budgets", overflow="fold")
    for team, members in rows:
        table.add_row(team.id, team.name, str(members), budgets_text(team.budgets))
    Console().print(table, highlight=False)


@teams_app.command("create")
def teams_create(
    name: Annotated[str, typer.Option("--name", help="The team's name (COMP318, Research).")],
    team_id: Annotated[str | None, typer.Option("--id", help="A slug such as comp318 (made up when left out).")] = None,
    budget: TeamBudgets = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    concurrency: Concurrency = None,
    model: TeamModels = None,
    provider: TeamProviders = None,
    config: ConfigOption = None,
) -> None:
    """Add a team and print its id (then enrol users with `anygate users import ROSTER --team ID`). Its
    budgets and limits count every key of every member together."""
    from anygate.errors import Conflict
    from anygate.management.schemas import TeamCreate, with_budget_list
    from anygate.management.validation import validate
    from anygate.store.teams import TeamExists

    spec = {
        "id": team_id,
        "name": name,
        "budgets": [budget_option(b) for b in budget] if budget else None,
        "limits": limits_given(rpm, tpm, concurrency) or None,
        "models": model or None,
        "providers": provider or None,
    }
    spec = {field: value for field, value in spec.items() if value is not None}

    async def create(store: Store) -> TeamRecord:
        body = validate(TeamCreate, spec)  # a bad field is reported like the API's 400
        fields = with_budget_list(body, body.model_dump(), column="budgets")
        try:
            team = await store.teams.create_team(fields)
        except TeamExists:
            raise Conflict(f"Team '{body.id}' exists already", param="id", code="team_exists") from None
        await store.audit.record("cli", "team.create", "team", team.id, None, audited(team))
        return team

    team = with_store(load(config), create)
    err_console_print(f"created team {team.id} ({team.name})")
    Console().print(team.id, highlight=False, markup=False)


@teams_app.command("update")
def teams_update(
    team_id: str,
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    budget: TeamBudgets = None,
    no_budget: NoBudget = False,
    rpm: Rpm = None,
    tpm: Tpm = None,
    concurrency: Concurrency = None,
    no_limits: NoLimits = False,
    model: TeamModels = None,
    all_models: Annotated[bool, typer.Option("--all-models", help="Allow every model.")] = False,
    provider: TeamProviders = None,
    all_providers: Annotated[bool, typer.Option("--all-providers", help="Allow every provider.")] = False,
    config: ConfigOption = None,
) -> None:
    """Change a team; what is not given stays. --budget given replaces the team's budgets; a limit option
    changes that one limit and keeps the others; a list given (--model, --provider) replaces the list."""
    from anygate.management.schemas import TeamUpdate, with_budget_list
    from anygate.management.validation import validate

    limits = limits_given(rpm, tpm, concurrency)
    if (no_budget and budget) or (no_limits and limits):
        fail("--no-budget and --no-limits cannot be given with a budget or limit to set")
    if (all_models and model) or (all_providers and provider):
        fail("--all-models and --all-providers cannot be given with a list to set")
    changes: dict[str, Any] = {"name": name} if name is not None else {}
    if budget:
        changes["budgets"] = [budget_option(b) for b in budget]
    changes |= {"models": model} if model else {}
    changes |= {"providers": provider} if provider else {}
    cleared = {"budgets": no_budget, "limits": no_limits, "models": all_models, "providers": all_providers}
    changes |= {field: None for field, clear in cleared.items() if clear}
    if not changes and not limits:
        fail(f"nothing to change: give what to change (anygate teams update {team_id} --help)")

    async def update(store: Store) -> TeamRecord:
        before = await store.teams.get_team(team_id)
        if before is None:
            raise LookupError(f"no team '{team_id}'")
        patch = changes | ({"limits": {**(before.limits or {}), **limits}} if limits else {})
        body = validate(TeamUpdate, patch)
        fields = with_budget_list(body, body.model_dump(exclude_unset=True), column="budgets")
        team = await store.teams.update_team(team_id, fields)
        if team is None:
            raise LookupError(f"no team '{team_id}'")
        await store.audit.record("cli", "team.update", "team", team_id, audited(before), audited(team))
        return team

    team = with_store(load(config), update)
    Console().print(f"updated team {team.id} ({team.name})", highlight=False, markup=False)


@teams_app.command("delete")
def teams_delete(team_id: str, config: ConfigOption = None) -> None:
    """Delete a team. Its users stay, outside any team, and so do their keys (without the team's budgets)."""

    async def delete(store: Store) -> int:
        before = await store.teams.get_team(team_id)
        if before is None:
            raise LookupError(f"no team '{team_id}'")
        members = len(await store.teams.member_ids(team_id))
        if not await store.teams.delete_team(team_id):
            raise LookupError(f"no team '{team_id}'")
        await store.audit.record("cli", "team.delete", "team", team_id, audited(before), None)
        return members

    members = with_store(load(config), delete)
    Console().print(
        f"deleted team {team_id}; its {members} user(s) stay, outside any team", highlight=False, markup=False
    )
