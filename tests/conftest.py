"""Shared test setup: every test starts from a clean environment in an empty working directory."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from anygate.accounting import estimate
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

# The tiers (sockets, services, browser) and the guard that keeps unmarked tests in memory.
pytest_plugins = ["tests.support.tiers"]

CLEARED_ENV = re.compile(
    r"^(ANYGATE_.*|OPENAI_.*|OPENROUTER_.*|OLLAMA_.*|PREFERRED_PROVIDER|.*_API_KEY|LOG_LEVEL|"
    r"(?i:https?_proxy|no_proxy)|CF_ACCESS_.*|CF_AI_GATEWAY_.*|OTEL_.*)$"
)


@pytest.fixture(scope="session", autouse=True)
def loaded_vocabulary() -> None:
    """The estimator's vocabulary read once for the session: a gateway loads it when a request first needs
    a count, and its ledger row and metrics then come a moment after the answer; tests that read them at
    once would race that load. (tests/accounting/test_tokenizer.py tests the load itself.)"""
    estimate.load_vocabulary()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No gateway setting leaks in from the developer's shell or a stray ``.env``."""
    for name in list(os.environ):
        if CLEARED_ENV.match(name):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def open_sdk() -> Iterator[Any]:
    """``open_sdk(base_url=..., api_key=...)``: an official OpenAI SDK client, closed when the test ends
    (an unclosed one leaks a socket whose ResourceWarning would fail some later test)."""
    clients: list[openai.OpenAI] = []

    def open_client(**options: Any) -> openai.OpenAI:
        client = openai.OpenAI(**options)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


@pytest.fixture
def gw() -> Iterator[InProcessGateway]:
    """The gateway in-process with one in-memory provider (``fake``) answering with usage 11 + 7; a module
    that needs other settings defines its own ``gw``."""
    up = FakeUpstream(usage=Usage(11, 7)).in_memory()
    with inprocess_gateway(gateway_settings(fake_provider(up)), up) as gateway:
        yield gateway
