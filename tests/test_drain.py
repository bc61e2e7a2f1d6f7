"""Graceful drain: SIGTERM while streams are open lets them finish, then the process exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest
import yaml

from tests.support.fake_upstream import FakeUpstream

ADMIN_KEY = "sk-ag-drain-test-admin-key"
STREAMS = 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_gateway(tmp_path: Path, upstream: FakeUpstream, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    config = {
        "providers": [
            {
                "id": "fake",
                "type": "custom",
                "base_url": upstream.base_url,
                "api_key": "sk-upstream",
                "allow_private_network": True,
            }
        ]
    }
    config_path = tmp_path / "anygate.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    env = {**os.environ, "ANYGATE_ADMIN_KEY": ADMIN_KEY, "ANYGATE_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "anygate", "serve", "--config", str(config_path), "--port", str(port)]
    with (tmp_path / "gateway.log").open("wb") as log:
        process = subprocess.Popen([*command, "--workers", str(workers)], env=env, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx2.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"gateway did not start: {(tmp_path / 'gateway.log').read_text()}")


def open_stream(url: str, results: list[bytes], started: threading.Semaphore) -> None:
    body = {"model": "fake/fake-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with (
        httpx2.Client(timeout=30) as client,
        client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as response,
    ):
        chunks = response.iter_bytes()
        first = next(chunks)
        started.release()
        results.append(first + b"".join(chunks))


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_during_open_streams_finishes_them_and_exits_zero(tmp_path: Path, workers: int) -> None:
    with FakeUpstream.start_in_thread(chunks=10, event_delay=0.1) as upstream:
        process, url = start_gateway(tmp_path, upstream, workers)
        try:
            results: list[bytes] = []
            started = threading.Semaphore(0)
            threads = [threading.Thread(target=open_stream, args=(url, results, started)) for _ in range(STREAMS)]
            for thread in threads:
                thread.start()
            for _ in range(STREAMS):
                assert started.acquire(timeout=20)
            process.send_signal(signal.SIGTERM)
            for thread in threads:
                thread.join(timeout=30)
            assert process.wait(timeout=40) == 0
        finally:
            if process.poll() is None:
                process.kill()
    assert len(results) == STREAMS
    assert all(result.rstrip().endswith(b"data: [DONE]") for result in results)
