"""The tokenizer's vocabulary loads off the event loop, when a request first needs a count: the gateway
answers while it loads, a budgeted request waits for it without holding anything else up, and a process
whose requests never need a count never loads it. The bundled vocabulary counts what tiktoken's cl100k_base
counts on ordinary text."""

from __future__ import annotations

import asyncio
import sys
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

    def count(self, text: str, budget: object = None) -> int:
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


class CountingVocabulary:
    """Words as tokens, and every text it was asked to count, with the merge budget it was given."""

    def __init__(self) -> None:
        self.counted: list[tuple[str, object]] = []

    def count(self, text: str, budget: object = None) -> int:
        self.counted.append((text, budget))
        return len(text.split())


def a_conversation(turns: int) -> dict[str, object]:
    """An agent's request: a long system prompt and tool list, long tool results, short replies."""
    messages: list[dict[str, object]] = []
    for turn in range(turns):
        listing = "\n".join(f"def handler_{turn}_{line}(request): return answer({line}, 'ok')" for line in range(40))
        result = {"type": "tool_result", "tool_use_id": f"t{turn}", "content": listing}
        messages.append({"role": "user", "content": [result]})
        messages.append({"role": "assistant", "content": "Read it; next file."})
    return {
        "system": "You are a careful coding agent. Follow the repository's conventions.\n" * 40,
        "tools": [{"name": f"tool_{n}", "description": "Reads a file of the repository. " * 20} for n in range(8)],
        "messages": messages,
    }


async def test_a_long_part_is_counted_once_and_its_count_remembered_across_requests() -> None:
    vocabulary = CountingVocabulary()
    tokenizer = estimate.Tokenizer(lambda: vocabulary)
    await tokenizer.ready()
    first = estimate.estimate_prompt(tokenizer, a_conversation(3))
    counted_first = [text for text, _ in vocabulary.counted]
    vocabulary.counted.clear()
    next_turn = a_conversation(4)  # the same conversation, one turn longer
    second = estimate.estimate_prompt(tokenizer, next_turn)
    counted_again = [text for text, _ in vocabulary.counted]
    long_parts = [t for t in counted_first if len(t) >= estimate.LONG_PART]
    assert len(long_parts) == 5  # the system prompt, the tools, three tool results
    assert not set(long_parts) & set(counted_again)  # none of them counted again
    assert len([t for t in counted_again if len(t) >= estimate.LONG_PART]) == 1  # the new tool result
    assert second > first
    # One request's counts share one merge budget, as one text's would.
    assert len({id(budget) for _, budget in vocabulary.counted}) == 1


async def test_a_conversation_of_short_messages_sent_again_counts_only_its_last_run_and_what_is_new() -> None:
    vocabulary = CountingVocabulary()
    tokenizer = estimate.Tokenizer(lambda: vocabulary)
    await tokenizer.ready()
    chat = [{"role": "user", "content": f"Question {n}: what does line {n} of the file do?"} for n in range(200)]
    first = estimate.estimate_prompt(tokenizer, {"messages": chat})
    vocabulary.counted.clear()
    chat.append({"role": "user", "content": "And the next one?"})
    second = estimate.estimate_prompt(tokenizer, {"messages": chat})
    counted_again = sum(len(text) for text, _ in vocabulary.counted)
    assert counted_again < 2 * estimate.LONG_PART  # not the 10,000 characters of the whole chat
    assert second > first


def test_counting_long_parts_alone_errs_high_by_at_most_a_token_or_two_a_part(cl100k: bpe.Vocabulary) -> None:
    tokenizer = estimate.Tokenizer(lambda: cl100k).load_now()
    payload = a_conversation(6)
    parts, messages = estimate.prompt_parts(payload)
    joined = cl100k.count("\n".join(parts))
    long_parts = sum(len(part) >= estimate.LONG_PART for part in parts)
    assert long_parts >= 6
    by_parts = tokenizer.count_parts(parts)
    assert joined <= by_parts <= joined + 2 * long_parts
    assert tokenizer.count_parts(parts) == by_parts  # from what it remembers, the same count
    assert estimate.estimate_prompt(tokenizer, payload) == by_parts + estimate.PER_MESSAGE_OVERHEAD * messages


