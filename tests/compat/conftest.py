"""Clients and tools nobody here wrote, run against a live gateway on loopback.

Tools that must be installed first (the OpenRouter TypeScript SDK with npm, LiteLLM in a venv of its own)
are installed once into a cache folder in the checkout. Where the install is impossible (no node, no
network) the test is skipped with the reason, except under ANYGATE_TEST_REQUIRE_SERVICES=1 (CI), where
it fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.gateway import ADMIN_KEY, RunningGateway, fake_provider, gateway_settings, serve_gateway

# Read at import: the shared autouse fixture clears ANYGATE_* before each test.
TOOLS_REQUIRED = os.environ.get("ANYGATE_TEST_REQUIRE_SERVICES") == "1"
CHECKOUT = Path(__file__).resolve().parents[2]
CACHE = CHECKOUT / ".cache" / "compat"
MODEL = "fake/fake-model"
# USD per million tokens: 7 prompt and 3 completion tokens cost $0.013.
PRICES = {"fake/*": {"input": 1000, "output": 2000}}


def unavailable(reason: str) -> None:
    """Skip (fail in CI): a tool these tests need cannot be had here."""
    if TOOLS_REQUIRED:
        pytest.fail(f"{reason} (ANYGATE_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@dataclass
class Tenancy:
    """A gateway with a user, its budgeted key and a key without any budget, made through the API."""

    gateway: RunningGateway
    upstream: FakeUpstream
    user_id: str
    student: str  # secret of a key of the user: a daily $1 budget of its own, the user's monthly $5
    student_id: str
    unbudgeted: str  # secret of a key without any budget, and no user
    unbudgeted_id: str

    def admin(self) -> Any:
        return self.gateway.client(ADMIN_KEY)

    def chat(self, key: str) -> None:
        with openai.OpenAI(base_url=f"{self.gateway.url}/v1", api_key=key, max_retries=0) as client:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])


@pytest.fixture
def tenancy() -> Iterator[Tenancy]:
    with FakeUpstream.start_in_thread(usage=Usage(7, 3)) as upstream:
        settings = gateway_settings(fake_provider(upstream), prices=PRICES)
        with serve_gateway(settings) as gateway, gateway.client() as admin:
            user = admin.post("/v1/users", json={"name": "course-comp318", "budget": {"usd": 5.0, "period": "monthly"}})
            assert user.status_code == 201, user.text
            student = admin.post(
                "/v1/keys",
                json={
                    "alias": "student-1",
                    "user_id": user.json()["id"],
                    "budget": {"usd": 1.0, "period": "daily"},
                    "limits": {"rpm": 60, "tpm": 100000, "concurrency": 4},
                },
            )
            assert student.status_code == 201, student.text
            unbudgeted = admin.post("/v1/keys", json={"alias": "open"})
            assert unbudgeted.status_code == 201, unbudgeted.text
            yield Tenancy(
                gateway,
                upstream,
                user.json()["id"],
                student.json()["key"],
                student.json()["id"],
                unbudgeted.json()["key"],
                unbudgeted.json()["id"],
            )


OPENROUTER_TS_SDK = "@openrouter/sdk@1.3.19"


@pytest.fixture(scope="session")
def openrouter_ts_sdk() -> Path:
    """A folder whose node_modules holds the OpenRouter TypeScript SDK (installed once with npm)."""
    import shutil
    import subprocess

    folder = CACHE / ("npm-" + OPENROUTER_TS_SDK.replace("@", "").replace("/", "-"))
    if (folder / "node_modules" / "@openrouter" / "sdk" / "package.json").is_file():
        return folder
    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable("node and npm are needed to run the OpenRouter TypeScript SDK")
    folder.mkdir(parents=True, exist_ok=True)
    command = ["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--ignore-scripts"]
    done = subprocess.run([*command, OPENROUTER_TS_SDK], capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        unavailable(f"npm could not install {OPENROUTER_TS_SDK}: {done.stderr.strip()[-500:]}")
    return folder


LITELLM_VENV = CHECKOUT / "bench" / ".venv-litellm"
LITELLM_REQUIREMENTS = CHECKOUT / "bench" / "litellm-requirements.txt"
# LiteLLM fetches a price list from the network at import unless told to use its bundled copy.
LITELLM_OFFLINE = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def pinned_litellm() -> str:
    lines = [line.strip() for line in LITELLM_REQUIREMENTS.read_text().splitlines()]
    return next(line for line in lines if line and not line.startswith("#")).split("==")[1]


def installed_litellm(python: Path) -> str | None:
    import subprocess

    if not python.is_file():
        return None
    probe = "import importlib.metadata as m; print(m.version('litellm'))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def find_uv() -> str | None:
    import shutil
    import sys

    beside = Path(sys.executable).parent / "uv"  # the dev environment has it
    return str(beside) if beside.is_file() else shutil.which("uv")


@pytest.fixture(scope="session")
def litellm_python() -> Path:
    """The Python of a venv with LiteLLM's proxy at the version bench/litellm-requirements.txt pins (the
    benchmark's venv, made here when absent)."""
    import subprocess

    python = LITELLM_VENV / "bin" / "python"
    if installed_litellm(python) == pinned_litellm():
        return python
    uv = find_uv()
    if uv is None:
        unavailable("uv is needed to install LiteLLM into bench/.venv-litellm")
        raise AssertionError  # unreachable: unavailable() skips or fails
    steps = [[uv, "venv", str(LITELLM_VENV)]] if not python.is_file() else []
    steps.append(
        [uv, "pip", "install", "--compile-bytecode", "--python", str(LITELLM_VENV), "-r", str(LITELLM_REQUIREMENTS)]
    )
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            unavailable(f"LiteLLM could not be installed: {done.stderr.strip()[-500:]}")
    return python
