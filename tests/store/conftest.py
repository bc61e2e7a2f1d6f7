"""Fixtures for the store tests: a database per test (SQLite file or a fresh PostgreSQL database) and a
gateway served on a real loopback port."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx  # the HTTP client the openai SDK ships with
import pytest
import uvicorn
from pydantic import SecretStr

from anygate.api.app import Gateway, create_app
from anygate.settings import ProviderConfig, Settings

ADMIN_KEY = "sk-ag-test-admin-key-0123456789"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
CLEARED_PREFIXES = ("ANYGATE_", "OPENAI_", "OPENROUTER_", "OLLAMA_", "PREFERRED_PROVIDER")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES) and name != "ANYGATE_TEST_REQUIRE_SERVICES":
            monkeypatch.delenv(name)


def services_required() -> bool:
    return os.environ.get("ANYGATE_TEST_REQUIRE_SERVICES") == "1"


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


async def _admin_sql(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(f"{PG_SERVER}/test")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database, dropped afterwards."""
    if not postgres_reachable():
        if services_required():
            pytest.fail("PostgreSQL is required (ANYGATE_TEST_REQUIRE_SERVICES=1) but 127.0.0.1:5432 is not answering")
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"anygate_test_{os.getpid()}_{secrets.token_hex(4)}"
    asyncio.run(_admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        asyncio.run(_admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'anygate.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> Any:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "admin_key": SecretStr(ADMIN_KEY),
            "store_poll_interval": 0.2,
            "discovery_interval": 3600,
        }
        values.update(overrides)
        return Settings.model_validate(values)

    return build


class Served:
    """A gateway on a real loopback port, run by uvicorn in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app: Gateway = create_app(settings)
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self.error = exc

    def start(self) -> Served:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the gateway did not start: {self.error!r}")
            self.thread.join(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.socket.close()

    def client(self, key: str | None = ADMIN_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[Served] = []

    def start(settings: Settings) -> Served:
        served = Served(settings).start()
        started.append(served)
        return served

    yield start
    for served in reversed(started):
        served.stop()


def upstream_provider(provider_id: str, base_url: str, **fields: Any) -> ProviderConfig:
    return ProviderConfig.model_validate(
        {"id": provider_id, "type": "custom", "base_url": base_url, "allow_private_network": True, **fields}
    )
