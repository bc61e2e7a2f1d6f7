"""The store as the rest of anygate sees it: open it (migrate, load and check the secret key), reach its
repositories, and rotate the secret key.

    store = await open_store(settings)       # raises StoreUnavailable or SecretKeyError with a clear message
    store.providers / store.keys / store.credentials / store.signins / store.teams / store.audit
    store.db.engine                          # an AsyncEngine, for other subsystems' own tables
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update

from anygate.settings import Settings
from anygate.store.audit import AuditLog
from anygate.store.credentials import CredentialStore
from anygate.store.crypto import (
    KEY_FILE,
    SecretBox,
    SecretKeyError,
    generate_key,
    load_secret_box,
    read_key_file,
    write_key_file,
)
from anygate.store.database import Database
from anygate.store.keys import KeyStore
from anygate.store.providers import ProviderStore
from anygate.store.signins import SigninStore
from anygate.store.tables import credentials, providers
from anygate.store.teams import TeamStore

# (table, primary key columns, encrypted column)
ENCRYPTED = (
    (providers, ("id",), "api_key"),
    (providers, ("id",), "secrets"),
    (credentials, ("owner_id", "provider_id"), "secret"),
)


@dataclass
class Store:
    db: Database
    box: SecretBox
    providers: ProviderStore
    keys: KeyStore
    credentials: CredentialStore
    signins: SigninStore
    teams: TeamStore
    audit: AuditLog

    @classmethod
    def build(cls, db: Database, box: SecretBox) -> Store:
        return cls(
            db,
            box,
            ProviderStore(db, box),
            KeyStore(db),
            CredentialStore(db, box),
            SigninStore(db),
            TeamStore(db),
            AuditLog(db),
        )

    async def close(self) -> None:
        await self.db.close()


async def encrypted_values(db: Database) -> list[str]:
    values: list[str] = []
    async with db.connect() as connection:
        for table, _, column in ENCRYPTED:
            rows = await connection.execute(select(table.c[column]).where(table.c[column].is_not(None)))
            values.extend(value for (value,) in rows)
    return values


async def open_store(settings: Settings, migrate: bool = True) -> Store:
    """Open the database, apply migrations, make sure every stored secret decrypts, and encrypt the
    provider headers and extra keys that rows from before migration 0003 hold in clear."""
    db = Database(settings.resolved_database_url)
    try:
        if migrate:
            await db.upgrade()
        sealed = await encrypted_values(db)
        secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
        box = load_secret_box(secret_key, settings.data_dir, may_create=not sealed)
        for value in sealed:
            box.decrypt(value)
        store = Store.build(db, box)
        await store.providers.seal_plaintext_fields()
    except BaseException:
        await db.close()
        raise
    return store


async def rotate_secrets(store: Store, settings: Settings, new_key: str | None) -> tuple[str, int]:
    """Re-encrypt every stored secret under a new key; return the new key id and how many were re-encrypted.

    With the key file, the new key goes first in the file and the old ones stay, so running workers
    (which reread the file when they meet an unknown key id) keep decrypting. With ANYGATE_SECRET_KEY,
    ``new_key`` must be given, and workers need ``ANYGATE_SECRET_KEY=<old>,<new>`` meanwhile.
    """
    key_file: Path | None = None
    if settings.secret_key is not None:
        if not new_key:
            raise SecretKeyError("ANYGATE_SECRET_KEY is set: give the new key on stdin with --new-key-stdin")
        texts = [new_key, *settings.secret_key.get_secret_value().split(",")]
        source = "ANYGATE_SECRET_KEY and --new-key"
    else:
        key_file = settings.data_dir / KEY_FILE
        texts = [new_key or generate_key(), *(read_key_file(key_file) if key_file.is_file() else [])]
        write_key_file(key_file, texts)
        source = str(key_file)
    box = SecretBox.from_texts(texts, source, key_file)
    count = 0
    async with store.db.connect() as connection:
        for table, key_columns, column in ENCRYPTED:
            rows = (await connection.execute(select(table).where(table.c[column].is_not(None)))).mappings().all()
            for row in rows:
                if box.needs_rotation(row[column]):
                    where = [table.c[name] == row[name] for name in key_columns]
                    fresh = box.encrypt(box.decrypt(row[column]))
                    await connection.execute(update(table).where(*where).values({column: fresh}))
                    count += 1
        await store.db.bump(connection)
    store.box.keys.update(box.keys)
    store.box.current = box.current
    return box.current, count
