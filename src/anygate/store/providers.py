"""Providers added at runtime, their keys encrypted, and what their last live probe found."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from anygate.store.crypto import SecretBox
from anygate.store.database import Database
from anygate.store.tables import provider_probes, providers, utcnow


class DuplicateProvider(Exception):
    """A provider with this id is already stored."""


@dataclass(frozen=True)
class StoredProvider:
    """A provider as stored: its config (without the key) and its key, decrypted."""

    config: dict[str, Any]
    api_key: str | None

    def __repr__(self) -> str:
        return f"StoredProvider(id={self.config.get('id')!r}, has_key={self.api_key is not None})"


KEEP = object()  # update: leave the stored key as it is


class ProviderStore:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    def _seal(self, api_key: str | None) -> str | None:
        return self.box.encrypt(api_key) if api_key else None

    def _open(self, sealed: str | None) -> str | None:
        return self.box.decrypt(sealed) if sealed else None

    async def list(self) -> list[StoredProvider]:
        async with self.db.connect() as connection:
            rows = (await connection.execute(select(providers).order_by(providers.c.created_at))).mappings().all()
        return [StoredProvider(row["config"], self._open(row["api_key"])) for row in rows]

    async def get(self, provider_id: str) -> StoredProvider | None:
        async with self.db.connect() as connection:
            query = select(providers).where(providers.c.id == provider_id)
            row = (await connection.execute(query)).mappings().first()
        return StoredProvider(row["config"], self._open(row["api_key"])) if row is not None else None

    async def create(self, config: dict[str, Any], api_key: str | None) -> None:
        now = utcnow()
        values = {"id": config["id"], "config": config, "api_key": self._seal(api_key)}
        try:
            async with self.db.connect() as connection:
                await connection.execute(providers.insert().values(**values, created_at=now, updated_at=now))
                await self.db.bump(connection)
        except IntegrityError:
            raise DuplicateProvider(config["id"]) from None

    async def update(self, config: dict[str, Any], api_key: str | None | object = KEEP) -> bool:
        values: dict[str, Any] = {"config": config, "updated_at": utcnow()}
        if api_key is not KEEP:
            values["api_key"] = self._seal(api_key if isinstance(api_key, str) else None)
        async with self.db.connect() as connection:
            result = await connection.execute(update(providers).where(providers.c.id == config["id"]).values(**values))
            await self.db.bump(connection)
        return bool(result.rowcount)

    async def delete(self, provider_id: str) -> bool:
        async with self.db.connect() as connection:
            result = await connection.execute(delete(providers).where(providers.c.id == provider_id))
            await connection.execute(delete(provider_probes).where(provider_probes.c.provider_id == provider_id))
            await self.db.bump(connection)
        return bool(result.rowcount)

    async def save_probe(self, provider_id: str, result: dict[str, Any]) -> None:
        values = {"provider_id": provider_id, "result": result, "checked_at": utcnow()}
        insert = (postgresql.insert if not self.db.is_sqlite else sqlite.insert)(provider_probes).values(**values)
        upsert = insert.on_conflict_do_update(
            index_elements=[provider_probes.c.provider_id],
            set_={"result": insert.excluded.result, "checked_at": insert.excluded.checked_at},
        )
        async with self.db.connect() as connection:
            await connection.execute(upsert)
            await self.db.bump(connection)

    async def probes(self) -> dict[str, dict[str, Any]]:
        async with self.db.connect() as connection:
            rows = (await connection.execute(select(provider_probes))).mappings().all()
        return {row["provider_id"]: row["result"] for row in rows}
