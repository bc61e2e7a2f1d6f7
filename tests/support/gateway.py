"""The gateway on a real socket: ``create_app(settings)`` under uvicorn in a background thread.

with FakeUpstream.start_in_thread() as up, serve_gateway(gateway_settings(fake_provider(up))) as gw:
    with gw.sdk() as client:                     # the official SDK, closed when done
        client.chat.completions.create(...)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import openai
import uvicorn

from anygate.app import Gateway, create_app
from anygate.settings import Settings

ADMIN_KEY = "sk-ag-test-admin-key-0123456789"
PROVIDER_KEY = "sk-fake-provider-key-abcdef"
STARTUP_TIMEOUT = 15.0


def fake_provider(upstream: Any, provider_id: str = "fake", **fields: Any) -> dict[str, Any]:
    """A custom provider pointing at a FakeUpstream on loopback, with its own key. ``max_retries`` is 0
    unless given (``default_retries`` takes it out again)."""
    return {
        "id": provider_id,
        "type": "custom",
        "base_url": upstream.base_url,
        "api_key": PROVIDER_KEY,
        "allow_private_network": True,
        "max_retries": 0,
        **fields,
    }


def default_retries(provider: dict[str, Any]) -> dict[str, Any]:
    """The provider with the default ``max_retries`` (3), as a user who never set it has."""
    return {name: value for name, value in provider.items() if name != "max_retries"}


def gateway_settings(*providers: dict[str, Any], **fields: Any) -> Settings:
    """Settings for a test gateway: the admin key above, the working directory as data dir."""
    values: dict[str, Any] = {"admin_key": ADMIN_KEY, "data_dir": Path.cwd() / "data", "providers": list(providers)}
    values.update(fields)
    return Settings.model_validate(values)


@dataclass
class RunningGateway:
    app: Gateway
    server: uvicorn.Server
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str | None = ADMIN_KEY, **options: Any) -> httpx2.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        options.setdefault("timeout", 30)
        return httpx2.Client(base_url=self.url, headers=headers, **options)

    def sdk(self, key: str = ADMIN_KEY, **options: Any) -> openai.OpenAI:
        """The official SDK pointed at the gateway, its own retries off (what a test sees is what the
        gateway did). Use it as a context manager so that its connections are closed."""
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 30)
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, **options)


@contextmanager
def serve_gateway(settings: Settings) -> Iterator[RunningGateway]:
    """Run the gateway on 127.0.0.1 with an ephemeral port; stop it cleanly on exit."""
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, loop="asyncio", lifespan="on", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="gateway", daemon=True)
    thread.start()
    try:
        port = _wait_for_port(server, thread)
        yield RunningGateway(app, server, port)
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT)


def _wait_for_port(server: uvicorn.Server, thread: threading.Thread) -> int:
    done = threading.Event()
    for _ in range(int(STARTUP_TIMEOUT / 0.01)):
        if server.started:
            sockets = server.servers[0].sockets
            return int(sockets[0].getsockname()[1])
        if not thread.is_alive():
            break
        done.wait(0.01)
    raise RuntimeError("the gateway did not start")
