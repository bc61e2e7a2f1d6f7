"""The SQLite appender: a batch goes in whole, in statements of many rows, or not at all."""

from __future__ import annotations

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
    await appender.append([("a", 1.0, "first"), ("b", 2.0, None), ("a", 3.0, "again")])
    await appender.append([("b", 4.0, "again")])
    assert stored(tmp_path / "rows.db") == [("a", 1.0, "first"), ("b", 2.0, None)]


async def test_a_batch_that_fails_midway_leaves_none_of_its_rows(appender: SqliteAppender, tmp_path: Path) -> None:
    rows: list[tuple[object, ...]] = [(f"r{n}", float(n), None) for n in range(200)]
    rows[150] = ("bad", None, None)  # NOT NULL: the third statement of the batch fails
    with pytest.raises(sqlite3.IntegrityError):
        await appender.append(rows)
    assert stored(tmp_path / "rows.db") == []
    await appender.append([("after", 1.0, None)])  # the appender goes on
    assert stored(tmp_path / "rows.db") == [("after", 1.0, None)]


async def test_its_connection_has_the_stores_pragmas(appender: SqliteAppender, tmp_path: Path) -> None:
    await appender.append([("a", 1.0, None)])
    with sqlite3.connect(tmp_path / "rows.db") as reading:
        assert reading.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reading.close()
