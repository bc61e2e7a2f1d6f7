"""Providers added at runtime, their secrets encrypted, and what their last live probe found.

A provider row keeps the provider object as JSON *without* its secret-bearing fields: the key is sealed
in ``api_key``; the headers (which may carry credentials such as ``X-Api-Key``), the extra keys
(``api_keys``), ``via`` (Cloudflare AI Gateway, with its token), ``cloudflare_access`` (a Cloudflare
Access service token) and ``proxy`` (an egress proxy, with its credentials) together in ``secrets``. Reading a row
gives the whole object back, decrypted; a row whose secrets cannot be decrypted comes back with
``error`` set and none of its secrets.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from anygate.settings import ProviderConfig
from anygate.store.crypto import SecretBox, SecretKeyError
from anygate.store.database import Database
from anygate.store.tables import provider_probes, providers, utcnow

# via: a gateway in between, with its token; cloudflare_access: a service token; proxy: its credentials.
SECRET_FIELDS = ("headers", "api_keys", "via", "cloudflare_access", "proxy")


class DuplicateProvider(Exception):
    """A provider with this id is already stored."""


@dataclass(frozen=True)
class StoredProvider:
    """A provider as stored: its config (secret fields decrypted, without the key) and its key.

    ``problem`` says why its secrets could not be decrypted; then ``config`` holds none of them.
    """

    config: dict[str, Any]
    api_key: str | None
    problem: SecretKeyError | None = None

    @property
    def error(self) -> str | None:
        return self.problem.summary if self.problem is not None else None

    def __repr__(self) -> str:
        return f"StoredProvider(id={self.id!r}, has_key={self.api_key is not None}, error={self.error!r})"

    @property
    def id(self) -> str:
        return str(self.config.get("id"))

    def validated(self, **overrides: Any) -> ProviderConfig:
        """The stored object as the provider it configures (``overrides`` replace fields first): the one
        place a stored provider is validated. A row saved before a check it now fails raises pydantic's
        ``ValidationError``; each caller says what that means for it (skipped, shown as invalid, a 409)."""
        return ProviderConfig.model_validate({**self.config, **overrides})

    def readable(self) -> StoredProvider:
        """This provider, or SecretKeyError when its secrets could not be decrypted."""
        if self.problem is not None:
            message = f"the secrets of provider '{self.id}' cannot be decrypted here: {self.problem.summary}"
            raise SecretKeyError(message, key_id=self.problem.key_id)
        return self


class Keep(enum.Enum):
    """A typed sentinel: an update's key (or header, or token) given as ``KEEP`` leaves the stored one as is.
    A key argument is ``str`` (a new key), ``None`` (no key) or ``KEEP``."""

    KEEP = "keep"


KEEP = Keep.KEEP


def split_secrets(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the object without its secret-bearing fields, those fields when not empty)."""
    plain = {name: value for name, value in config.items() if name not in SECRET_FIELDS}
    secret = {name: config[name] for name in SECRET_FIELDS if config.get(name)}
    return plain, secret


class ProviderStore:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    def _seal(self, api_key: str | None) -> str | None:
        return self.box.encrypt(api_key) if api_key else None

    def _seal_fields(self, fields: dict[str, Any]) -> str | None:
        return self.box.encrypt(orjson.dumps(fields).decode()) if fields else None

    def _open_fields(self, sealed: str | None) -> dict[str, Any]:
        if not sealed:
            return {}
        fields = orjson.loads(self.box.decrypt(sealed))
        assert isinstance(fields, dict)
        return fields

    def _row(self, row: RowMapping) -> StoredProvider:
        """One row, decrypted; a secret that cannot be decrypted is reported, never guessed."""
        try:
            fields = self._open_fields(row["secrets"])
            api_key = self.box.decrypt(row["api_key"]) if row["api_key"] else None
        except SecretKeyError as exc:
            plain, _ = split_secrets(row["config"])
            return StoredProvider(plain, None, exc)
        return StoredProvider({**row["config"], **fields}, api_key)

    def _values(self, config: dict[str, Any]) -> dict[str, Any]:
        plain, secret = split_secrets(config)
        return {"config": plain, "secrets": self._seal_fields(secret)}

    async def list(self) -> list[StoredProvider]:
        async with self.db.connect() as connection:
            rows = (await connection.execute(select(providers).order_by(providers.c.created_at))).mappings().all()
        return [self._row(row) for row in rows]

    async def get(self, provider_id: str) -> StoredProvider | None:
        async with self.db.connect() as connection:
            query = select(providers).where(providers.c.id == provider_id)
            row = (await connection.execute(query)).mappings().first()
        return self._row(row) if row is not None else None

    async def create(self, config: dict[str, Any], api_key: str | None) -> None:
        now = utcnow()
        values = {"id": config["id"], **self._values(config), "api_key": self._seal(api_key)}
        try:
            async with self.db.connect() as connection:
                await connection.execute(providers.insert().values(**values, created_at=now, updated_at=now))
                await self.db.bump(connection)
        except IntegrityError:
            raise DuplicateProvider(config["id"]) from None

    async def update(self, config: dict[str, Any], api_key: str | None | Keep = KEEP) -> bool:
        """Replace the stored object with ``config`` (its secret fields included); the key unless ``KEEP``."""
        values: dict[str, Any] = {**self._values(config), "updated_at": utcnow()}
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

    async def seal_plaintext_fields(self) -> int:
        """Move headers and ``api_keys`` that rows from before migration 0003 keep in clear into ``secrets``."""
        sealed = 0
        async with self.db.connect() as connection:
            rows = (await connection.execute(select(providers))).mappings().all()
            for row in rows:
                plain, secret = split_secrets(row["config"])
                if plain == row["config"]:
                    continue
                merged = {**self._open_fields(row["secrets"]), **secret}
                values = {"config": plain, "secrets": self._seal_fields(merged)}
                await connection.execute(update(providers).where(providers.c.id == row["id"]).values(**values))
                sealed += 1
            if sealed:
                await self.db.bump(connection)
        if sealed:
            await self.db.drop_old_versions()
        return sealed

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
