"""The database: an async engine (SQLite in the data dir by default, PostgreSQL through asyncpg),
migrations applied at start, and the revision counter every worker polls to keep its caches fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, inspect, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from anygate.files import create_private_file
from anygate.store.tables import store_revision

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "head"
# The newest migration shipped (a test holds it to alembic's head): a database already there is opened
# without loading alembic, which costs start-up time and memory for the life of the process.
SHIPPED_HEAD = "0008_partial_ledger_indexes"
MIGRATION_LOCK = 0x616E7967  # PostgreSQL advisory lock id ("anyg")


class StoreUnavailable(Exception):
    """The database cannot be opened or migrated; the message says why (no password in it)."""


def async_url(url: str) -> str:
    """``postgresql://`` → asyncpg, ``sqlite://`` → aiosqlite; explicit drivers are kept."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    return make_url(async_url(url)).render_as_string(hide_password=True)


def sqlite_pragmas(dbapi_connection: Any, _: object = None) -> None:
    """The pragmas every connection to the store's SQLite file gets (the engine's, and the ledger's own)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")  # first: the pragmas after it may wait for another writer
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")  # overwritten secrets do not linger in free pages
    cursor.close()


class Database:
    """Owns the engine. ``connect()`` gives a transaction; ``bump(conn)`` marks a change for all workers."""

    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        options: dict[str, Any] = {"pool_pre_ping": True}
        if self.dialect == "sqlite":
            database = make_url(self.url).database
            if database and database != ":memory:":
                create_private_file(Path(database))
            options = {}
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        self._lock_handle: Any = None  # the SQLite migration lock file, while held
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", sqlite_pragmas)

    def __repr__(self) -> str:
        return f"Database({safe_url(self.url)!r})"

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        async with self.engine.begin() as connection:
            yield connection

    async def bump(self, connection: AsyncConnection) -> None:
        await connection.execute(update(store_revision).values(value=store_revision.c.value + 1))

    async def drop_old_versions(self) -> None:
        """After secrets in clear were overwritten: on SQLite, empty the write-ahead log, which still holds
        the pages as they were (``secure_delete`` zeroes the database file's free space, not the log)."""
        if self.is_sqlite:
            async with self.engine.connect() as connection:
                await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    async def revision(self) -> int:
        async with self.engine.connect() as connection:
            value = (await connection.execute(select(store_revision.c.value))).scalar_one()
        return int(value)

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            raise RuntimeError(f"store unreachable: {type(exc).__name__}") from None

    async def upgrade(self) -> None:
        """Apply every migration not yet applied; safe when many workers start at once."""
        try:
            if self.is_sqlite:
                await asyncio.to_thread(self._lock_file)
                try:
                    await self._upgrade()
                finally:
                    self._unlock_file()
            else:
                await self._upgrade()
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"cannot open or migrate the database {safe_url(self.url)}: {exc}") from exc

    async def _upgrade(self) -> None:
        async with self.engine.begin() as connection:
            if not self.is_sqlite:
                await connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            await connection.run_sync(run_migrations)

    def _lock_file(self) -> None:
        database = make_url(self.url).database
        if not database or database == ":memory:":
            return
        handle = open(Path(database).with_suffix(".migrate.lock"), "w")  # noqa: SIM115 - held until unlock
        fcntl.flock(handle, fcntl.LOCK_EX)
        self._lock_handle = handle

    def _unlock_file(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    async def current_head(self) -> str | None:
        async with self.engine.connect() as connection:
            return await connection.run_sync(current_revision)

    async def recorded(self) -> str | None:
        """The revision the database is at (None: no anygate tables yet), without migrating it."""
        try:
            async with self.engine.connect() as connection:
                return await connection.run_sync(recorded_revision)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"cannot read the database {safe_url(self.url)}: {exc}") from exc

    async def downgrade(self, revision: str) -> None:
        """Undo the migrations after ``revision`` (an id, or its unique start: ``0003``), under the same lock
        as an upgrade. The tables and columns they added go, with their data."""
        try:
            if self.is_sqlite:
                await asyncio.to_thread(self._lock_file)
            try:
                async with self.engine.begin() as connection:
                    if not self.is_sqlite:
                        await connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                    await connection.run_sync(run_downgrade, revision)
            finally:
                self._unlock_file()
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"cannot downgrade the database {safe_url(self.url)}: {exc}") from exc

    def backup(self, destination: Path) -> None:
        """A consistent copy of a SQLite database, taken while gateways keep writing to it (SQLite's online
        backup: pages are copied in steps, and a step restarts when a writer changed one it had copied).
        ``destination`` must not exist. PostgreSQL is backed up with its own tools (``pg_dump``)."""
        database = make_url(self.url).database
        if not self.is_sqlite or not database or database == ":memory:":
            raise StoreUnavailable("only a SQLite database file can be backed up by anygate: use pg_dump")
        source_path = Path(database)
        if not source_path.is_file() or source_path.stat().st_size == 0:
            raise StoreUnavailable(f"there is no database at {source_path} yet")
        if destination.exists():
            raise StoreUnavailable(f"{destination} exists already: give a path for a new file")
        create_private_file(destination)  # mode 0600: the copy holds what the database holds
        with contextlib.closing(sqlite3.connect(source_path)) as source:
            with contextlib.closing(sqlite3.connect(destination)) as copy:
                source.backup(copy, pages=1024)

    async def close(self) -> None:
        await self.engine.dispose()


async def revision_at(url: str) -> str | None:
    """The revision the database at ``url`` is at (None: no anygate tables yet), read and let go; raises
    StoreUnavailable when it cannot be read."""
    database = Database(url)
    try:
        return await database.recorded()
    finally:
        await database.close()


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def run_migrations(connection: Connection) -> None:
    if recorded_revision(connection) == SHIPPED_HEAD:
        return
    from alembic import command

    command.upgrade(alembic_config(connection), HEAD)


def run_downgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(connection), revision)


def shipped_revisions() -> list[str]:
    """Every migration this anygate ships, oldest first."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


def recorded_revision(connection: Connection) -> str | None:
    """The revision alembic recorded (None on a new database), read without alembic."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    return versions[0] if len(versions) == 1 else None


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
