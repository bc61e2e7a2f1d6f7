"""The gateway on a real loopback port (uvicorn in a thread), for tests that call it over HTTP."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from anygate.accounting.budgets import BudgetSource
from anygate.app import Gateway, create_app
from anygate.auth import Principal, hash_key
from anygate.settings import ProviderConfig, Settings
from tests.support.waiting import eventually

ADMIN_KEY = "sk-ag-admin-test-key-000000000000"

__all__ = ["ADMIN_KEY", "eventually", "fake_provider_settings", "running_gateway"]


def fake_provider_settings(base_url: str, data_dir: Path, **extra: Any) -> Settings:
    provider = ProviderConfig(
        id="fake",
        type="custom",
        base_url=base_url,
        allow_private_network=True,
        models=["fake-model"],
        max_retries=0,
        api_key="sk-upstream-test",
    )
    return Settings(providers=[provider], data_dir=data_dir, admin_key=ADMIN_KEY, **extra)


@contextmanager
def running_gateway(
    settings: Settings,
    keys: dict[str, Principal] | None = None,
    budget_source: BudgetSource | None = None,
) -> Iterator[tuple[str, Gateway]]:
    """Serve ``settings`` on 127.0.0.1; ``keys`` maps secret → Principal; yields (base URL, gateway)."""
    gateway = create_app(settings)
    gateway.budget_source = budget_source
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(gateway, log_config=None, access_log=False, lifespan="on", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    for secret, principal in (keys or {}).items():
        gateway.state.keyring.add(hash_key(secret), principal)
    try:
        yield f"http://127.0.0.1:{port}", gateway
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
