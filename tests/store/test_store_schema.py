"""Migrations: a fresh database migrated to head has exactly the schema the code declares."""

from __future__ import annotations

import asyncio
import sqlite3

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData

from anygate.store.database import Database
from anygate.store.tables import all_tables

OPTIONS = {"compare_type": True}


def schema_differences(url: str) -> list[object]:
    async def run() -> list[object]:
        db = Database(url)
        try:
            await db.upgrade()
            await db.upgrade()  # idempotent: a second start changes nothing
            async with db.engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync, opts=OPTIONS), all_tables())
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


def test_migrated_database_matches_the_declared_schema(fresh_database_url: str) -> None:
    assert schema_differences(fresh_database_url) == []


def test_migration_head_creates_every_table(fresh_database_url: str) -> None:
    async def head() -> str | None:
        db = Database(fresh_database_url)
        try:
            await db.upgrade()
            return await db.current_head()
        finally:
            await db.close()

    assert asyncio.run(head()) == "0004_quota_polls"
    assert created_tables(fresh_database_url) == set(all_tables().tables) | {"alembic_version"}


def test_a_database_upgraded_step_by_step_equals_a_fresh_one(fresh_database_url: str) -> None:
    """An older deployment: the store at 0001, accounting's tables made by accounting itself; then upgrade."""
    from alembic import command

    from anygate.accounting.tables import metadata as accounting_metadata
    from anygate.store.database import alembic_config

    async def older_deployment() -> None:
        db = Database(fresh_database_url)
        try:
            async with db.engine.begin() as connection:
                await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0001_initial"))
                await connection.run_sync(accounting_metadata.create_all)
        finally:
            await db.close()

    asyncio.run(older_deployment())
    assert schema_differences(fresh_database_url) == []


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "wal.db"
    schema_differences(f"sqlite:///{path}")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
