"""Users (admin): people or groups that own keys; plus ``/admin/users``, a user and its first key in one
call (as some gateways provision users), on the same model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from anygate.api.deps import AdminDep, StateDep
from anygate.api.routes_keys import iso, key_views
from anygate.errors import NotFound
from anygate.management.schemas import AdminUserCreate, UserCreate, UserUpdate
from anygate.store.records import UserRecord

router = APIRouter(tags=["users"])


def user_view(user: UserRecord) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "budget": user.budget,
        "limits": user.limits,
        "created_at": iso(user.created_at),
    }


def unknown_user(user_id: str) -> NotFound:
    return NotFound(f"Unknown user '{user_id}'", code="user_not_found")


@router.post("/v1/users", status_code=201)
async def create_user(body: UserCreate, state: StateDep, _: AdminDep) -> dict[str, Any]:
    user = await state.store.keys.create_user(body.model_dump())
    await state.store_changed()
    return user_view(user)


@router.get("/v1/users")
async def list_users(state: StateDep, _: AdminDep) -> dict[str, Any]:
    return {"object": "list", "data": [user_view(u) for u in await state.store.keys.list_users()]}


@router.get("/v1/users/{user_id}")
async def get_user(user_id: str, state: StateDep, _: AdminDep) -> dict[str, Any]:
    store = state.store
    user = await store.keys.get_user(user_id)
    if user is None:
        raise unknown_user(user_id)
    return {**user_view(user), "keys": await key_views(state, user_id)}


@router.patch("/v1/users/{user_id}")
async def update_user(user_id: str, body: UserUpdate, state: StateDep, _: AdminDep) -> dict[str, Any]:
    user = await state.store.keys.update_user(user_id, body.model_dump(exclude_unset=True))
    if user is None:
        raise unknown_user(user_id)
    await state.store_changed()
    return user_view(user)


@router.delete("/v1/users/{user_id}")
async def delete_user(user_id: str, state: StateDep, _: AdminDep) -> dict[str, Any]:
    """Delete a user and every key it owns."""
    if not await state.store.keys.delete_user(user_id):
        raise unknown_user(user_id)
    await state.store_changed()
    return {"id": user_id, "deleted": True}


# ---------------------------------------------------------------------------------- /admin/users


@router.post("/admin/users", status_code=201)
async def admin_create_user(state: StateDep, admin: AdminDep, body: AdminUserCreate | None = None) -> dict[str, Any]:
    """Create a user with one key: ``{"id": <user id>, "token": "sk-ag-..."}`` (the token is shown once)."""
    keys = state.store.keys
    user = await keys.create_user({"name": (body or AdminUserCreate()).name})
    record, secret = await keys.create_key({"alias": user.name, "user_id": user.id}, created_by=admin.key_id)
    await state.store_changed()
    return {"id": user.id, "name": user.name, "token": secret, "key_id": record.id}


@router.get("/admin/users")
async def admin_list_users(state: StateDep, _: AdminDep) -> dict[str, Any]:
    return {"users": [user_view(u) for u in await state.store.keys.list_users()]}


@router.delete("/admin/users/{user_id}")
async def admin_delete_user(user_id: str, state: StateDep, admin: AdminDep) -> dict[str, Any]:
    return await delete_user(user_id, state, admin)
