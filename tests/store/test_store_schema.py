"""Migrations: a fresh database migrated to head has exactly the schema the code declares."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import sys

import pytest
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


def script_head() -> str:
    """The newest migration shipped in the package."""
    from alembic.script import ScriptDirectory

    from anygate.store.database import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_the_shipped_head_is_alembics_head() -> None:
    """A new migration must move SHIPPED_HEAD too, or databases would be opened without it."""
    from anygate.store.database import SHIPPED_HEAD

    assert script_head() == SHIPPED_HEAD


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

    assert asyncio.run(head()) == script_head()
    assert created_tables(fresh_database_url) == set(all_tables().tables) | {"alembic_version"}


def test_a_database_upgraded_step_by_step_equals_a_fresh_one(fresh_database_url: str) -> None:
    """An older deployment: the store at 0001, accounting's tables made by accounting itself; then upgrade."""
    from alembic import command

    from anygate.store.database import alembic_config
    from anygate.store.ledger_tables import metadata as accounting_metadata

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


@pytest.mark.sockets  # a process of its own
def test_a_database_already_at_the_head_is_opened_without_alembic(fresh_database_url: str) -> None:
    """Alembic stays out of a server whose database needs no migration (it would stay in memory)."""
    script = """
import asyncio, sys
from anygate.store.database import Database

async def open_store(url):
    db = Database(url)
    await db.upgrade()
    await db.close()

asyncio.run(open_store(sys.argv[1]))
print("alembic loaded" if "alembic" in sys.modules else "alembic not loaded")
"""

    def open_in_a_new_process() -> str:
        done = subprocess.run([sys.executable, "-c", script, fresh_database_url], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert open_in_a_new_process() == "alembic loaded"  # a new database: migrated
    assert open_in_a_new_process() == "alembic not loaded"  # at the head already


def test_the_ledgers_user_and_team_indexes_hold_only_rows_with_one_and_serve_lookups(fresh_database_url: str) -> None:
    """Migration 0008: a row with no user or team costs those indexes nothing, and a lookup of a given user
    or team still reads its index (both databases infer ``user_id IS NOT NULL`` from ``user_id = ?``)."""
    from sqlalchemy import text

    async def inspect() -> tuple[dict[str, str], list[str]]:
        db = Database(fresh_database_url)
        try:
            await db.upgrade()
            async with db.engine.connect() as connection:
                if db.dialect == "sqlite":
                    found = await connection.execute(
                        text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'usage_ledger'")
                    )
                    plans = [
                        " ".join(str(row[-1]) for row in await connection.execute(text(f"EXPLAIN QUERY PLAN {query}")))
                        for query in (
                            "SELECT sum(input_tokens) FROM usage_ledger WHERE user_id = 'u1' AND created_at >= 0",
                            "SELECT sum(input_tokens) FROM usage_ledger WHERE team_id = 't1' AND created_at >= 0",
                        )
                    ]
                else:
                    found = await connection.execute(
                        text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'usage_ledger'")
                    )
                    plans = []
                return {str(name): str(definition) for name, definition in found}, plans
        finally:
            await db.close()

    definitions, plans = asyncio.run(inspect())
    for name, column in (("ix_usage_ledger_user_time", "user_id"), ("ix_usage_ledger_team_time", "team_id")):
        assert re.search(rf"WHERE \(?{column} IS NOT NULL\)?", definitions[name]), definitions[name]
    assert "WHERE" not in definitions["ix_usage_ledger_key_time"] and "WHERE" not in definitions["ix_usage_ledger_time"]
    if plans:  # SQLite: each lookup searches its partial index
        assert "ix_usage_ledger_user_time" in plans[0] and "ix_usage_ledger_team_time" in plans[1], plans
