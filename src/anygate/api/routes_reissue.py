"""Re-issue keys per user or per team (admin, or the team admin of that user's or team's team):

POST /v1/users/{id}/keys/reissue    the user's live keys
POST /v1/teams/{id}/keys/reissue    every member's live keys

Each key replaced (``management.reissue``: live, role ``user``, not made by another replaced key) is revoked
with its descendants, and a key with the same alias, allowlists, budgets, limits and expiry is made in its
place, all in one transaction (``KeyStore.reissue_keys``); each new secret is in this answer only. The
user's and the team's budgets keep counting what was spent in their windows: they belong to the user and
the team, not to a key. A key's own budget starts afresh with the new key, as it would for any new key.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from anygate.api.deps import CallerDep, StateDep
from anygate.api.routes_teams import readable_team
from anygate.api.routes_users import member
from anygate.auth import Principal
from anygate.management.reissue import keys_to_reissue
from anygate.store.records import UserRecord
from anygate.store.store import Store
from anygate.store.tables import utcnow

router = APIRouter(tags=["keys"])


@router.post("/v1/users/{user_id}/keys/reissue")
async def reissue_user_keys(user_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """Revoke the user's live keys and make one in place of each; the new secrets are in this answer only."""
    user = await member(state, caller, user_id)
    answer = await reissue(state.store, caller, ("user", user.id), [user])
    await state.store_changed()
    return answer


@router.post("/v1/teams/{team_id}/keys/reissue")
async def reissue_team_keys(team_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """Revoke every member's live keys and make one in place of each; the new secrets are in this answer only."""
    team = await readable_team(state, caller, team_id)
    members = await state.store.keys.list_users(team.id)
    answer = await reissue(state.store, caller, ("team", team.id), members)
    await state.store_changed()
    return answer


async def reissue(
    store: Store, caller: Principal | str, target: tuple[str, str], users: list[UserRecord]
) -> dict[str, Any]:
    """What the routes and ``anygate users|teams reissue`` share: replace the keys in one transaction, audit
    (ids only, never a secret), answer."""
    names = {user.id: user.name for user in users}
    chosen = keys_to_reissue(await store.keys.list_keys(), names.keys(), utcnow())
    created_by = caller if isinstance(caller, str) else caller.key_id
    done = await store.keys.reissue_keys(chosen, created_by)
    rows = [
        {
            "user_id": r.new.user_id,
            "name": names.get(r.new.user_id or "", ""),
            "alias": r.new.alias,
            "old_key_id": r.old.id,
            "key_id": r.new.id,
            "key": r.secret,
        }
        for r in done
    ]
    audited = {"reissued": [{k: row[k] for k in ("user_id", "old_key_id", "key_id")} for row in rows]}
    kind, target_id = target
    await store.audit.record(caller, f"{kind}.reissue", kind, target_id, None, audited)
    return {"object": "list", "reissued": len(rows), "data": rows}
