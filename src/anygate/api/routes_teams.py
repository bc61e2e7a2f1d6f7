"""Teams (admin; a team admin reads its own): cohorts whose budgets, limits and allowlists bind every
member's keys, and the roster import that enrols a class in one transaction.

POST   /v1/teams                  {id?, name, budgets | budget, limits, models, providers, alerts}
GET    /v1/teams                  every team (a team admin: its own)
GET    /v1/teams/{id}             the team, its members, its key count, its spend and each budget's window
PATCH  /v1/teams/{id}             the fields given
DELETE /v1/teams/{id}             the team; its users stay, outside any team
POST   /v1/teams/{id}/roster      {users: [{name}], budgets, limits, key: {...}}: a user and a key per new
                                  name, each key's secret in this answer only; names already in the team
                                  are kept (a re-run makes nothing twice)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from anygate.accounting.budgets import Scope, budget_specs, limit_spec
from anygate.api.deps import AdminDep, CallerDep, StateDep
from anygate.api.routes_keys import iso
from anygate.api.routes_users import user_view
from anygate.api.state import AppState
from anygate.auth import Budget, Principal
from anygate.errors import Conflict, NotFound
from anygate.management.schemas import RosterImport, TeamCreate, TeamUpdate, with_budget_list
from anygate.management.team_rights import admin_or_team_admin, outside_team
from anygate.quota import standing
from anygate.store.budget_lists import as_stored, stored_budgets
from anygate.store.records import TeamRecord
from anygate.store.store import Store
from anygate.store.teams import RosterEntry, TeamExists

router = APIRouter(tags=["teams"])


def team_view(team: TeamRecord) -> dict[str, Any]:
    return {
        "id": team.id,
        "name": team.name,
        "budgets": stored_budgets(team.budgets),
        "limits": team.limits,
        "models": team.models,
        "providers": team.providers,
        "alerts": team.alerts,
        "created_at": iso(team.created_at),
    }


def unknown_team(team_id: str) -> NotFound:
    return NotFound(f"Unknown team '{team_id}'", code="team_not_found")


async def readable_team(state: AppState, caller: Principal, team_id: str) -> TeamRecord:
    admin_or_team_admin(caller)
    if not caller.is_admin and caller.team_id != team_id:
        raise outside_team(f"team '{team_id}' is another team")
    team = await state.store.teams.get_team(team_id)
    if team is None:
        raise unknown_team(team_id)
    return team


async def team_detail(state: AppState, team: TeamRecord) -> dict[str, Any]:
    store, accounting = state.store, state.accounting
    members = await store.keys.list_users(team.id)
    keys = await store.keys.list_keys(team_id=team.id)
    scope = Scope("team", team.id, budget_specs(team.budgets), limit_spec(team.limits))
    uses = await standing.holder_budgets(accounting, accounting.ledger, scope)
    now = datetime.now(UTC)
    return {
        **team_view(team),
        "members": [user_view(user) for user in members],
        "key_count": len([k for k in keys if k.revoked_at is None]),
        "spend": await standing.all_time_use(accounting.ledger, "team", team.id),
        "budget_use": [
            {
                "budget": as_stored(Budget(b.tokens, b.usd, b.period, b.mode, b.requests)),
                "used": use.used,
                "resets_at": use.resets_at(now),
            }
            for use in uses
            for b in (use.budget,)
        ],
    }


@router.post("/v1/teams", status_code=201)
async def create_team(body: TeamCreate, state: StateDep, caller: AdminDep) -> dict[str, Any]:
    fields = with_budget_list(body, body.model_dump(), column="budgets")
    try:
        team = await state.store.teams.create_team(fields)
    except TeamExists:
        raise Conflict(f"Team '{body.id}' exists already", param="id", code="team_exists") from None
    await state.store_changed()
    view = team_view(team)
    await state.audit.record(caller, "team.create", "team", team.id, None, view)
    return view


@router.get("/v1/teams")
async def list_teams(state: StateDep, caller: CallerDep) -> dict[str, Any]:
    admin_or_team_admin(caller)
    teams = await state.store.teams.list_teams()
    shown = [t for t in teams if caller.is_admin or t.id == caller.team_id]
    return {"object": "list", "data": [team_view(t) for t in shown]}


@router.get("/v1/teams/{team_id}")
async def get_team(team_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    return await team_detail(state, await readable_team(state, caller, team_id))


@router.patch("/v1/teams/{team_id}")
async def update_team(team_id: str, body: TeamUpdate, state: StateDep, caller: AdminDep) -> dict[str, Any]:
    before = await state.store.teams.get_team(team_id)
    if before is None:
        raise unknown_team(team_id)
    fields = with_budget_list(body, body.model_dump(exclude_unset=True), column="budgets")
    team = await state.store.teams.update_team(team_id, fields)
    if team is None:
        raise unknown_team(team_id)
    await state.store_changed()
    view = team_view(team)
    await state.audit.record(caller, "team.update", "team", team_id, team_view(before), view)
    return view


@router.delete("/v1/teams/{team_id}")
async def delete_team(team_id: str, state: StateDep, caller: AdminDep) -> dict[str, Any]:
    """Delete a team; its users stay (outside any team), and so do their keys."""
    before = await state.store.teams.get_team(team_id)
    if before is None or not await state.store.teams.delete_team(team_id):
        raise unknown_team(team_id)
    await state.store_changed()
    await state.audit.record(caller, "team.delete", "team", team_id, team_view(before), None)
    return {"id": team_id, "deleted": True}


@router.post("/v1/teams/{team_id}/roster")
async def import_roster(team_id: str, body: RosterImport, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """Enrol a roster: one transaction; every new key's secret is in this answer only."""
    await readable_team(state, caller, team_id)
    answer = await enrol(state.store, caller, team_id, body)
    await state.store_changed()
    return answer


async def enrol(store: Store, caller: Principal | str, team_id: str, body: RosterImport) -> dict[str, Any]:
    """What the route and ``anygate users import`` share: import in one transaction, audit, answer."""
    user_fields = {"budget": [b.model_dump() for b in body.budgets or []] or None, "limits": _dump(body.limits)}
    key = body.key
    key_fields = {
        "models": key.models,
        "providers": key.providers,
        "budget": [b.model_dump() for b in key.budgets or []] or None,
        "limits": _dump(key.limits),
        "expires_at": key.expires_at,
    }
    entries = [RosterEntry(user.name) for user in body.users]
    created_by = caller if isinstance(caller, str) else caller.key_id
    try:
        enrolled = await store.teams.import_roster(team_id, entries, user_fields, key_fields, created_by)
    except LookupError:
        raise unknown_team(team_id) from None
    rows = [
        {
            "user_id": e.user.id,
            "name": e.user.name,
            "status": "created" if e.key is not None else "kept",
            "key_id": e.key.id if e.key is not None else None,
            "key": e.secret,
        }
        for e in enrolled
    ]
    created = [r for r in rows if r["status"] == "created"]
    audited = {"team_id": team_id, "created": [{k: r[k] for k in ("user_id", "name", "key_id")} for r in created]}
    await store.audit.record(caller, "team.roster", "team", team_id, None, audited)
    return {"team_id": team_id, "created": len(created), "kept": len(rows) - len(created), "data": rows}


def _dump(model: Any) -> dict[str, Any] | None:
    return None if model is None else model.model_dump()
