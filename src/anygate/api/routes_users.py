"""Users (admin; a team admin: its team's): people or groups that own keys, each in at most one team; plus
``/admin/users``, a user and its first key in one call (as some gateways provision users), on the same
model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from anygate.api.deps import AdminDep, CallerDep, StateDep
from anygate.api.routes_keys import check_student, iso, key_views
from anygate.api.state import AppState
from anygate.auth import Principal
from anygate.errors import InvalidRequest, NotFound
from anygate.management.schemas import AdminUserCreate, UserCreate, UserUpdate, with_budget_list
from anygate.management.team_rights import admin_or_team_admin, check_member, check_team_fields
from anygate.store.budget_lists import legacy_budget, stored_budgets
from anygate.store.records import UserRecord

router = APIRouter(tags=["users"])


def user_view(user: UserRecord) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "budget": legacy_budget(user.budget),
        "budgets": stored_budgets(user.budget),
        "limits": user.limits,
        "team_id": user.team_id,
        "alerts": user.alerts,
        "created_at": iso(user.created_at),
    }


def unknown_user(user_id: str) -> NotFound:
    return NotFound(f"Unknown user '{user_id}'", code="user_not_found")


async def known_team(state: AppState, team_id: str | None) -> None:
    if team_id is not None and await state.store.teams.get_team(team_id) is None:
        raise InvalidRequest(f"team_id: unknown team '{team_id}'", param="team_id", code="team_not_found")


async def member(state: AppState, caller: Principal, user_id: str) -> UserRecord:
    """The user, if the caller manages it (admins: any; a team admin: its team's, else 403)."""
    admin_or_team_admin(caller)
    user = await state.store.keys.get_user(user_id)
    if user is None and caller.is_admin:
        raise unknown_user(user_id)
    check_member(caller, user, f"user '{user_id}' is not in its team")
    assert user is not None
    return user


@router.post("/v1/users", status_code=201)
async def create_user(body: UserCreate, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """A user; a team admin's joins its team."""
    admin_or_team_admin(caller)
    fields = with_budget_list(body, body.model_dump())
    if caller.is_team_admin and not caller.is_admin:
        fields["team_id"] = fields.get("team_id") or caller.team_id
    check_team_fields(caller, fields)
    await known_team(state, fields.get("team_id"))
    user = await state.store.keys.create_user(fields)
    await state.store_changed()
    view = user_view(user)
    await state.audit.record(caller, "user.create", "user", user.id, None, view)
    return view


@router.get("/v1/users")
async def list_users(state: StateDep, caller: CallerDep, team_id: str | None = None) -> dict[str, Any]:
    """Every user (or a team's); a team admin's team's."""
    admin_or_team_admin(caller)
    if not caller.is_admin:
        team_id = caller.team_id
    return {"object": "list", "data": [user_view(u) for u in await state.store.keys.list_users(team_id)]}


@router.get("/v1/users/{user_id}")
async def get_user(user_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    user = await member(state, caller, user_id)
    return {**user_view(user), "keys": await key_views(state, user_id)}


@router.patch("/v1/users/{user_id}")
async def update_user(user_id: str, body: UserUpdate, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    before = await member(state, caller, user_id)
    await check_student(state, caller, user_id, f"user '{user_id}'")
    fields = with_budget_list(body, body.model_dump(exclude_unset=True))
    check_team_fields(caller, fields)
    await known_team(state, fields.get("team_id"))
    user = await state.store.keys.update_user(user_id, fields)
    if user is None:
        raise unknown_user(user_id)
    await state.store_changed()
    view = user_view(user)
    await state.audit.record(caller, "user.update", "user", user_id, user_view(before), view)
    return view


@router.delete("/v1/users/{user_id}")
async def delete_user(user_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """Delete a user and every key it owns."""
    before = await member(state, caller, user_id)
    await check_student(state, caller, user_id, f"user '{user_id}'")
    if not await state.store.keys.delete_user(user_id):
        raise unknown_user(user_id)
    await state.store_changed()
    await state.audit.record(caller, "user.delete", "user", user_id, user_view(before), None)
    return {"id": user_id, "deleted": True}


# ---------------------------------------------------------------------------------- /admin/users


@router.post("/admin/users", status_code=201)
async def admin_create_user(state: StateDep, admin: AdminDep, body: AdminUserCreate | None = None) -> dict[str, Any]:
    """Create a user with one key: ``{"id": <user id>, "token": "sk-ag-..."}`` (the token is shown once)."""
    keys = state.store.keys
    user = await keys.create_user({"name": (body or AdminUserCreate()).name})
    record, secret = await keys.create_key({"alias": user.name, "user_id": user.id}, created_by=admin.key_id)
    await state.store_changed()
    await state.audit.record(admin, "user.create", "user", user.id, None, {**user_view(user), "key_id": record.id})
    return {"id": user.id, "name": user.name, "token": secret, "key_id": record.id}


@router.get("/admin/users")
async def admin_list_users(state: StateDep, _: AdminDep) -> dict[str, Any]:
    return {"users": [user_view(u) for u in await state.store.keys.list_users()]}


@router.delete("/admin/users/{user_id}")
async def admin_delete_user(user_id: str, state: StateDep, admin: AdminDep) -> dict[str, Any]:
    return await delete_user(user_id, state, admin)
