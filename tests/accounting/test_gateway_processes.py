"""Gateway processes: 4 workers on PostgreSQL, 2 replicas on Redis + PostgreSQL, and a SIGTERM that loses nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from tests.accounting.conftest import REDIS
from tests.accounting.gateway import ADMIN_KEY
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.tokens import estimate_prompt

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "hi"}]
BODY = {"model": "fake/fake-model", "messages": MESSAGES, "max_tokens": 20}
ASK = estimate_prompt({"messages": MESSAGES}) + 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread(usage=Usage(ASK - 20, 20)) as up:
        yield up


def gateway_env(upstream: FakeUpstream, tmp_path: Path, keys: dict[str, Any], **env: str) -> dict[str, str]:
    config = tmp_path / "anygate.yaml"
    provider = {
        "id": "fake",
        "type": "custom",
        "base_url": upstream.base_url,
        "api_key": "sk-upstream",
        "allow_private_network": True,
        "models": ["fake-model"],
        "max_retries": 0,
    }
    config.write_text(json.dumps({"providers": [provider]}))
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "ANYGATE_CONFIG": str(config),
        "ANYGATE_DATA_DIR": str(tmp_path / "data"),
        "ANYGATE_ADMIN_KEY": ADMIN_KEY,
        "ANYGATE_LOG_LEVEL": "warning",
        "ANYGATE_TEST_KEYS": json.dumps(keys),
        **env,
    }


@contextmanager
def gateway_process(env: dict[str, str], workers: int = 1) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log = open(Path(env["HOME"]) / f"gateway-{port}.log", "wb")  # noqa: SIM115 - closed below
    server = {"ANYGATE_HOST": "127.0.0.1", "ANYGATE_PORT": str(port), "ANYGATE_WORKERS": str(workers)}
    server["ANYGATE_DRAIN_GRACE"] = "20"
    command = [sys.executable, "-m", "tests.accounting.budget_app"]  # served as `anygate serve` does
    process = subprocess.Popen(command, env={**env, **server}, cwd=ROOT, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, process)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        log.close()


def wait_until_healthy(base: str, process: subprocess.Popen[bytes]) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("gateway exited before it was healthy")
        try:
            with urllib.request.urlopen(base + "/health", timeout=1) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError("gateway did not become healthy")


async def burst(targets: list[str], key: str, count: int) -> list[int]:
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def one(index: int) -> int:
            url = targets[index % len(targets)] + "/v1/chat/completions"
            async with session.post(url, json=BODY, headers=headers) as reply:
                await reply.read()
                return reply.status

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def budget_keys(secret: str, key_id: str) -> dict[str, Any]:
    return {secret: {"id": key_id, "budget": {"tokens": 50 * ASK, "period": "daily"}}}


@pytest.mark.services
def test_four_workers_on_postgresql_admit_exactly_the_budget(
    upstream: FakeUpstream, tmp_path: Path, postgres_url: str
) -> None:
    secret, key_id = "sk-ag-" + uuid.uuid4().hex, "k" + uuid.uuid4().hex[:8]
    database = postgres_url.replace("+asyncpg", "")
    env = gateway_env(upstream, tmp_path, budget_keys(secret, key_id), ANYGATE_DATABASE_URL=database)
    env["ANYGATE_LIMITER"] = "sql"
    with gateway_process(env, workers=4) as (base, _):
        statuses = asyncio.run(burst([base], secret, 200))
    assert statuses.count(200) == 50, statuses
    assert statuses.count(429) == 150
    assert len(upstream.requests_to("/v1/chat/completions")) == 50


@pytest.mark.services
def test_two_gateways_sharing_redis_and_postgresql_admit_exactly_the_budget(
    upstream: FakeUpstream, tmp_path: Path, postgres_url: str, redis_prefix: str
) -> None:
    secret, key_id = "sk-ag-" + uuid.uuid4().hex, "k" + uuid.uuid4().hex[:8]
    database = postgres_url.replace("+asyncpg", "")
    env = gateway_env(upstream, tmp_path, budget_keys(secret, key_id), ANYGATE_DATABASE_URL=database)
    env["ANYGATE_REDIS_URL"] = REDIS
    try:
        with ExitStack() as stack:
            bases = [stack.enter_context(gateway_process(env))[0] for _ in range(2)]
            statuses = asyncio.run(burst(bases, secret, 200))
    finally:
        client = redis.Redis.from_url(REDIS)
        for name in client.scan_iter(match=f"anygate:{{budget:key:{key_id}:*"):
            client.delete(name)
        client.close()
    assert statuses.count(200) == 50, statuses
    assert statuses.count(429) == 150
    assert len(upstream.requests_to("/v1/chat/completions")) == 50


@pytest.mark.sockets
def test_sigterm_flushes_every_ledger_row(upstream: FakeUpstream, tmp_path: Path) -> None:
    secret = "sk-ag-" + uuid.uuid4().hex
    env = gateway_env(upstream, tmp_path, {secret: {"id": "student"}}, ANYGATE_TEST_LEDGER_INTERVAL="3600")
    with gateway_process(env) as (base, process):
        statuses = asyncio.run(burst([base], secret, 25))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0  # drained, flushed, and a clean exit
    assert statuses == [200] * 25
    with sqlite3.connect(tmp_path / "data" / "anygate.db") as db:
        rows = db.execute("select count(*), sum(input_tokens + output_tokens) from usage_ledger").fetchone()
    assert rows == (25, 25 * ASK)
