"""Real PostgreSQL and Redis for the limiter and ledger tests: a database and a key prefix per session.

Absent services skip these tests with the reason, unless ANYGATE_TEST_REQUIRE_SERVICES=1 (CI), where
they fail.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import pytest
import redis
from sqlalchemy.ext.asyncio import create_async_engine

from anygate.store.ledger_tables import metadata

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
# A database number of its own: gateways under test use anygate's default key prefix, never in db 0.
REDIS = "redis://127.0.0.1:6379/13"
# Every limiter backend, for tests that run on each (PostgreSQL and Redis are services).
LIMITER_BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.services),
    pytest.param("redis", marks=pytest.mark.services),
]


def run_sync(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion from sync code, even when an event loop runs in this thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def unavailable(reason: str) -> None:
    if os.environ.get("ANYGATE_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (ANYGATE_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this session, dropped at the end; its asyncpg SQLAlchemy URL."""
    name = f"anygate_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES, timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        run_sync(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({type(exc).__name__})")
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"

    async def create_tables() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        await engine.dispose()

    run_sync(create_tables())
    yield url
    run_sync(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    prefix = f"anygate-test-{uuid.uuid4().hex[:12]}:"
    client = redis.Redis.from_url(REDIS, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at 127.0.0.1:6379 ({type(exc).__name__})")
    yield prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()
