"""Teams (a course, a department): budgets, limits and allowlists that bind every member's keys, and the
roster import that makes a team's users and keys in one transaction.

A user is in at most one team (``users.team_id``). Deleting a team takes its users out of it (their keys
keep working, without the team's budgets); deleting the users is a separate, explicit act.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from anygate.auth import hash_key, new_key
from anygate.store.database import Database
from anygate.store.records import KeyRecord, TeamRecord, UserRecord
from anygate.store.tables import api_keys, teams, users, utcnow

TEAM_FIELDS = ("name", "budgets", "limits", "models", "providers", "alerts")


class TeamExists(Exception):
    """A team with this id is stored already."""


@dataclass(frozen=True)
class RosterEntry:
    """One roster line: a user by name, in the team."""

    name: str


@dataclass(frozen=True)
class Enrolled:
    """A roster line's outcome: the user, and its new key's record and secret (None: the user was kept)."""

    user: UserRecord
    key: KeyRecord | None = None
    secret: str | None = None


def _team(row: RowMapping) -> TeamRecord:
    return TeamRecord(**row)


class TeamStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_team(self, fields: dict[str, Any]) -> TeamRecord:
        team_id = fields.get("id") or "team_" + secrets.token_hex(6)
        values = {name: fields.get(name) for name in TEAM_FIELDS}
        values.update(id=team_id, created_at=utcnow())
        async with self.db.connect() as connection:
            if await connection.scalar(select(func.count()).where(teams.c.id == team_id)):
                raise TeamExists(team_id)
            await connection.execute(teams.insert().values(**values))
            await self.db.bump(connection)
        team = await self.get_team(team_id)
        assert team is not None
        return team

    async def list_teams(self) -> list[TeamRecord]:
        async with self.db.connect() as connection:
            rows = await connection.execute(select(teams).order_by(teams.c.created_at, teams.c.id))
            return [_team(row) for row in rows.mappings()]

    async def get_team(self, team_id: str) -> TeamRecord | None:
        async with self.db.connect() as connection:
            row = (await connection.execute(select(teams).where(teams.c.id == team_id))).mappings().first()
        return _team(row) if row is not None else None

    async def update_team(self, team_id: str, fields: dict[str, Any]) -> TeamRecord | None:
        values = {name: value for name, value in fields.items() if name in TEAM_FIELDS}
        if values:
            async with self.db.connect() as connection:
                result = await connection.execute(update(teams).where(teams.c.id == team_id).values(**values))
                if result.rowcount == 0:
                    return None
                await self.db.bump(connection)
        return await self.get_team(team_id)

    async def delete_team(self, team_id: str) -> bool:
        async with self.db.connect() as connection:
            await connection.execute(update(users).where(users.c.team_id == team_id).values(team_id=None))
            result = await connection.execute(teams.delete().where(teams.c.id == team_id))
            await self.db.bump(connection)
        return bool(result.rowcount)

    async def member_ids(self, team_id: str) -> list[str]:
        async with self.db.connect() as connection:
            rows = await connection.execute(
                select(users.c.id).where(users.c.team_id == team_id).order_by(users.c.created_at, users.c.id)
            )
            return [user_id for (user_id,) in rows]

    async def all_teams(self) -> dict[str, TeamRecord]:
        return {team.id: team for team in await self.list_teams()}

    async def import_roster(
        self,
        team_id: str,
        entries: Sequence[RosterEntry],
        user_fields: dict[str, Any],
        key_fields: dict[str, Any],
        created_by: str,
    ) -> list[Enrolled]:
        """Make a user (with ``user_fields``) and one key (with ``key_fields``) for each roster name not in
        the team yet, all in one transaction; a name already in the team is kept as it is (a re-run makes
        nothing twice). Raises LookupError for an unknown team."""
        enrolled: list[Enrolled] = []
        async with self.db.connect() as connection:
            if not await connection.scalar(select(func.count()).where(teams.c.id == team_id)):
                raise LookupError(team_id)
            existing = await _members_by_name(connection, team_id)
            for entry in dict.fromkeys(entries):  # a name listed twice is one student
                user = existing.get(entry.name)
                if user is not None:
                    enrolled.append(Enrolled(user))
                    continue
                enrolled.append(await _enrol(connection, team_id, entry, user_fields, key_fields, created_by))
            await self.db.bump(connection)
        return enrolled


async def _members_by_name(connection: AsyncConnection, team_id: str) -> dict[str, UserRecord]:
    rows = await connection.execute(select(users).where(users.c.team_id == team_id))
    return {row["name"]: UserRecord(**row) for row in rows.mappings()}


async def _enrol(
    connection: AsyncConnection,
    team_id: str,
    entry: RosterEntry,
    user_fields: dict[str, Any],
    key_fields: dict[str, Any],
    created_by: str,
) -> Enrolled:
    now = utcnow()
    user_values: dict[str, Any] = {
        "id": "usr_" + secrets.token_hex(8),
        "name": entry.name,
        "budget": user_fields.get("budget"),
        "limits": user_fields.get("limits"),
        "team_id": team_id,
        "created_at": now,
    }
    await connection.execute(users.insert().values(**user_values))
    secret = new_key()
    key_values: dict[str, Any] = {
        "id": "key_" + secrets.token_hex(8),
        "key_hash": hash_key(secret),
        "key_prefix": secret[:12],
        "alias": entry.name,
        "user_id": user_values["id"],
        "role": "user",
        "models": key_fields.get("models"),
        "providers": key_fields.get("providers"),
        "budget": key_fields.get("budget"),
        "limits": key_fields.get("limits"),
        "expires_at": key_fields.get("expires_at"),
        "created_at": now,
        "created_by": created_by,
    }
    await connection.execute(api_keys.insert().values(**key_values))
    user = UserRecord(**{**user_values, "alerts": None})
    key = KeyRecord(**{**key_values, "revoked_at": None})
    return Enrolled(user, key, secret)
