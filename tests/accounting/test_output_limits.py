"""No output-size trick overruns a hard budget: ``n``, ``best_of``, two limit fields, or none at all.

The fake upstream generates like a model that never stops early: every answer up to the largest output
limit it was sent (up to 32768 tokens each when it was sent none), and reports that usage.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from anygate.accounting.budgets import StaticBudgets
from anygate.accounting.output_limits import OutputRequest, limit_changes, requested_output
from anygate.auth import Budget, Limits, Principal
from anygate.errors import InvalidRequest
from anygate.settings import Settings
from tests.accounting.gateway import fake_provider_settings
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.support.tokens import estimate_prompt

STUDENT = "sk-ag-student-output-limits-1111111"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
MODEL = "fake/fake-model"


@pytest.fixture
def upstream() -> FakeUpstream:
    up = FakeUpstream().in_memory()
    up.generate_to_limit = True
    return up


@contextmanager
def gateway(
    settings: Settings, upstream: FakeUpstream, budget: Budget | None = None, limits: Limits | None = None
) -> Iterator[InProcessGateway]:
    """The gateway in-process (what it writes upstream and counts needs no socket), with the student's key
    under ``budget`` and ``limits``."""
    principal = Principal(key_id="student", is_admin=False, label="student")
    budgets = StaticBudgets({"student": budget} if budget else None, {"student": limits} if limits else None)
    with inprocess_gateway(settings, upstream, keys={STUDENT: principal}, budget_source=budgets) as gw:
        yield gw


def used_tokens(gw: InProcessGateway) -> int:
    with gw.client(STUDENT) as http:
        quota = http.get("/v1/quota").json()
    return int(quota["tokens"]["used"])


def post(gw: InProcessGateway, path: str, body: dict[str, Any]) -> httpx.Response:
    with gw.client(STUDENT) as http:
        return http.post(path, json=body)


CHAT_PROMPT = estimate_prompt({"messages": MESSAGES})
TEXT_PROMPT = estimate_prompt({"prompt": "hi"})


# ``room``: the budget left beyond the prompt; more than the 4096 tokens reserved per answer when the
# request sends no limit, so that only the limit anygate writes keeps the upstream within it.
@pytest.mark.parametrize(
    ("path", "body", "prompt", "room"),
    [
        ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "n": 20, "max_tokens": 100}, CHAT_PROMPT, 1000),
        (
            "/v1/chat/completions",
            {"model": MODEL, "messages": MESSAGES, "max_completion_tokens": 10, "max_tokens": 100_000},
            CHAT_PROMPT,
            1000,
        ),
        ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES}, CHAT_PROMPT, 10_000),
        ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "max_tokens": None}, CHAT_PROMPT, 10_000),
        ("/v1/completions", {"model": MODEL, "prompt": "hi", "best_of": 5, "max_tokens": 300}, TEXT_PROMPT, 1000),
        (
            "/v1/chat/completions",
            {"model": MODEL, "messages": MESSAGES, "best_of": 8, "max_tokens": 300},
            CHAT_PROMPT,
            1000,
        ),  # vLLM generates best_of answers on chat completions too
        ("/v1/responses", {"model": MODEL, "input": "hi"}, TEXT_PROMPT, 10_000),
        (
            "/proxy/fake/v1/chat/completions",
            {"model": "fake-model", "messages": MESSAGES, "n": 20},
            CHAT_PROMPT,
            10_000,
        ),
    ],
)
def test_no_output_trick_overruns_a_hard_token_budget(
    upstream: FakeUpstream, tmp_path: Path, path: str, body: dict[str, Any], prompt: int, room: int
) -> None:
    upstream.usage = Usage(prompt, 0)
    limit = prompt + room
    settings = fake_provider_settings(upstream.base_url, tmp_path)
    with gateway(settings, upstream, Budget(tokens=limit, period="daily")) as gw:
        answer = post(gw, path, body)
        assert answer.status_code == 200, answer.text
        used = used_tokens(gw)
    assert prompt < used <= limit  # the upstream generated all it was allowed, and no more
    sent = upstream.requests[-1].json
    assert any(name in sent for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"))


def test_a_hard_usd_budget_holds_n_answers_too(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.usage = Usage(CHAT_PROMPT, 0)
    settings = fake_provider_settings(upstream.base_url, tmp_path, prices={"fake/*": {"input": 1000, "output": 1000}})
    with gateway(settings, upstream, Budget(usd=0.5, period="daily")) as gw, gw.client(STUDENT) as http:
        answer = http.post(
            "/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, "n": 10, "max_tokens": 400}
        )
        assert answer.status_code == 200, answer.text
        cost = http.get("/v1/quota").json()["cost"]
    assert 0 < cost["used"] <= 0.5
    sent = upstream.requests[-1].json
    assert sent["n"] == 10 and sent["max_tokens"] * 10 <= 500 - CHAT_PROMPT


def test_a_soft_budget_sends_the_clients_bytes(upstream: FakeUpstream, tmp_path: Path) -> None:
    raw = b'{"model":"fake/fake-model",  "messages":[{"role":"user","content":"hi"}], "n":2}'
    settings = fake_provider_settings(upstream.base_url, tmp_path)
    with gateway(settings, upstream, Budget(tokens=10, period="daily", mode="soft")) as gw:
        with gw.client(STUDENT) as http:
            answer = http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
        assert answer.status_code == 200
    assert upstream.requests[-1].body == raw.replace(b"fake/fake-model", b"fake-model")


@pytest.mark.parametrize(
    ("member", "value"),
    [("n", 0), ("n", 129), ("n", "2"), ("n", 1.5), ("n", True), ("max_tokens", -1), ("max_tokens", 0)]
    + [("max_completion_tokens", "100"), ("max_tokens", 10.0)],
)
def test_a_limit_or_n_that_is_not_a_positive_integer_is_400_under_a_budget(
    upstream: FakeUpstream, tmp_path: Path, member: str, value: Any
) -> None:
    settings = fake_provider_settings(upstream.base_url, tmp_path)
    with gateway(settings, upstream, Budget(tokens=100_000, period="daily")) as gw:
        answer = post(gw, "/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, member: value})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == member
    assert not upstream.requests_to("/v1/chat/completions")


def test_a_rate_limit_clamp_leaves_each_answer_its_share(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.usage = Usage(CHAT_PROMPT, 0)
    settings = fake_provider_settings(upstream.base_url, tmp_path)
    with gateway(settings, upstream, limits=Limits(tpm=CHAT_PROMPT + 40)) as gw:
        body = {"model": MODEL, "messages": MESSAGES, "n": 4, "max_tokens": 100}
        assert post(gw, "/v1/chat/completions", body).status_code == 200
    assert upstream.requests[-1].json["max_tokens"] == 10


@pytest.mark.parametrize(
    ("route", "payload", "wanted"),
    [
        ("chat/completions", {}, OutputRequest()),
        ("chat/completions", {"n": 3, "max_tokens": 5, "max_completion_tokens": 9}, OutputRequest(
            ("max_completion_tokens", "max_tokens"), 9, 3)),
        ("chat/completions", {"max_tokens": None}, OutputRequest(("max_tokens",), None, 1)),
        ("completions", {"n": 2, "best_of": 4, "max_tokens": 7}, OutputRequest(("max_tokens",), 7, 4)),
        ("chat/completions", {"best_of": 3, "max_tokens": 7}, OutputRequest(("max_tokens",), 7, 3)),
        ("responses", {"max_output_tokens": 50, "n": 1000}, OutputRequest(("max_output_tokens",), 50, 1)),
        ("embeddings", {"max_tokens": "anything"}, OutputRequest()),
    ],
)  # fmt: skip
def test_requested_output(route: str, payload: dict[str, Any], wanted: OutputRequest) -> None:
    assert requested_output(route, payload) == wanted


def test_requested_output_refuses_a_bad_best_of() -> None:
    with pytest.raises(InvalidRequest):
        requested_output("completions", {"best_of": 0})


@pytest.mark.parametrize(
    ("payload", "allowed", "enforce", "model", "changes"),
    [
        ({}, None, False, "m", {}),  # no budget holds the output: untouched
        ({}, None, True, "m", {"max_tokens": 4096}),
        ({}, None, True, "openai/o3-mini", {"max_completion_tokens": 4096}),
        ({"n": 4}, 100, True, "m", {"max_tokens": 25}),
        ({"max_tokens": 10, "max_completion_tokens": 500}, 100, True, "m", {"max_completion_tokens": 100}),
        ({"max_tokens": 10}, None, True, "m", {}),  # within what was reserved
        ({"max_tokens": None}, None, True, "m", {"max_tokens": 4096}),
        ({"max_tokens": 300}, 100, False, "m", {"max_tokens": 100}),  # a rate limit clamped it
    ],
)
def test_limit_changes(
    payload: dict[str, Any], allowed: int | None, enforce: bool, model: str, changes: dict[str, int]
) -> None:
    wanted = requested_output("chat/completions", payload)
    assert limit_changes("chat/completions", payload, wanted, allowed, enforce, model) == changes
