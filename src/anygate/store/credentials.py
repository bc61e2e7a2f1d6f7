"""Callers' own provider keys (bring your own key): one encrypted section per (owner, provider).

An owner is the caller's user id, else its key id. A section is a small JSON object such as
``{"apiKey": "..."}``; it is stored encrypted as a whole.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import delete, select

from anygate.store.crypto import SecretBox, SecretKeyError
from anygate.store.database import Database
from anygate.store.tables import credentials, utcnow

Sections = dict[str, dict[str, Any]]


class CredentialStore:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    def _open(self, sealed: str) -> dict[str, Any]:
        section = orjson.loads(self.box.decrypt(sealed))
        assert isinstance(section, dict)
        return section

    async def get(self, owner_id: str) -> Sections:
        async with self.db.connect() as connection:
            rows = await connection.execute(select(credentials).where(credentials.c.owner_id == owner_id))
            return {row["provider_id"]: self._open(row["secret"]) for row in rows.mappings()}

    async def replace(self, owner_id: str, sections: Sections) -> None:
        """Make the owner's sections exactly ``sections`` (empty ones are not stored)."""
        now = utcnow()
        rows = [
            {"owner_id": owner_id, "provider_id": provider, "secret": self.box.encrypt(orjson.dumps(section).decode())}
            for provider, section in sections.items()
            if section
        ]
        async with self.db.connect() as connection:
            await connection.execute(delete(credentials).where(credentials.c.owner_id == owner_id))
            if rows:
                await connection.execute(credentials.insert(), [{**row, "updated_at": now} for row in rows])
            await self.db.bump(connection)

    async def all_keys(self) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], SecretKeyError]]:
        """(owner id, provider id) -> API key, for the in-memory cache the relay reads; and, for each
        section that cannot be decrypted here, (owner id, provider id) -> why (the others still load)."""
        async with self.db.connect() as connection:
            rows = (await connection.execute(select(credentials))).mappings().all()
        keys: dict[tuple[str, str], str] = {}
        unreadable: dict[tuple[str, str], SecretKeyError] = {}
        for row in rows:
            where = (row["owner_id"], row["provider_id"])
            try:
                api_key = self._open(row["secret"]).get("apiKey")
            except SecretKeyError as exc:
                unreadable[where] = exc
                continue
            if isinstance(api_key, str) and api_key:
                keys[where] = api_key
        return keys, unreadable
