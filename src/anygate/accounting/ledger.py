"""The usage ledger: one row per request, written in batches off the request path.

``record`` only appends to a buffer. ``run`` (owned by AppState) writes the buffer every ``interval``
seconds or as soon as ``batch_size`` rows wait; ``close`` writes what is left, so a graceful stop
(SIGTERM) loses nothing. A failed write keeps its rows for the next attempt.

On a SQLite file the batches go through the store's ``SqliteAppender`` (the standard library's driver on a
thread of its own, many rows a statement); on PostgreSQL, and SQLite in memory, through the engine.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from anygate.store.ledger_tables import usage_ledger
from anygate.store.sqlite_appender import SqliteAppender, file_of

log = logging.getLogger("anygate.ledger")


class UsageRow(NamedTuple):
    """One request's row; a named tuple, since thousands a second are made and turned into parameters."""

    request_id: str
    created_at: float
    key_id: str
    user_id: str | None
    route: str
    provider_id: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    estimated: bool
    cost_usd: float | None
    byok: bool
    status: int
    latency_ms: float
    ttft_ms: float | None
    cached_input_tokens: int = 0  # of input_tokens: read from the prompt cache
    cache_write_tokens: int = 0  # of input_tokens: written to the prompt cache
    reasoning_tokens: int = 0  # of output_tokens (counted there once, never added to them)
    audio_tokens: int = 0  # of input_tokens and output_tokens together
    image_tokens: int = 0  # of input_tokens and output_tokens together
    cost_source: str | None = None  # upstream | configured | catalog (None: no price was used)
    error: str | None = None  # the failure's code, when the request failed
    team_id: str | None = None


CONFLICT = "ON CONFLICT (request_id) DO NOTHING"  # a request id seen twice keeps its first row


class Ledger:
    def __init__(self, engine: AsyncEngine, batch_size: int = 500, interval: float = 1.0) -> None:
        self.engine = engine
        self._batch_size = batch_size
        self._interval = interval
        self._buffer: list[UsageRow] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._insert = insert_statement(engine.dialect.paramstyle)
        path = file_of(engine.url)
        self._appender = None if path is None else SqliteAppender(path, usage_ledger.name, UsageRow._fields, CONFLICT)
        self.is_writing = True  # False while writes fail (the rows wait in the buffer)

    def record(self, row: UsageRow) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    def write_soon(self) -> None:
        """Write the buffer now rather than at the next interval (rows that must not wait)."""
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> int:
        """Write every buffered row; return how many were written."""
        async with self._lock:
            rows, self._buffer = self._buffer, []
            if not rows:
                return 0
            try:
                await self._write(rows)
            except (SQLAlchemyError, sqlite3.Error):
                log.exception("usage ledger write failed; rows kept for the next attempt")
                self._buffer[:0] = rows
                self.is_writing = False
                return 0
            self.is_writing = True
            return len(rows)

    async def _write(self, rows: Sequence[UsageRow]) -> None:
        if self._appender is not None:
            await self._appender.append(rows)
            return
        # The rows go to the driver as they are (tuples in column order): no statement compiled and no
        # parameters processed per row, which at thousands of rows a second is most of a write's cost.
        async with self.engine.begin() as conn:
            for start in range(0, len(rows), 1000):
                await conn.exec_driver_sql(self._insert, list(rows[start : start + 1000]))

    async def close(self) -> None:
        await self.flush()
        if self._buffer:
            log.error("usage ledger lost rows at shutdown", extra={"fields": {"rows": len(self._buffer)}})
        if self._appender is not None:
            appender, self._appender = self._appender, None  # a write after this goes through the engine
            await appender.close()


def insert_statement(paramstyle: str) -> str:
    """The ledger's INSERT in the driver's own placeholders (``?`` for SQLite, ``$n`` for asyncpg).

    A request id seen twice (a client reusing x-request-id) keeps its first row.
    """
    columns = UsageRow._fields
    if paramstyle == "numeric_dollar":
        marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    elif paramstyle == "qmark":
        marks = ", ".join("?" for _ in columns)
    else:
        raise ValueError(f"the usage ledger cannot write through a driver with paramstyle {paramstyle!r}")
    return f"INSERT INTO {usage_ledger.name} ({', '.join(columns)}) VALUES ({marks}) {CONFLICT}"
