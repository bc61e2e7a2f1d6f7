"""A gateway that serves only model requests never imports the management app (FastAPI, its request models,
the OpenAPI document): it is made for the first request that needs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = """
import sys
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import inprocess_gateway

MANAGEMENT = ("fastapi", "anygate.api.management", "anygate.management.schemas")

def loaded():
    return sorted(name for name in MANAGEMENT if name in sys.modules)

up = FakeUpstream().in_memory()
with inprocess_gateway(gateway_settings(fake_provider(up)), up) as gw, gw.client() as client:
    for path in ("/v1/chat/completions", "/openai/v1/chat/completions"):
        answer = client.post(path, json={"model": "fake/fake-model", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200, answer.text
    print("after model requests:", loaded())
    assert client.get("/health").json() == {"status": "ok"}  # a liveness probe
    assert "anygate_requests_total" in client.get("/metrics").text  # a scrape
    with gw.client(None) as anonymous:  # a readiness probe
        ready = anonymous.get("/health/ready")
    assert ready.json() == {"status": "ready" if ready.status_code == 200 else "not_ready"}, ready.text
    print("after /health, /health/ready and /metrics:", loaded())
    assert client.get("/v1/models").status_code == 200
    print("after /v1/models:", loaded())
"""


@pytest.mark.sockets  # a process of its own: this one has imported FastAPI for other tests
def test_model_requests_never_import_the_management_app(tmp_path: Path) -> None:
    env = {"PATH": os.defpath, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "after model requests: []",
        "after /health, /health/ready and /metrics: []",
        "after /v1/models: ['anygate.api.management', 'anygate.management.schemas', 'fastapi']",
    ]
