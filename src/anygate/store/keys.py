"""Keys and users: rows in, plain records out. Only the SHA-256 of a key is ever stored.

Rotation gives a key record a new secret and keeps everything else (id, budget, usage, the key's own
provider credentials, alias, expiry); the previous secret's hash stays valid for ``ROTATION_GRACE``.
Re-issuing revokes keys (with their descendants) and makes a new key with the same fields for each, at once.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import RowMapping

from anygate.auth import hash_key, new_key
from anygate.store.database import Database
from anygate.store.families import MAX_DEPTH, Lineage, descendants_query, in_family, lineage_of, parent_id
from anygate.store.records import KeyRecord, UserRecord
from anygate.store.tables import api_keys, credentials, signin_identities, users, utcnow

ROTATION_GRACE = timedelta(hours=1)


class RotationRefused(Exception):
    """The secret presented is not the key's current one: only the current secret may rotate a key."""


@dataclass(frozen=True)
class Reissued:
    """A key re-issued: the revoked one, its replacement and the replacement's secret (shown once)."""

    old: KeyRecord
    new: KeyRecord
    secret: str


KEY_FIELDS = ("alias", "user_id", "role", "models", "providers", "budget", "limits", "expires_at", "alerts")
USER_FIELDS = ("name", "budget", "limits", "team_id", "alerts")


def _key(row: RowMapping) -> KeyRecord:
    return KeyRecord(**row)


