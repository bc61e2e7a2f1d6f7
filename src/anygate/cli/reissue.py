"""``anygate users reissue ID`` and ``anygate teams reissue ID``: revoke a user's or a team's live keys and
make one in place of each, with the same alias, allowlists, budgets, limits and expiry (the API's
``POST /v1/users|teams/{id}/keys/reissue``: one transaction, audited as actor ``cli``). Each new key is
printed once (``name,user_id,key_id,key``), or written with ``--out`` to a file made with mode 0600.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from anygate.cli.common import ConfigOption, load, with_store
from anygate.cli.roster import hand_out
from anygate.errors import NotFound
from anygate.store.store import Store

OutOption = Annotated[Path | None, typer.Option("--out", help="Write the new keys here (mode 0600), not stdout.")]


def users_reissue(
    user_id: Annotated[str, typer.Argument(help="The user whose keys are re-issued.")],
    out: OutOption = None,
    config: ConfigOption = None,
) -> None:
    """Revoke a user's live keys and make one in place of each (same settings); each new key shown once."""
    from anygate.api.routes_reissue import reissue

    async def run(store: Store) -> dict[str, Any]:
        user = await store.keys.get_user(user_id)
        if user is None:
            raise NotFound(f"no user '{user_id}'", code="user_not_found")
        return await reissue(store, "cli", ("user", user.id), [user])

    show(with_store(load(config), run), out)


def teams_reissue(
    team_id: Annotated[str, typer.Argument(help="The team whose members' keys are re-issued.")],
    out: OutOption = None,
    config: ConfigOption = None,
) -> None:
    """Revoke every member's live keys and make one in place of each (same settings); each new key shown once."""
    from anygate.api.routes_reissue import reissue

    async def run(store: Store) -> dict[str, Any]:
        if await store.teams.get_team(team_id) is None:
            raise NotFound(f"no team '{team_id}'", code="team_not_found")
        return await reissue(store, "cli", ("team", team_id), await store.keys.list_users(team_id))

    show(with_store(load(config), run), out)


def show(answer: dict[str, Any], out: Path | None) -> None:
    hand_out(answer["data"], out, f"{answer['reissued']} keys re-issued")
