"""The usage ledger writes its rows as they are, on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from anygate.accounting.ledger import Ledger, UsageRow, insert_statement
from anygate.store.database import Database
from anygate.store.ledger_tables import metadata, usage_ledger


def row(request_id: str, **changes: object) -> UsageRow:
    base = UsageRow(
        request_id=request_id,
        created_at=1_764_547_200.25,
        key_id="k_student",
        user_id=None,
        route="chat/completions",
        provider_id="fake",
        model="fake-model",
        input_tokens=12,
        output_tokens=30,
        estimated=False,
        cost_usd=None,
        byok=True,
        status=200,
        latency_ms=1.5,
        ttft_ms=None,
    )
    return base._replace(**changes)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        made = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
        async with made.begin() as conn:
            await conn.run_sync(metadata.create_all)
    else:
        made = create_async_engine(request.getfixturevalue("postgres_url"))
        async with made.begin() as conn:
            await conn.execute(usage_ledger.delete())
    yield made
    await made.dispose()


def test_the_row_has_the_tables_columns_in_their_order() -> None:
    assert UsageRow._fields == tuple(column.name for column in usage_ledger.columns)


def test_an_unknown_placeholder_style_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'pyformat'"):
        insert_statement("pyformat")


async def test_rows_are_stored_as_recorded_and_a_repeated_request_id_keeps_its_first_row(engine: AsyncEngine) -> None:
    ledger = Ledger(engine)
    written = [
        row("r1"),
        row("r2", user_id="u_1", cost_usd=0.00042, estimated=True, byok=False, ttft_ms=0.8, status=499),
        row("r1", status=500),  # the same x-request-id again
    ]
    for each in written:
        ledger.record(each)
    assert await ledger.flush() == 3
    await ledger.close()
    async with engine.connect() as conn:
        stored = (await conn.execute(select(usage_ledger).order_by(usage_ledger.c.request_id))).all()
    assert [UsageRow(*values) for values in stored] == written[:2]


async def test_a_batch_larger_than_one_statement_is_written_whole(engine: AsyncEngine) -> None:
    ledger = Ledger(engine)
    for n in range(2500):
        ledger.record(row(f"bulk-{n:05d}"))
    await ledger.close()
    async with engine.connect() as conn:
        stored = (await conn.execute(select(usage_ledger.c.request_id))).scalars().all()
    assert sorted(stored) == [f"bulk-{n:05d}" for n in range(2500)]


async def test_a_write_that_fails_keeps_its_rows_for_the_next(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger(engine)
    try:
        for n in range(3):
            ledger.record(row(f"kept-{n}"))
        assert await ledger.flush() == 0  # no table yet: the write fails
        assert (ledger.pending, ledger.is_writing) == (3, False)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        ledger.record(row("kept-3"))
        assert await ledger.flush() == 4
        assert (ledger.pending, ledger.is_writing) == (0, True)
        async with engine.connect() as conn:
            stored = (await conn.execute(select(usage_ledger.c.request_id))).scalars().all()
        assert sorted(stored) == [f"kept-{n}" for n in range(4)]
    finally:
        await ledger.close()
        await engine.dispose()


async def test_a_ledger_closed_still_writes_what_it_is_given(engine: AsyncEngine) -> None:
    ledger = Ledger(engine)
    ledger.record(row("before"))
    await ledger.close()
    ledger.record(row("late"))
    assert await ledger.flush() == 1
    async with engine.connect() as conn:
        stored = (await conn.execute(select(usage_ledger.c.request_id))).scalars().all()
    assert sorted(stored) == ["before", "late"]


async def test_a_ledger_made_by_the_store_writes_through_its_own_connection(tmp_path: Path) -> None:
    """The store's engine (its pragmas, its 0600 file) with the appender beside it; a batch of several
    statements' worth, with a request id twice inside one statement."""
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        ledger = Ledger(database.engine)
        rows = [row(f"s-{n:04d}") for n in range(100)]
        rows.insert(2, row("s-0001", status=500))  # the same id again, in the batch's first statement
        for each in rows:
            ledger.record(each)
        await ledger.close()
        async with database.engine.connect() as conn:
            stored = (await conn.execute(select(usage_ledger.c.request_id, usage_ledger.c.status))).all()
        assert sorted(stored) == [(f"s-{n:04d}", 200) for n in range(100)]
        assert stat.S_IMODE((tmp_path / "store.db").stat().st_mode) == 0o600
    finally:
        await database.close()
