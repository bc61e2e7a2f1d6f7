"""The tokenizer's vocabularies load off the event loop: the gateway answers while they load, is not ready
until they have, and a budgeted request waits for them without holding anything else up."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from anygate.accounting import estimate
from anygate.accounting.budgets import BudgetSpec, StaticBudgets
from anygate.auth import Principal
from anygate.errors import NotReady
from tests.accounting.gateway import ADMIN_KEY, fake_provider_settings, running_gateway
from tests.support.fake_upstream import FakeUpstream

STUDENT = "sk-ag-student-tokenizer-333333333333"


class WordCounter:
    """A vocabulary where every word is a token."""

    def encode(self, text: str) -> list[int]:
        return [len(word) for word in text.split()]


class SlowLoader:
    """Loads a vocabulary only when the test lets it: loading is as slow as the test wants."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls: list[str] = []

    def __call__(self, name: str) -> WordCounter:
        self.calls.append(name)
        self.started.set()
        if not self.release.wait(timeout=30):
            raise TimeoutError("the test never released the loader")
        return WordCounter()


@pytest.fixture
def loader(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowLoader]:
    slow = SlowLoader()
    monkeypatch.setattr(estimate, "load_encoding", slow)
    yield slow
    slow.release.set()


@pytest.mark.sockets
def test_health_answers_while_the_vocabularies_load_and_a_budgeted_request_waits_for_them(
    loader: SlowLoader, tmp_path: Path
) -> None:
    principal = Principal(key_id="student", is_admin=False, label="student")
    budgets = StaticBudgets({"student": BudgetSpec(tokens=100_000, period="daily")})
    with (
        FakeUpstream.start_in_thread() as upstream,
        running_gateway(
            fake_provider_settings(upstream.base_url, tmp_path), {STUDENT: principal}, budgets, wait_until_ready=False
        ) as (base, _),
        ThreadPoolExecutor(1) as pool,
    ):
        assert loader.started.wait(timeout=15)  # loading has begun, at start-up
        body = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "one two three"}]}
        headers = {"Authorization": f"Bearer {STUDENT}"}
        budgeted = pool.submit(httpx.post, base + "/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert httpx.get(base + "/health", timeout=10).json() == {"status": "ok"}
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        assert httpx.get(base + "/health/ready", timeout=10).json() == {"status": "not_ready"}
        not_ready = httpx.get(base + "/health/ready", headers=admin, timeout=10)
        assert not_ready.status_code == 503 and "tokenizer" in not_ready.json()["error"]["message"]
        assert not budgeted.done()  # it waits for the vocabulary, the event loop does not
        assert not upstream.requests_to("/v1/chat/completions")
        loader.release.set()
        assert budgeted.result(timeout=30).status_code == 200
        ready = httpx.get(base + "/health/ready", headers=admin, timeout=10)
    assert ready.status_code == 200 and ready.json()["checks"]["tokenizer"] == "ok"
    assert sorted(set(loader.calls)) == sorted(estimate.ENCODINGS)
    assert len(loader.calls) == len(estimate.ENCODINGS)  # each loaded once, for everyone who waited


async def test_waiters_share_one_load_and_count_needs_the_vocabulary() -> None:
    calls: list[str] = []

    def load(name: str) -> Any:
        calls.append(name)
        return WordCounter()

    tokenizer = estimate.Tokenizer(load)
    with pytest.raises(RuntimeError):
        tokenizer.count("not loaded yet")
    await asyncio.gather(*(tokenizer.ready("gpt-4o") for _ in range(5)))
    assert calls == ["o200k_base"]
    assert tokenizer.is_ready_for("openai/gpt-4o") and not tokenizer.is_ready
    assert tokenizer.count("three short words", "gpt-4o") == 3
    with pytest.raises(NotReady):
        await tokenizer.check_ready()
    await tokenizer.load()
    assert calls == ["o200k_base", "cl100k_base"] and tokenizer.is_ready
    await tokenizer.check_ready()
