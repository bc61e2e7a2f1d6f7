"""LiteLLM's management reads, for the tools that follow ``/key/info`` to ``user_id`` to ``/user/info``.

GET /key/info[?key=]         a key: the caller's, or the one named (admins: any; others: their own)
GET /user/info[?user_id=]    a user and its keys (admins: any, or every key; others: their own user, and the
                             rows of the keys they manage only)
GET /team/info[?team_id=]    a team, its members and its keys (admins: any; the team's admin: its team; others:
                             their own team, themselves as its only member, and the rows of the keys they manage)

``?key=`` names a key by its secret (``sk-ag-...``), its SHA-256 (LiteLLM's clients send the hash) or
its anygate id (``key_...``). Someone else's key is 403 for a non-admin whether it exists or not.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from anygate.accounting.budgets import Scope, budget_specs, limit_spec
from anygate.accounting.ledger import Ledger
from anygate.accounting.service import Accounting
from anygate.api.deps import CallerDep, StateDep
from anygate.api.routes_quota import json_response
from anygate.api.state import AppState
from anygate.auth import KEY_PREFIX, Principal, extract_token, hash_key
from anygate.errors import NotFound, PermissionDenied
from anygate.management.rights import manages
from anygate.quota import litellm, standing
from anygate.quota.shapes import Allowance
from anygate.store.principals import principal_of
from anygate.store.records import KeyRecord, UserRecord

router = APIRouter(tags=["LiteLLM compatible"])
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
KEY_QUERY = (
    "The key to describe: its secret, its SHA-256 (hex) or its id. Default: the calling key. "
    "A non-admin key may name only its own keys (and its user's)."
)


def accounting_of(state: AppState) -> tuple[Accounting, Ledger]:
    return state.accounting, state.accounting.ledger


async def find_key(state: AppState, named: str) -> KeyRecord | None:
    keys = state.store.keys
    if named.startswith(KEY_PREFIX):
        return await keys.find_key_by_hash(hash_key(named))
    if SHA256_HEX.match(named):
        return await keys.find_key_by_hash(named)
    return await keys.get_key(named)


def names_caller(request: Request, named: str) -> bool:
    """Whether ``?key=`` names the secret the caller presented (or its hash)."""
    token = extract_token(request.scope["headers"])
    return token is not None and named in (token, hash_key(token))


async def owner_of(state: AppState, record: KeyRecord) -> UserRecord | None:
    return await state.store.keys.get_user(record.user_id) if record.user_id is not None else None


async def shown(state: AppState, caller: Principal, records: list[KeyRecord]) -> list[KeyRecord]:
    """The keys whose rows ``caller`` may read: all for an admin or the team's admin (``records`` are then
    its team's), else those it manages (itself and the keys made from it), as ``/key/info?key=`` answers.
    Another key of the same user or team is someone else's (a course's students share its user)."""
    if caller.is_admin or caller.is_team_admin:
        return records
    kept = []
    for record in records:
        lineage = await state.store.keys.lineage(record.id)
        if lineage is not None and manages(caller, lineage):
            kept.append(record)
    return kept


async def key_row(state: AppState, principal: Principal, record: KeyRecord | None) -> dict[str, Any]:
    """LiteLLM's row of one key: its quota, and what the store and the ledger know of it."""
    lineage = await state.store.keys.lineage(record.id) if record is not None else None
    accounting, ledger = accounting_of(state)
    quota = await standing.key_quota(accounting, ledger, principal)
    facts = await standing.key_facts(ledger, principal.key_id, lineage)
    return litellm.key_info(quota, facts)


async def stored_key_row(state: AppState, record: KeyRecord, owner: UserRecord | None) -> dict[str, Any]:
    return await key_row(state, principal_of(record, owner), record)


