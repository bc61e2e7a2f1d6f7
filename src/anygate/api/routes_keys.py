"""Keys: create (the secret is shown once), list, get, update, revoke, and rotate the caller's own secret.

Admin keys manage every key and list them all. A user key may read, narrow and revoke itself and the keys
made from it (its descendants) by id, gets 404 for any other, and can neither make nor change a key into
one with more rights than its own (``rights``). Revoking a key revokes its descendants. A team admin
manages the keys of its team's users as an admin would (``team_rights``), and lists only those.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from anygate.api.deps import CallerDep, StateDep
from anygate.api.state import AppState
from anygate.auth import Principal, extract_token, hash_key
from anygate.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from anygate.management.key_checks import Served, check_key_fields
from anygate.management.rights import check_change, check_new_key, inherit_limits, manages
from anygate.management.schemas import KeyCreate, KeyUpdate, with_budget_list
from anygate.management.team_rights import (
    ELEVATED_ROLES,
    check_member,
    check_not_peer,
    check_team_fields,
    outside_team,
)
from anygate.registry import ProviderRegistry
from anygate.store.budget_lists import legacy_budget, stored_budgets
from anygate.store.families import Lineage, lineages
from anygate.store.keys import RotationRefused
from anygate.store.records import KeyRecord
from anygate.store.tables import utcnow

router = APIRouter(tags=["keys"])


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def key_view(lineage: Lineage) -> dict[str, Any]:
    """A key as the API shows it: never the secret (only its first characters).

    ``created_by`` is the id of the key that made it, ``"admin"`` for the admin key, ``"cli"`` for
    ``anygate keys create``. ``status`` counts the keys above it: revoked or expired with any of them.
    """
    record = lineage.key
    return {
        "id": record.id,
        "alias": record.alias,
        "key_prefix": record.key_prefix,
        "user_id": record.user_id,
        "role": record.role,
        "created_by": record.created_by,
        "models": record.models,
        "providers": record.providers,
        "expires_at": iso(record.expires_at),
        "revoked_at": iso(record.revoked_at),
        "created_at": iso(record.created_at),
        "previous_secret_valid_until": iso(record.previous_valid_until),
        "budget": legacy_budget(record.budget),
        "budgets": stored_budgets(record.budget),
        "limits": record.limits,
        "alerts": record.alerts,
        "status": lineage.status(utcnow()),
    }


async def view_of(state: AppState, key_id: str) -> dict[str, Any]:
    lineage = await state.store.keys.lineage(key_id)
    if lineage is None:
        raise NotFound(f"Unknown key '{key_id}'", code="key_not_found")
    return key_view(lineage)


async def key_views(state: AppState, user_id: str | None = None, team_id: str | None = None) -> list[dict[str, Any]]:
    """Every key's view (or a user's keys', or a team's members'), their chains read from all the keys at once."""
    records = await state.store.keys.list_keys()
    chains = lineages({r.id: r for r in records})
    shown = records
    if team_id is not None:
        members = {r.id for r in await state.store.keys.list_keys(team_id=team_id)}
        shown = [r for r in records if r.id in members]
    return [key_view(chains[r.id]) for r in shown if user_id is None or r.user_id == user_id]


async def held_roles(state: AppState, user_id: str) -> set[str]:
    """The roles of a user's live keys (a user holding an admin or team admin key is no team admin's)."""
    return {k.role for k in await state.store.keys.list_keys(user_id) if k.revoked_at is None}


async def check_student(state: AppState, caller: Principal, user_id: str, what: str) -> None:
    """403 unless a team admin may change the user: not a peer holding an admin or team admin key."""
    if caller.is_team_admin and not caller.is_admin:
        check_not_peer(caller, user_id, await held_roles(state, user_id), what)


async def team_manages(state: AppState, caller: Principal, record: KeyRecord) -> bool:
    """Whether a team admin manages the key: a user key, whose user is in the team admin's team and holds no
    admin or team admin key (unless it is the team admin's own user)."""
    if not caller.is_team_admin or record.user_id is None or record.role != "user":
        return False
    user = await state.store.keys.get_user(record.user_id)
    if user is None or user.team_id != caller.team_id:
        return False
    return record.user_id == caller.user_id or not (ELEVATED_ROLES & await held_roles(state, user.id))


async def managed_key(state: AppState, caller: Principal, key_id: str) -> KeyRecord:
    """The key, if ``caller`` manages it; else 404, as for a key that does not exist."""
    lineage = await state.store.keys.lineage(key_id)
    if lineage is None:
        raise NotFound(f"Unknown key '{key_id}'", code="key_not_found")
    if not manages(caller, lineage) and not await team_manages(state, caller, lineage.key):
        raise NotFound(f"Unknown key '{key_id}'", code="key_not_found")
    return lineage.key


async def acts_for_team(state: AppState, caller: Principal, user_id: str | None) -> bool:
    """Whether a team admin's key request is for a member of its team (checked as an admin's, scoped to the
    team), rather than for a key of its own family (checked by ``rights``)."""
    if not caller.is_team_admin or user_id is None or user_id == caller.user_id:
        return False
    check_member(caller, await state.store.keys.get_user(user_id), f"user '{user_id}' is not in its team")
    await check_student(state, caller, user_id, f"user '{user_id}'")
    return True