def _user(row: RowMapping) -> UserRecord:
    return UserRecord(**row)


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------------------ keys

    async def create_key(self, fields: dict[str, Any], created_by: str | None) -> tuple[KeyRecord, str]:
        """Store a new key; return its record and the secret (the only time it exists in clear)."""
        secret = new_key()
        record_id = "key_" + secrets.token_hex(8)
        values = {name: fields.get(name) for name in KEY_FIELDS}
        values.update(
            id=record_id,
            key_hash=hash_key(secret),
            key_prefix=secret[:12],
            role=fields.get("role") or "user",
            created_at=utcnow(),
            created_by=created_by,
        )
        async with self.db.connect() as connection:
            await connection.execute(api_keys.insert().values(**values))
            await self.db.bump(connection)
        record = await self.get_key(record_id)
        assert record is not None
        return record, secret

    async def list_keys(self, user_id: str | None = None, team_id: str | None = None) -> list[KeyRecord]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if user_id is not None:
            query = query.where(api_keys.c.user_id == user_id)
        if team_id is not None:
            query = query.where(api_keys.c.user_id.in_(select(users.c.id).where(users.c.team_id == team_id)))
        async with self.db.connect() as connection:
            return [_key(row) for row in (await connection.execute(query)).mappings()]

    async def get_key(self, key_id: str) -> KeyRecord | None:
        async with self.db.connect() as connection:
            row = (await connection.execute(select(api_keys).where(api_keys.c.id == key_id))).mappings().first()
        return _key(row) if row is not None else None

    async def find_key_by_hash(self, key_hash: str) -> KeyRecord | None:
        """The key whose current secret has this SHA-256 (revoked and expired keys too)."""
        async with self.db.connect() as connection:
            query = select(api_keys).where(api_keys.c.key_hash == key_hash)
            row = (await connection.execute(query)).mappings().first()
        return _key(row) if row is not None else None

    async def update_key(self, key_id: str, fields: dict[str, Any]) -> KeyRecord | None:
        values = {name: value for name, value in fields.items() if name in KEY_FIELDS}
        if values:
            async with self.db.connect() as connection:
                result = await connection.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values))
                if result.rowcount == 0:
                    return None
                await self.db.bump(connection)
        return await self.get_key(key_id)

    async def lineage(self, key_id: str) -> Lineage | None:
        """The key and the keys above it (see ``families``); ``None`` when there is no such key."""
        record = await self.get_key(key_id)
        if record is None:
            return None
        found = {record.id: record}
        current = record
        while (above := parent_id(current)) is not None and above not in found and len(found) <= MAX_DEPTH + 1:
            parent = await self.get_key(above)
            if parent is None:
                break
            found[above] = current = parent
        return lineage_of(record, found.get)

    async def revoke_key(self, key_id: str) -> KeyRecord | None:
        """Revoke the key and every descendant (keys it made, and theirs) in one statement; their own provider
        keys (``/auth/creds``) go with them: a revoked key never uses them again."""
        async with self.db.connect() as connection:
            await connection.execute(
                update(api_keys)
                .where(in_family(api_keys.c.id, key_id), api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            await connection.execute(delete(credentials).where(in_family(credentials.c.owner_id, key_id)))
            await self.db.bump(connection)
        return await self.get_key(key_id)

    async def reissue_keys(self, records: Sequence[KeyRecord], created_by: str) -> list[Reissued]:
        """In one transaction, revoke each key and its descendants and make a key with the same fields (alias,
        user, role, allowlists, budgets, limits, expiry, alerts) in its place. A key revoked meanwhile is
        left out: it gets no replacement."""
        done: list[Reissued] = []
        async with self.db.connect() as connection:
            for old in records:
                now = utcnow()
                revoked = await connection.execute(
                    update(api_keys)
                    .where(api_keys.c.id == old.id, api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
                if revoked.rowcount == 0:
                    continue
                await connection.execute(
                    update(api_keys)
                    .where(api_keys.c.id.in_(descendants_query(old.id)), api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
                secret = new_key()
                values = {name: getattr(old, name) for name in KEY_FIELDS}
                values.update(
                    id="key_" + secrets.token_hex(8),
                    key_hash=hash_key(secret),
                    key_prefix=secret[:12],
                    created_at=now,
                    created_by=created_by,
                )
                await connection.execute(api_keys.insert().values(**values))
                new = KeyRecord(**{**values, "revoked_at": None})
                done.append(Reissued(replace(old, revoked_at=now), new, secret))
            await self.db.bump(connection)
        return done

    async def rotate_key(self, key_id: str, current_hash: str) -> tuple[KeyRecord, str, datetime]:
        """Give the key a new secret; the one whose hash is ``current_hash`` keeps working for
        ``ROTATION_GRACE`` (a secret rotated before that stops now: one previous secret at a time).

        Return the record, the new secret and when the previous secret stops. Raises RotationRefused
        unless ``current_hash`` is the key's current secret (a concurrent rotation, or the previous one).
        """
        secret = new_key()
        grace_end = utcnow() + ROTATION_GRACE
        async with self.db.connect() as connection:
            result = await connection.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.key_hash == current_hash, api_keys.c.revoked_at.is_(None))
                .values(
                    key_hash=hash_key(secret),
                    key_prefix=secret[:12],
                    previous_hash=current_hash,
                    previous_valid_until=grace_end,
                )
            )
            if result.rowcount == 0:
                raise RotationRefused(key_id)
            await self.db.bump(connection)
        record = await self.get_key(key_id)
        assert record is not None
        if record.expires_at is not None and record.expires_at < grace_end:
            grace_end = record.expires_at
        return record, secret, grace_end

    # ------------------------------------------------------------------------------ users

    async def create_user(self, fields: dict[str, Any]) -> UserRecord:
        user_id = "usr_" + secrets.token_hex(8)
        values = {name: fields.get(name) for name in USER_FIELDS}
        values.update(id=user_id, created_at=utcnow())
        async with self.db.connect() as connection:
            await connection.execute(users.insert().values(**values))
            await self.db.bump(connection)
        user = await self.get_user(user_id)
        assert user is not None
        return user

    async def list_users(self, team_id: str | None = None) -> list[UserRecord]:
        query = select(users).order_by(users.c.created_at, users.c.id)
        if team_id is not None:
            query = query.where(users.c.team_id == team_id)
        async with self.db.connect() as connection:
            rows = await connection.execute(query)
            return [_user(row) for row in rows.mappings()]

    async def get_user(self, user_id: str) -> UserRecord | None:
        async with self.db.connect() as connection:
            row = (await connection.execute(select(users).where(users.c.id == user_id))).mappings().first()
        return _user(row) if row is not None else None

    async def update_user(self, user_id: str, fields: dict[str, Any]) -> UserRecord | None:
        values = {name: value for name, value in fields.items() if name in USER_FIELDS}
        if values:
            async with self.db.connect() as connection:
                result = await connection.execute(update(users).where(users.c.id == user_id).values(**values))
                if result.rowcount == 0:
                    return None
                await self.db.bump(connection)
        return await self.get_user(user_id)

    async def delete_user(self, user_id: str) -> bool:
        """Delete a user, every key it owns and its own provider keys; descendants of those keys that
        belong to someone else (an admin moved them) are revoked, as they would be with their ancestor."""
        async with self.db.connect() as connection:
            owned = await connection.execute(select(api_keys.c.id).where(api_keys.c.user_id == user_id))
            for (key_id,) in owned.all():
                await connection.execute(
                    update(api_keys)
                    .where(api_keys.c.id.in_(descendants_query(key_id)), api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=utcnow())
                )
            owners = select(api_keys.c.id).where(api_keys.c.user_id == user_id)  # its keys' own provider keys too
            await connection.execute(
                delete(credentials).where((credentials.c.owner_id == user_id) | credentials.c.owner_id.in_(owners))
            )
            await connection.execute(delete(signin_identities).where(signin_identities.c.user_id == user_id))
            await connection.execute(delete(api_keys).where(api_keys.c.user_id == user_id))
            result = await connection.execute(delete(users).where(users.c.id == user_id))
            await self.db.bump(connection)
        return bool(result.rowcount)

    async def all_keys(self) -> tuple[list[KeyRecord], dict[str, UserRecord]]:
        """Every key, revoked ones too (a key is cut off by a revoked ancestor), with the users."""
        async with self.db.connect() as connection:
            keys = await connection.execute(select(api_keys))
            owners = await connection.execute(select(users))
            return [_key(row) for row in keys.mappings()], {u.id: u for u in map(_user, owners.mappings())}