def test_remembered_parts_are_bounded_by_their_memory_least_recently_used_forgotten_first() -> None:
    a, b, c, d, e = ("abcde"[n] * 700 for n in range(5))
    size = sys.getsizeof(a) + estimate.ENTRY_BYTES
    parts = estimate.PartCounts(limit=4 * size + size // 2)  # room for four
    for part in (a, b, c, d):
        parts.remember("me", part, 1)
    assert parts.get("me", a) == 1  # a is now the most recently used: b goes first
    parts.remember("me", e, 2)
    assert parts.get("me", b) is None and [parts.get("me", part) for part in (a, c, d, e)] == [1, 1, 1, 2]
    parts.remember("me", "f" * 900, 3)  # larger than a quarter of what it may hold: never remembered
    assert parts.get("me", "f" * 900) is None and len(parts) == 4
    assert parts.get("you", a) is None  # another caller's


async def test_a_part_remembered_for_one_caller_is_counted_again_for_another() -> None:
    # How fast a part counts must not tell a caller whether someone else sent it.
    vocabulary = CountingVocabulary()
    tokenizer = estimate.Tokenizer(lambda: vocabulary)
    await tokenizer.ready()
    payload = a_conversation(2)
    first = estimate.estimate_prompt(tokenizer, payload, owner="user:alice")
    vocabulary.counted.clear()
    assert estimate.estimate_prompt(tokenizer, payload, owner="user:alice") == first
    assert not any(len(text) >= estimate.LONG_PART for text, _ in vocabulary.counted)
    assert estimate.estimate_prompt(tokenizer, payload, owner="user:bob") == first
    assert any(len(text) >= estimate.LONG_PART for text, _ in vocabulary.counted)


def test_a_caller_remembers_under_its_user_else_its_own_key() -> None:
    root = Principal(key_id="root", is_admin=False)
    child = Principal(key_id="child", is_admin=False, ancestors=(root,))  # may be someone else's
    student = Principal(key_id="k1", is_admin=False, user_id="u1", ancestors=(root,))
    assert (estimate.counting_owner(root), estimate.counting_owner(child)) == ("key:root", "key:child")
    assert estimate.counting_owner(student) == "user:u1"


def test_a_long_part_counted_past_the_merge_budget_is_not_remembered(cl100k: bpe.Vocabulary) -> None:
    tokenizer = estimate.Tokenizer(lambda: cl100k).load_now()
    symbols = "!@#$%^&*()-=+[]{};:,.<>?/|~`"
    noise = "".join(symbols[(i * 7919) % len(symbols)] for i in range(2 * bpe.MERGE_BUDGET))
    counted = tokenizer.count_parts([noise])
    assert counted <= len(noise.encode()) + 1
    assert tokenizer.remembered_parts == 0  # counted a token a byte past the budget: not a count to keep


def test_parts_ending_in_whitespace_are_never_counted_below_their_joined_text(cl100k: bpe.Vocabulary) -> None:
    # " \r\r\n" is one token, " \r\r\n\n" three: a join can add two.
    tokenizer = estimate.Tokenizer(lambda: cl100k).load_now()
    parts = ["x" * 1020 + " \r\r\n"] * 50
    assert tokenizer.count_parts(parts) >= cl100k.count("\n".join(parts))


def test_past_the_merge_budget_a_count_does_not_tell_what_other_callers_sent(cl100k: bpe.Vocabulary) -> None:
    # A piece another caller's text made the vocabulary remember counts, past the budget, as any unseen one.
    rare = " Zorblaxquintessentialfrobnicatorwidgetry"
    symbols = "!@#$%^&*()-=+[]{};:,.<>?/|~`"

    def probe(seed: int) -> int:  # new noise every time: nothing of it remembered, the budget spent
        noise = "".join(symbols[(i * 7919 + seed) % len(symbols)] for i in range(2 * bpe.MERGE_BUDGET))
        return cl100k.count(noise + rare) - cl100k.count(noise)

    before = probe(1)
    cl100k.count("a note:" + rare)  # another caller's, remembered piece by piece
    assert probe(2) == before == len(rare.encode())


def test_a_piece_of_a_megabyte_is_merged_only_as_far_as_the_budget_goes(cl100k: bpe.Vocabulary) -> None:
    # One run of one letter: merged whole, it took a second of the event loop.
    run = "q" * 1_000_000
    merged = cl100k.count("q" * bpe.MERGE_BUDGET)
    assert cl100k.count(run) == merged + len(run) - bpe.MERGE_BUDGET