def served_now(registry: ProviderRegistry) -> Served:
    """Every provider and the models it lists (None: unknown), for the allowlist warnings."""
    return {r.id: (frozenset(r.models) if r.models is not None else None) for r in registry.runtimes.values()}


def with_warnings(view: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    return {**view, "warnings": warnings} if warnings else view


@router.post("/v1/keys", status_code=201)
async def create_key(body: KeyCreate, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """Issue a key; ``key`` (``sk-ag-...``) is in this response only, and stored as a SHA-256 hash.
    ``warnings`` says what looks wrong but is allowed (``management.key_checks``)."""
    fields = with_budget_list(body, body.model_dump())
    by_team_admin = await acts_for_team(state, caller, fields.get("user_id"))
    if by_team_admin:
        check_team_fields(caller, fields)
    else:
        fields = inherit_limits(caller, fields)
        check_new_key(caller, fields)
    by_admin = caller.is_admin or by_team_admin
    warnings = await check_key_fields(state.store.keys, fields, served_now(state.registry), by_admin=by_admin)
    record, secret = await state.store.keys.create_key(fields, created_by=caller.key_id)
    await state.store_changed()
    view = await view_of(state, record.id)
    await state.audit.record(caller, "key.create", "key", record.id, None, view)
    return with_warnings({**view, "key": secret}, warnings)


@router.get("/v1/keys")
async def list_keys(state: StateDep, caller: CallerDep, user_id: str | None = None) -> dict[str, Any]:
    """The keys the caller manages: every key for an admin; its team's keys and its own family for a team
    admin; for any other key, itself and the keys made from it (children, grandchildren). ``caller`` says
    who asks (``caller_view``): the console reads the caller's role there."""
    records = await state.store.keys.list_keys()
    chains = lineages({r.id: r for r in records})
    team: set[str] = set()
    if caller.is_team_admin:
        team = {r.id for r in await state.store.keys.list_keys(team_id=caller.team_id)}
    shown = [
        key_view(chains[r.id])
        for r in records
        if (caller.is_admin or r.id in team or manages(caller, chains[r.id]))
        and (user_id is None or r.user_id == user_id)
    ]
    return {"object": "list", "data": shown, "caller": caller_view(caller)}


def caller_view(caller: Principal) -> dict[str, Any]:
    """Who is asking: its key id (``admin`` for the admin key), role, user and team."""
    role = "admin" if caller.is_admin else "team_admin" if caller.is_team_admin else "user"
    return {"key_id": caller.key_id, "role": role, "user_id": caller.user_id, "team_id": caller.team_id}


@router.get("/v1/keys/{key_id}")
async def get_key(key_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    await managed_key(state, caller, key_id)
    return await view_of(state, key_id)


@router.patch("/v1/keys/{key_id}")
async def update_key(key_id: str, body: KeyUpdate, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """Change the given fields (alias, allowlists, expiry, budget, limits; role and owner for admins).

    A user key only narrows: each field no wider than the key's current value nor than its own."""
    record = await managed_key(state, caller, key_id)
    fields = with_budget_list(body, body.model_dump(exclude_unset=True))
    if "alias" in fields and fields["alias"] is None:
        raise InvalidRequest("alias: cannot be null", param="alias", code="invalid_field")
    by_team_admin = record.user_id != caller.user_id and await team_manages(state, caller, record)
    if by_team_admin:
        check_team_fields(caller, fields)
        if "user_id" in fields and not await acts_for_team(state, caller, fields["user_id"]):
            raise outside_team(f"a key of its team cannot move to user '{fields['user_id']}'")
    else:
        check_change(caller, record, fields)
    current = {"id": record.id, "alias": record.alias, "user_id": record.user_id}
    served = served_now(state.registry)
    by_admin = caller.is_admin or by_team_admin
    warnings = await check_key_fields(state.store.keys, fields, served, current, by_admin=by_admin)
    before = await view_of(state, key_id)
    if await state.store.keys.update_key(key_id, fields) is None:
        raise NotFound(f"Unknown key '{key_id}'", code="key_not_found")
    await state.store_changed()
    after = await view_of(state, key_id)
    await state.audit.record(caller, "key.update", "key", key_id, before, after)
    return with_warnings(after, warnings)


@router.delete("/v1/keys/{key_id}")
async def revoke_key(key_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """Revoke a key and every key made from it: they stop working on every worker and replica within
    seconds (on this worker at once)."""
    await managed_key(state, caller, key_id)
    before = await view_of(state, key_id)
    await state.store.keys.revoke_key(key_id)
    await state.store_changed()
    after = await view_of(state, key_id)
    await state.audit.record(caller, "key.revoke", "key", key_id, before, after)
    return after


def presented_digest(request: Request) -> str | None:
    token = extract_token(request.scope["headers"])
    return hash_key(token) if token is not None else None


@router.post("/auth/rotate")
async def rotate_own_key(request: Request, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """A new secret for the caller's key: the same key (id, rights, budget, usage, own provider keys,
    alias, expiry); the previous secret keeps working for one hour. Only the current secret rotates."""
    store = state.store
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
    view = await view_of(state, record.id)
    await state.audit.record(caller, "key.rotate", "key", record.id, None, view)
    if caller.expires_at is not None:  # never past the expiry of the keys above it either
        grace_end = min(grace_end, datetime.fromtimestamp(caller.expires_at, UTC))
    return {**view, "key": secret, "previous_key_expires_at": iso(grace_end)}
