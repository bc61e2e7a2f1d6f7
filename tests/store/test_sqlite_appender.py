"""The SQLite appender: a batch goes in whole, in statements of many rows, or not at all."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from anygate.store.sqlite_appender import SqliteAppender, file_of

COLUMNS = ("id", "at", "note")


@pytest.fixture
async def appender(tmp_path: Path) -> AsyncIterator[SqliteAppender]:
    path = tmp_path / "rows.db"
    with sqlite3.connect(path) as made:
        made.execute("PRAGMA journal_mode=WAL")  # as the store's engine leaves its file
        made.execute("CREATE TABLE items (id TEXT PRIMARY KEY, at REAL NOT NULL, note TEXT)")
    made.close()
    appending = SqliteAppender(path, "items", COLUMNS, "ON CONFLICT (id) DO NOTHING")
    yield appending
    await appending.close()


def stored(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as reading:
        rows = reading.execute("SELECT id, at, note FROM items ORDER BY rowid").fetchall()
    reading.close()
    return rows


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite+aiosqlite:////var/lib/anygate/anygate.db", Path("/var/lib/anygate/anygate.db")),
        ("sqlite+aiosqlite:///relative.db", Path("relative.db")),
        ("sqlite+aiosqlite://", None),
        ("sqlite+aiosqlite:///:memory:", None),
        ("sqlite+aiosqlite:///file:shared?mode=memory&cache=shared&uri=true", None),
        ("postgresql+asyncpg://anygate@127.0.0.1:5432/test", None),
    ],
)
def test_only_a_database_file_is_appended_to_directly(url: str, expected: Path | None) -> None:
    assert file_of(make_url(url)) == expected


@pytest.mark.parametrize("count", [1, 7, 8, 9, 333, 1000])
async def test_every_row_of_a_batch_is_written_in_order(appender: SqliteAppender, tmp_path: Path, count: int) -> None:
    rows = [(f"r{n:05d}", float(n), None if n % 3 else f"note {n}") for n in range(count)]
    await appender.append(rows)
    assert stored(tmp_path / "rows.db") == rows


async def test_a_row_seen_again_keeps_the_first(appender: SqliteAppender, tmp_path: Path) -> None:
    batch: list[tuple[object, ...]] = [(f"r{n}", float(n), None) for n in range(10)]
    batch.insert(3, ("r1", 99.0, "again"))  # in the batch's first statement, beside the first r1
    await appender.append(batch)
    await appender.append([("r2", 4.0, "again")])
    assert stored(tmp_path / "rows.db") == [(f"r{n}", float(n), None) for n in range(10)]


async def test_a_batch_that_fails_midway_leaves_none_of_its_rows(appender: SqliteAppender, tmp_path: Path) -> None:
    rows: list[tuple[object, ...]] = [(f"r{n}", float(n), None) for n in range(1000)]
    rows[400] = ("bad", None, None)  # NOT NULL: the batch's second statement (333 rows each) fails
    with pytest.raises(sqlite3.IntegrityError):
        await appender.append(rows)
    assert stored(tmp_path / "rows.db") == []
    await appender.append([("after", 1.0, None)])  # the appender goes on
    assert stored(tmp_path / "rows.db") == [("after", 1.0, None)]


async def test_a_commit_that_fails_leaves_no_transaction_open(tmp_path: Path) -> None:
    """A deferred constraint fails at COMMIT, and SQLite then keeps the transaction (and the write lock) open:
    the appender must not, or every later batch, its own and every other writer's, would fail."""
    path = tmp_path / "deferred.db"
    with sqlite3.connect(path) as made:
        made.execute("CREATE TABLE owners (id TEXT PRIMARY KEY)")
        made.execute(
            "CREATE TABLE items (id TEXT PRIMARY KEY, at REAL NOT NULL, "
            "note TEXT REFERENCES owners (id) DEFERRABLE INITIALLY DEFERRED)"
        )
    made.close()
    appender = SqliteAppender(path, "items", COLUMNS)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            await appender.append([("a", 1.0, "nobody")])  # foreign_keys=ON is one of the store's pragmas
        other = sqlite3.connect(path, timeout=0)
        other.execute("BEGIN IMMEDIATE")  # the write lock is free
        other.execute("ROLLBACK")
        other.close()
        await appender.append([("b", 2.0, None)])
        assert [row[0] for row in stored(path)] == ["b"]
    finally:
        await appender.close()


async def test_a_writer_holding_the_lock_a_moment_is_waited_for(appender: SqliteAppender, tmp_path: Path) -> None:
    holder = sqlite3.connect(tmp_path / "rows.db", check_same_thread=False, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO items VALUES ('held', 0.0, NULL)")
    writing = asyncio.ensure_future(appender.append([("waited", 1.0, None)]))
    await asyncio.sleep(0.2)  # the appender is blocked on the lock, not failed (busy_timeout)
    assert not writing.done()
    holder.execute("COMMIT")
    holder.close()
    await writing
    assert [row[0] for row in stored(tmp_path / "rows.db")] == ["held", "waited"]


async def test_a_database_file_that_is_gone_is_not_made_again(tmp_path: Path) -> None:
    """The store makes its file private (0600); the appender only ever opens one that is there."""
    missing = tmp_path / "gone.db"
    appender = SqliteAppender(missing, "items", COLUMNS)
    try:
        with pytest.raises(sqlite3.OperationalError):
            await appender.append([("a", 1.0, None)])
        assert not missing.exists()
    finally:
        await appender.close()


async def test_a_relative_path_names_the_file_from_where_the_gateway_runs(
    appender: SqliteAppender, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = SqliteAppender(Path("rows.db"), "items", COLUMNS)
    try:
        await relative.append([("a", 1.0, None)])
    finally:
        await relative.close()
    assert stored(tmp_path / "rows.db") == [("a", 1.0, None)]
