"""Migrations: a fresh database migrated to head has exactly the schema the code declares."""

from __future__ import annotations

import asyncio
import sqlite3

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData

from anygate.store.database import Database
from anygate.store.tables import metadata

OPTIONS = {"compare_type": True}


def schema_differences(url: str) -> list[object]:
    async def run() -> list[object]:
        db = Database(url)
        try:
            await db.upgrade()
            await db.upgrade()  # idempotent: a second start changes nothing
            async with db.engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync, opts=OPTIONS), metadata)
                )
        finally:
            await db.close()

    return asyncio.run(run())


def created_tables(url: str) -> set[str]:
    async def run() -> set[str]:
        db = Database(url)
        try:
            await db.upgrade()
            async with db.engine.connect() as connection:
                reflected = MetaData()
                await connection.run_sync(reflected.reflect)
                return set(reflected.tables)
        finally:
            await db.close()

    return asyncio.run(run())


def test_migrated_database_matches_the_declared_schema(database_url: str) -> None:
    assert schema_differences(database_url) == []


def test_migration_head_is_0001_initial_and_creates_every_table(database_url: str) -> None:
    async def head() -> str | None:
        db = Database(database_url)
        try:
            await db.upgrade()
            return await db.current_head()
        finally:
            await db.close()

    assert asyncio.run(head()) == "0001_initial"
    assert created_tables(database_url) == set(metadata.tables) | {"alembic_version"}


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "wal.db"
    schema_differences(f"sqlite:///{path}")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
