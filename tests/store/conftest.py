"""Fixtures for the store tests: a database per test (a SQLite file, or a fresh PostgreSQL database that
is dropped afterwards) and gateways in-process, their upstreams in memory (on loopback ports where a test
needs a socket)."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from anygate.settings import Settings
from anygate.store.store import open_store
from tests.support.fake_transport import FakeNetwork
from tests.support.gateway import ADMIN_KEY, RunningGateway, serve_gateway
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.support.waiting import eventually

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
# Read at import: the shared autouse fixture clears ANYGATE_* before each test.
SERVICES_REQUIRED = os.environ.get("ANYGATE_TEST_REQUIRE_SERVICES") == "1"

__all__ = ["ADMIN_KEY", "PG_SERVER", "eventually"]


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    if postgres_reachable():
        return
    if SERVICES_REQUIRED:
        pytest.fail("PostgreSQL is required (ANYGATE_TEST_REQUIRE_SERVICES=1) but 127.0.0.1:5432 does not answer")
    pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")


async def run_sql(database: str, statement: str, *args: Any) -> list[Any]:
    import asyncpg

    connection = await asyncpg.connect(f"{PG_SERVER}/{database}")
    try:
        return list(await connection.fetch(statement, *args))
    finally:
        await connection.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database, dropped afterwards (parallel runs never collide)."""
    require_postgres()
    name = f"anygate_test_{os.getpid()}_{secrets.token_hex(4)}"
    asyncio.run(run_sql("test", f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        asyncio.run(run_sql("test", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def session_postgres() -> Iterator[str]:
    with postgres_database() as url:
        yield url


async def empty_tables(url: str) -> None:
    """Every table emptied (the schema and the revision counter stay), so each test starts clean."""
    database = url.rsplit("/", 1)[1]
    rows = await run_sql(
        database,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename NOT IN ('alembic_version', 'store_revision')",
    )
    if rows:
        await run_sql(database, "TRUNCATE " + ", ".join(f'"{row[0]}"' for row in rows) + " CASCADE")


# The PostgreSQL half of every store test is in the services tier (tests/support/tiers.py).
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite: a new file per test. PostgreSQL: one database per session, emptied before each test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'anygate.db'}"
    else:
        url = request.getfixturevalue("session_postgres")
        asyncio.run(empty_tables(url))
        yield url


@pytest.fixture(params=BACKENDS)
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nothing has touched yet (PostgreSQL: created for this test alone)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "admin_key": ADMIN_KEY,
            "store_poll_interval": 0.2,
            "discovery_interval": 3600,
        }
        values.update(overrides)
        return Settings.model_validate(values)

    return build


@pytest.fixture
def network() -> FakeNetwork:
    """The in-memory upstreams the test's gateways reach: ``up = network.add(FakeUpstream(...))``."""
    return FakeNetwork()


@pytest.fixture
def serve(network: FakeNetwork) -> Iterator[Callable[[Settings], InProcessGateway]]:
    """Start gateways in-process, their upstreams in ``network`` (several gateways may share one
    database, like replicas); all stop after the test."""
    with ExitStack() as stack:
        yield lambda settings: stack.enter_context(inprocess_gateway(settings, transport=network))


@pytest.fixture
def serve_on_socket() -> Iterator[Callable[[Settings], RunningGateway]]:
    """Start gateways on loopback ports (for a test in the sockets tier: a CLI that reads the running
    gateway, a process of its own); all stop after the test."""
    with ExitStack() as stack:
        yield lambda settings: stack.enter_context(serve_gateway(settings))


def upstream_provider(provider_id: str, base_url: str, **fields: Any) -> dict[str, Any]:
    return {"id": provider_id, "type": "custom", "base_url": base_url, "allow_private_network": True, **fields}


def campus_gateway(
    base_url: str, make_settings: Callable[..., Settings], serve: Callable[[Settings], InProcessGateway]
) -> InProcessGateway:
    """A gateway with one provider, ``campus``, with the operator's key and a price of $0: keys with hard USD
    budgets refuse a model without a price (``price_unknown``)."""
    provider = upstream_provider("campus", base_url, api_key="sk-upstream-key-xyz")
    return serve(make_settings(providers=[provider], prices={"campus/*": {"input": 0, "output": 0}}))


def require_redis() -> str:
    """The test Redis URL, or a skip (a failure under ANYGATE_TEST_REQUIRE_SERVICES=1) when it is absent."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return "redis://127.0.0.1:6379/0"
    except OSError:
        if SERVICES_REQUIRED:
            pytest.fail("Redis is required (ANYGATE_TEST_REQUIRE_SERVICES=1) but 127.0.0.1:6379 does not answer")
        pytest.skip("Redis is not running on 127.0.0.1:6379")


def store_directly(settings: Settings, spec: dict[str, Any], api_key: str | None) -> None:
    """Write a provider row without today's checks (as an older anygate, or another replica, did)."""

    async def write() -> None:
        store = await open_store(settings)
        try:
            await store.providers.create(spec, api_key)
        finally:
            await store.close()

    asyncio.run(write())
