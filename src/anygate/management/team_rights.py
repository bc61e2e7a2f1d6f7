"""What a team admin may do: manage its team's users and their keys, and nothing else.

A team admin is a key with role ``team_admin`` whose user is in a team (``Principal.is_team_admin``). It
may list, make, change and delete the users of its team (a user it makes joins its team; it cannot move
one out), and list, make, change and revoke their keys (role ``user`` only). A user of the team who holds
an admin or team admin key (a professor, another teaching assistant) is a peer, not a student: a team admin
reads it, but neither changes nor deletes it, nor makes keys for it, nor touches its keys. Any other
management route, user or key is refused with 403 ``team_admin_scope``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from anygate.auth import Principal
from anygate.errors import PermissionDenied
from anygate.store.records import UserRecord


def outside_team(what: str) -> PermissionDenied:
    return PermissionDenied(f"A team admin manages its own team's users and keys only: {what}", code="team_admin_scope")


def admin_or_team_admin(caller: Principal) -> None:
    if not (caller.is_admin or caller.is_team_admin):
        raise PermissionDenied("This route needs an admin or a team admin key", code="admin_required")


def check_member(caller: Principal, user: UserRecord | None, what: str) -> None:
    """403 unless ``user`` is in the team admin's team (admins pass)."""
    if caller.is_admin:
        return
    if user is None or user.team_id is None or user.team_id != caller.team_id:
        raise outside_team(what)


def check_team_fields(caller: Principal, fields: dict[str, Any]) -> None:
    """A team admin's change to a user or a key: never another team, never an admin or team admin role."""
    if caller.is_admin:
        return
    if "team_id" in fields and fields["team_id"] != caller.team_id:
        raise outside_team(f"team_id '{fields['team_id']}' is another team")
    if fields.get("role", "user") != "user":
        raise outside_team("it makes keys with role 'user' only")


ELEVATED_ROLES = frozenset({"admin", "team_admin"})


def check_not_peer(caller: Principal, user_id: str, roles: Iterable[str], what: str) -> None:
    """403 when a team admin would change a user of its team who holds an admin or team admin key (``roles``:
    those of the user's live keys); its own user is its own to manage (admins pass)."""
    if caller.is_admin or user_id == caller.user_id:
        return
    if ELEVATED_ROLES.intersection(roles):
        raise outside_team(f"{what} holds an admin or team admin key")
