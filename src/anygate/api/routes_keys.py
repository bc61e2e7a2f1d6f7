"""Keys: create (the secret is shown once), list, get, update, revoke, and rotate the caller's own secret.

Admin keys manage every key and list them all. A user key may read, change and revoke its own keys (and
its user's) by id, gets 404 for any other, and cannot make a key with more rights than its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request

from anygate.api.deps import AdminDep, CallerDep, StateDep
from anygate.api.rights import check_no_stronger, inherit_limits, owns
from anygate.api.schemas import KeyCreate, KeyUpdate
from anygate.api.state import AppState
from anygate.auth import Principal, extract_token, hash_key
from anygate.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from anygate.store.keys import KeyRecord, RotationRefused
from anygate.store.tables import utcnow

router = APIRouter(tags=["keys"])


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def key_view(record: KeyRecord) -> dict[str, Any]:
    """A key as the API shows it: never the secret (only its first characters)."""
    return {
        "id": record.id,
        "alias": record.alias,
        "key_prefix": record.key_prefix,
        "user_id": record.user_id,
        "role": record.role,
        "models": record.models,
        "providers": record.providers,
        "expires_at": iso(record.expires_at),
        "revoked_at": iso(record.revoked_at),
        "created_at": iso(record.created_at),
        "previous_secret_valid_until": iso(record.previous_valid_until),
        "budget": record.budget,
        "limits": record.limits,
        "status": record.status(utcnow()),
    }


async def own_key(state: AppState, caller: Principal, key_id: str) -> KeyRecord:
    record = await state.require_store().keys.get_key(key_id)
    if record is None or not owns(caller, record):
        raise NotFound(f"Unknown key '{key_id}'", code="key_not_found")
    return record


async def check_user(state: AppState, user_id: str | None) -> None:
    if user_id is not None and await state.require_store().keys.get_user(user_id) is None:
        raise InvalidRequest(f"user_id: no user '{user_id}'", param="user_id", code="unknown_user")


@router.post("/v1/keys", status_code=201)
async def create_key(body: KeyCreate, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """Issue a key; ``key`` (``sk-ag-...``) is in this response only, and stored as a SHA-256 hash."""
    fields = inherit_limits(caller, body.model_dump())
    check_no_stronger(caller, fields)
    await check_user(state, fields.get("user_id"))
    record, secret = await state.require_store().keys.create_key(fields, created_by=caller.key_id)
    await state.store_changed()
    return {**key_view(record), "key": secret}


@router.get("/v1/keys")
async def list_keys(state: StateDep, _: AdminDep, user_id: str | None = None) -> dict[str, Any]:
    """Every key (admins only: the console tells admins from users by this route's 200 or 403)."""
    records = await state.require_store().keys.list_keys(user_id)
    return {"object": "list", "data": [key_view(r) for r in records]}


@router.get("/v1/keys/{key_id}")
async def get_key(key_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    return key_view(await own_key(state, caller, key_id))


@router.patch("/v1/keys/{key_id}")
async def update_key(key_id: str, body: KeyUpdate, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """Change the given fields (alias, allowlists, expiry, budget, limits; role and owner for admins)."""
    await own_key(state, caller, key_id)
    fields = body.model_dump(exclude_unset=True)
    if "alias" in fields and fields["alias"] is None:
        raise InvalidRequest("alias: cannot be null", param="alias", code="invalid_field")
    check_no_stronger(caller, fields)
    await check_user(state, fields.get("user_id"))
    record = await state.require_store().keys.update_key(key_id, fields)
    if record is None:
        raise NotFound(f"Unknown key '{key_id}'", code="key_not_found")
    await state.store_changed()
    return key_view(record)


@router.delete("/v1/keys/{key_id}")
async def revoke_key(key_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """Revoke a key: it stops working on every worker and replica within seconds."""
    await own_key(state, caller, key_id)
    record = await state.require_store().keys.revoke_key(key_id)
    assert record is not None
    await state.store_changed()
    return key_view(record)


def presented_digest(request: Request) -> str | None:
    token = extract_token(request.scope["headers"])
    return hash_key(token) if token is not None else None


@router.post("/auth/rotate")
async def rotate_own_key(request: Request, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """A new secret for the caller's key: the same key (id, rights, budget, usage, own provider keys,
    alias, expiry); the previous secret keeps working for one hour. Only the current secret rotates."""
    store = state.require_store()
    record = await store.keys.get_key(caller.key_id)
    if record is None:
        raise InvalidRequest(
            "This key is not stored by anygate (the ANYGATE_ADMIN_KEY or generated admin key) and cannot be rotated",
            code="not_rotatable",
        )
    digest = presented_digest(request)
    if digest is not None and digest == record.previous_hash:
        raise PermissionDenied(
            f"This is the key's previous secret (valid until {iso(record.previous_valid_until)}); "
            "only the current secret can rotate the key",
            code="previous_secret",
        )
    try:
        record, secret, grace_end = await store.keys.rotate_key(record.id, digest or "")
    except RotationRefused:
        raise Conflict("The key was rotated meanwhile; use its current secret", code="rotated_meanwhile") from None
    await state.store_changed()
    return {**key_view(record), "key": secret, "previous_key_expires_at": iso(grace_end)}
