"""Console sign-in's rows: which user record a person signed in through OpenID Connect acts as, and the
sign-ins that came back, so that a state is used once and a code is exchanged once on every worker and
replica (the rows go once the sign-in's ten minutes are over: its sealed cookie has expired by then).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from anygate.store.database import Database
from anygate.store.records import UserRecord
from anygate.store.tables import signin_flows, signin_identities, users, utcnow


class SigninStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def use_flow(self, state_hash: str, code_hash: str, expires_at: datetime) -> bool:
        """Record that a sign-in's state came back with this code (and forget records that have expired):
        False when the state, or the code, came back before, on any worker or replica."""
        try:
            async with self.db.connect() as connection:
                await connection.execute(delete(signin_flows).where(signin_flows.c.expires_at < utcnow()))
                await connection.execute(
                    signin_flows.insert().values(state_hash=state_hash, code_hash=code_hash, expires_at=expires_at)
                )
        except IntegrityError:  # the state's or the code's hash is there already
            return False
        return True

    async def user_for(self, issuer: str, subject: str, name: str, fields: dict[str, Any]) -> UserRecord:
        """The user record the identity acts as, made with ``name`` and ``fields`` (budget, limits) the
        first time. Two first sign-ins at once make one record: the loser reads the winner's."""
        found = await self._identity_user(issuer, subject)
        if found is not None:
            return found
        user_id = "usr_" + secrets.token_hex(8)
        now = utcnow()
        try:
            async with self.db.connect() as connection:
                await connection.execute(
                    users.insert().values(
                        id=user_id, name=name, budget=fields.get("budget"), limits=fields.get("limits"), created_at=now
                    )
                )
                await connection.execute(
                    signin_identities.insert().values(issuer=issuer, subject=subject, user_id=user_id, created_at=now)
                )
                await self.db.bump(connection)
        except IntegrityError:
            found = await self._identity_user(issuer, subject)
            if found is None:
                raise
            return found
        made = await self._identity_user(issuer, subject)
        assert made is not None
        return made

    async def _identity_user(self, issuer: str, subject: str) -> UserRecord | None:
        query = (
            select(users)
            .join(signin_identities, signin_identities.c.user_id == users.c.id)
            .where(signin_identities.c.issuer == issuer, signin_identities.c.subject == subject)
        )
        async with self.db.connect() as connection:
            row = (await connection.execute(query)).mappings().first()
        return UserRecord(**row) if row is not None else None
