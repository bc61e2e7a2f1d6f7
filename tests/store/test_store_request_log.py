"""Migration 0005 (token classes, price source and error code on the usage ledger) and the request log's
query, on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import column, inspect, table

from anygate.accounting.ledger import Ledger, UsageRow
from anygate.accounting.request_log import RequestQuery, find_request, list_requests
from anygate.settings import Settings
from anygate.store.database import Database
from anygate.store.store import open_store

NEW_COLUMNS = {
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "audio_tokens",
    "image_tokens",
    "cost_source",
    "error",
}
OLD_ROW = {
    "request_id": "before",
    "created_at": 1_764_547_200.5,
    "key_id": "key_old",
    "user_id": None,
    "route": "chat/completions",
    "provider_id": "fake",
    "model": "m",
    "input_tokens": 10,
    "output_tokens": 5,
    "estimated": False,
    "cost_usd": 0.25,
    "byok": False,
    "status": 200,
    "latency_ms": 2.0,
    "ttft_ms": None,
}


async def ledger_columns(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda sync: {c["name"] for c in inspect(sync).get_columns("usage_ledger")})


def test_0005_adds_the_columns_to_a_ledger_with_rows_and_takes_them_away_again(fresh_database_url: str) -> None:
    from alembic import command

    from anygate.store.database import SHIPPED_HEAD, alembic_config

    async def run() -> None:
        db = Database(fresh_database_url)
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0004_quota_polls"))
                old_ledger = table("usage_ledger", *(column(name) for name in OLD_ROW))  # the columns before 0005
                await conn.execute(old_ledger.insert(), [OLD_ROW])
            assert not NEW_COLUMNS & await ledger_columns(db)
            await db.upgrade()
            assert await db.current_head() == SHIPPED_HEAD  # 0005 and every migration after it
            assert await ledger_columns(db) >= NEW_COLUMNS
            before = await find_request(db.engine, "before")
            assert before is not None
            assert [before[name] for name in ("cached_input_tokens", "reasoning_tokens", "image_tokens")] == [0, 0, 0]
            assert (before["cost_usd"], before["cost_source"], before["error"]) == (0.25, None, None)
            await db.downgrade("0004_quota_polls")
            assert not NEW_COLUMNS & await ledger_columns(db)
            await db.upgrade()
            assert await find_request(db.engine, "before") is not None  # the row survived both ways
        finally:
            await db.close()

    asyncio.run(run())


def test_the_log_reads_a_keys_family_and_pages_by_keyset(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()

    async def run() -> None:
        store = await open_store(settings)
        try:
            parent, _ = await store.keys.create_key({"alias": "parent"}, "admin")
            child, _ = await store.keys.create_key({"alias": "child"}, parent.id)
            other, _ = await store.keys.create_key({"alias": "other"}, "admin")
            ledger = Ledger(store.db.engine)
            base = UsageRow(**{**OLD_ROW, "key_id": parent.id})
            written: list[tuple[str, float, str]] = [
                ("p1", 100.0, parent.id),
                ("c1", 200.0, child.id),
                ("c2", 200.0, child.id),  # the same time as c1
                ("o1", 300.0, other.id),
                ("p2", 400.0, parent.id),
            ]
            for request_id, created_at, key_id in written:
                ledger.record(
                    base._replace(
                        request_id=request_id,
                        created_at=created_at,
                        key_id=key_id,
                        cached_input_tokens=4,
                        cost_source="upstream",
                        error="upstream_timeout",
                    )
                )
            await ledger.close()  # written, and its own connection closed
            engine = store.db.engine

            async def pages(query: RequestQuery, limit: int) -> list[list[str]]:
                found: list[list[str]] = []
                cursor = None
                while True:
                    page = await list_requests(engine, query, limit, cursor)
                    found.append([r["request_id"] for r in page.records])
                    if page.next_cursor is None:
                        return found
                    cursor = page.next_cursor

            assert await pages(RequestQuery(), 2) == [["p2", "o1"], ["c2", "c1"], ["p1"]]
            assert await pages(RequestQuery(viewer=parent.id), 2) == [["p2", "c2"], ["c1", "p1"]]
            assert await pages(RequestQuery(viewer=child.id), 10) == [["c2", "c1"]]
            assert await pages(RequestQuery(viewer=child.id, key_id=parent.id), 10) == [[]]
            assert await pages(RequestQuery(since=200.0, until=400.0), 10) == [["o1", "c2", "c1"]]
            assert await find_request(engine, "o1", viewer=parent.id) is None
            record: dict[str, Any] | None = await find_request(engine, "c1", viewer=parent.id)
            assert record is not None
            assert (record["cached_input_tokens"], record["cost_source"], record["error"]) == (
                4,
                "upstream",
                "upstream_timeout",
            )
            assert record["created_at"] == "1970-01-01T00:03:20.000Z"
        finally:
            await store.close()

    asyncio.run(run())