@router.get("/key/info")
async def key_info(
    request: Request,
    state: StateDep,
    caller: CallerDep,
    key: Annotated[str | None, Query(description=KEY_QUERY)] = None,
) -> Response:
    """LiteLLM's key row of the calling key, or of the key named by ``?key=``."""
    if key is None or names_caller(request, key):
        record = await state.store.keys.get_key(caller.key_id)
        return json_response({"key": caller.key_id, "info": await key_row(state, caller, record)})
    record = await find_key(state, key)
    lineage = await state.store.keys.lineage(record.id) if record is not None else None
    if record is None or lineage is None or not manages(caller, lineage):
        if not caller.is_admin:
            raise PermissionDenied("This key may only ask about its own keys", param="key", code="not_owner")
        raise NotFound("Unknown key", param="key", code="key_not_found")
    row = await stored_key_row(state, record, await owner_of(state, record))
    return json_response({"key": record.id, "info": row})


@router.get("/user/info")
async def user_info(
    state: StateDep,
    caller: CallerDep,
    user_id: Annotated[str | None, Query(description="The user (default: the calling key's user)")] = None,
) -> Response:
    """LiteLLM's user row and the rows of the user's keys. An admin without ``user_id`` gets every key."""
    store = state.store
    if user_id is None and caller.is_admin:
        rows = [await stored_key_row(state, r, await owner_of(state, r)) for r in await store.keys.list_keys()]
        return json_response(litellm.user_answer(None, rows))
    wanted = user_id or caller.user_id
    if wanted is None:
        raise NotFound("This key belongs to no user", param="user_id", code="user_not_found")
    if not caller.is_admin and wanted != caller.user_id:
        raise PermissionDenied("This key may only ask about its own user", param="user_id", code="not_owner")
    user = await store.keys.get_user(wanted)
    if user is None:
        raise NotFound(f"User {wanted} not found", param="user_id", code="user_not_found")
    records = await shown(state, caller, await store.keys.list_keys(user.id))
    rows = [await stored_key_row(state, record, user) for record in records]
    accounting, ledger = accounting_of(state)
    return json_response(litellm.user_answer(await standing.user_facts(accounting, ledger, user), rows))


@router.get("/team/info")
async def team_info(
    state: StateDep,
    caller: CallerDep,
    team_id: Annotated[str | None, Query(description="The team (default: the calling key's user's team)")] = None,
) -> Response:
    """LiteLLM's team row: the team's USD budget that binds first, its limits, members and keys."""
    wanted = team_id or caller.team_id
    if wanted is None:
        raise NotFound("This key's user is in no team", param="team_id", code="team_not_found")
    if not caller.is_admin and wanted != caller.team_id:
        raise PermissionDenied("This key may only ask about its own team", param="team_id", code="not_owner")
    store = state.store
    team = await store.teams.get_team(wanted)
    if team is None:
        raise NotFound(f"Team not found, passed team id: {wanted}.", param="team_id", code="team_not_found")
    members = await store.keys.list_users(team.id)
    owners = {user.id: user for user in members}
    records = await shown(state, caller, await store.keys.list_keys(team_id=team.id))
    rows = [
        {"token": r.id, **await key_row(state, principal_of(r, owners.get(r.user_id or ""), team=team), r)}
        for r in records
    ]
    accounting, ledger = accounting_of(state)
    spend = (await standing.all_time_use(ledger, "team", team.id))["usd"]
    scope = Scope("team", team.id, budget_specs(team.budgets), limit_spec(team.limits))
    usd = standing.least_left(await standing.budgets_of(accounting, ledger.engine, [scope], "usd", datetime.now(UTC)))
    allowance = usd.allowance if usd is not None else Allowance()
    return json_response(litellm.team_answer(team, shown_members(caller, members), spend, allowance, rows))


def shown_members(caller: Principal, members: list[UserRecord]) -> list[str]:
    """The members whose ids ``caller`` may read: all for an admin or the team's admin; for anyone else, its
    own user only (a course's students do not learn each other's ids)."""
    if caller.is_admin or caller.is_team_admin:
        return [member.id for member in members]
    return [member.id for member in members if member.id == caller.user_id]
