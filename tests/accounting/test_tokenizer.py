"""The tokenizer's vocabulary loads off the event loop, when a request first needs a count: the gateway
answers while it loads, a budgeted request waits for it without holding anything else up, and a process
whose requests never need a count never loads it. The bundled vocabulary counts what tiktoken's cl100k_base
counts on ordinary text."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest

from anygate.accounting import bpe, estimate
from anygate.accounting.budgets import StaticBudgets
from anygate.auth import Budget, Principal
from tests.accounting.gateway import ADMIN_KEY, fake_provider_settings, running_gateway
from tests.support.fake_upstream import FakeUpstream

STUDENT = "sk-ag-student-tokenizer-333333333333"


class WordCounter:
    """A vocabulary where every word is a token."""

    def count(self, text: str) -> int:
        return len(text.split())


class SlowLoader:
    """Loads a vocabulary only when the test lets it: loading is as slow as the test wants."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls = 0

    def __call__(self) -> WordCounter:
        self.calls += 1
        self.started.set()
        if not self.release.wait(timeout=30):
            raise TimeoutError("the test never released the loader")
        return WordCounter()


@pytest.fixture
def loader(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowLoader]:
    slow = SlowLoader()
    monkeypatch.setattr(estimate, "load_vocabulary", slow)
    yield slow
    slow.release.set()


@pytest.mark.sockets
def test_a_budgeted_request_loads_the_vocabulary_and_waits_for_it_while_the_gateway_answers(
    loader: SlowLoader, tmp_path: Path
) -> None:
    principal = Principal(key_id="student", is_admin=False, label="student")
    budgets = StaticBudgets({"student": Budget(tokens=100_000, period="daily")})
    with (
        FakeUpstream.start_in_thread() as upstream,
        running_gateway(fake_provider_settings(upstream.base_url, tmp_path), {STUDENT: principal}, budgets) as (
            base,
            gateway,
        ),
        ThreadPoolExecutor(2) as pool,
    ):
        body = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "one two three"}]}
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        unbudgeted = httpx.post(base + "/v1/chat/completions", json=body, headers=admin, timeout=10)
        assert unbudgeted.status_code == 200 and loader.calls == 0  # the admin key needs no count
        assert not gateway.state.accounting.tokenizer.is_loaded
        headers = {"Authorization": f"Bearer {STUDENT}"}
        budgeted = [
            pool.submit(httpx.post, base + "/v1/chat/completions", json=body, headers=headers, timeout=30)
            for _ in range(2)
        ]
        assert loader.started.wait(timeout=15)  # the first budgeted request began loading it
        assert httpx.get(base + "/health", timeout=10).json() == {"status": "ok"}
        ready = httpx.get(base + "/health/ready", headers=admin, timeout=10)
        assert ready.status_code == 200 and "tokenizer" not in ready.json()["checks"]
        assert not any(request.done() for request in budgeted)  # they wait for the vocabulary, the loop does not
        assert len(upstream.requests_to("/v1/chat/completions")) == 1  # the admin key's alone
        loader.release.set()
        assert [request.result(timeout=30).status_code for request in budgeted] == [200, 200]
    assert loader.calls == 1  # loaded once, for everyone who waited


async def test_waiters_share_one_load_and_count_needs_the_vocabulary() -> None:
    calls: list[str] = []

    def load() -> WordCounter:
        calls.append("load")
        return WordCounter()

    tokenizer = estimate.Tokenizer(load)
    with pytest.raises(RuntimeError):
        tokenizer.count("not loaded yet")
    assert not tokenizer.is_ready_for("gpt-4o")
    await asyncio.gather(*(tokenizer.ready("gpt-4o") for _ in range(5)))
    assert calls == ["load"] and tokenizer.is_ready_for("openai/gpt-4o") and tokenizer.is_ready_for(None)
    assert tokenizer.count("three short words", "gpt-4o") == 3
    await tokenizer.ready()
    assert calls == ["load"]


@pytest.fixture(scope="module")
def cl100k() -> bpe.Vocabulary:
    return bpe.Vocabulary.load()


# The counts bpe-openai 0.1 gives with its cl100k_base vocabulary.
@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("hi", 1),
        ("Hello, world!", 4),
        ("The quick brown fox jumps over the lazy dog.", 10),
        ("def count(self, text: str) -> int:\n    return 0\n", 16),
        ("Xin chào thế giới, tôi là một mô hình", 20),
        ("你好，世界！这是一个测试。", 12),
        ("a" * 5000, 625),
        ("\n\n\n   \t x", 3),
        ("HelloWorld CamelCase _under_score 12345", 10),
        ("I'm sure they've said it's fine; we'll see.", 14),
    ],
)
def test_the_bundled_vocabulary_counts_what_cl100k_base_counts(cl100k: bpe.Vocabulary, text: str, tokens: int) -> None:
    assert cl100k.count(text) == tokens
    assert cl100k.count(text) == tokens  # again, from what it remembers of the pieces


def test_text_made_to_be_expensive_counts_at_most_a_token_per_byte_and_never_fewer_than_its_pieces(
    cl100k: bpe.Vocabulary,
) -> None:
    symbols = "!@#$%^&*()-=+[]{};:,.<>?/|~`"
    noise = "".join(symbols[(i * 7919) % len(symbols)] for i in range(3 * bpe.MERGE_BUDGET))
    counted = cl100k.count(noise)
    assert len(bpe.CL100K_PATTERN.findall(noise)) <= counted <= len(noise.encode())
    assert cl100k.count("") == 0
