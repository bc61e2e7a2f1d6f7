"""Rows appended to a table in a SQLite database file through the standard library's driver, on a thread of
their own: how the usage ledger writes its batches (thousands of rows a second) on SQLite.

Through SQLAlchemy's aiosqlite driver a batch costs a pooled connection's checkout, ``BEGIN``, ``COMMIT``
and check-in, each a hop to aiosqlite's thread and back (~0.8 ms a batch), and ``executemany`` lets go
of the GIL and takes it back once a row: while the event loop is busy, a switch of thread a row. Here a
batch is one hop, and its rows go in by statements of many rows each: one release of the GIL a statement.
Measured on the request path (admin key, 16 connections): ~7 µs of CPU a request less (docs/benchmarks.md).

The connection is the appender's own, opened on its thread with the store's pragmas; SQLite's write-ahead
log lets the store's other connections read meanwhile, and a writer in another worker waits its turn
(``busy_timeout``). A database in memory has no file to open twice: the ledger writes it through the
engine (``file_of``).
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy.engine import URL

from anygate.store.database import sqlite_pragmas

# SQLite before 3.32 allows 999 parameters a statement (32,766 since): a statement's rows stay within it.
MAX_PARAMETERS = 999
SMALLER_STATEMENTS = (8, 1)  # the rest of a batch, so that few statements are ever prepared


def file_of(url: URL) -> Path | None:
    """The database file a SQLite URL names; None for another database, or one in memory or given as a URI."""
    if url.get_backend_name() != "sqlite" or url.query:
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


class SqliteAppender:
    """``append(rows)`` inserts a batch in one transaction, each row a tuple in ``columns``' order."""

    def __init__(self, path: Path, table: str, columns: Sequence[str], on_conflict: str = "") -> None:
        self._path = path.absolute()  # as the engine opens it (SQLAlchemy makes the path absolute)
        most = max(1, MAX_PARAMETERS // len(columns))
        self._sizes = (most, *(size for size in SMALLER_STATEMENTS if size < most))
        one_row = "(" + ", ".join("?" * len(columns)) + ")"
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        tail = f" {on_conflict}" if on_conflict else ""
        self._statements = {size: head + ", ".join([one_row] * size) + tail for size in self._sizes}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anygate-sqlite-appender")
        self._connection: sqlite3.Connection | None = None  # opened, used and closed on the thread only

    def __repr__(self) -> str:
        return f"SqliteAppender({str(self._path)!r})"

    async def append(self, rows: Sequence[tuple[object, ...]]) -> None:
        """Raises ``sqlite3.Error`` when the batch could not be written (none of it is, then: its transaction
        is rolled back, and the connection closed, to be opened again by the next batch)."""
        if rows:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._insert, rows)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=False)

    def _insert(self, rows: Sequence[tuple[object, ...]]) -> None:
        try:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
            start = 0
            while start < len(rows):
                size = next(size for size in self._sizes if size <= len(rows) - start)
                chunk = rows[start : start + size]
                connection.execute(self._statements[size], list(itertools.chain.from_iterable(chunk)))
                start += size
            connection.execute("COMMIT")
        except BaseException:
            # A COMMIT that fails can leave its transaction open (a busy database, a deferred constraint), and
            # with it the write lock: closing rolls back whatever is open, and the next batch opens afresh.
            self._close()
            raise

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            # mode=rw: the store made the file (mode 0600); one that is gone is an error, never a new file.
            # isolation_level=None: the driver begins and ends no transaction of its own; _insert says where.
            connection = sqlite3.connect(f"{self._path.as_uri()}?mode=rw", uri=True, isolation_level=None)
            try:
                sqlite_pragmas(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
