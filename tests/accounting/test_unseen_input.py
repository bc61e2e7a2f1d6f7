"""A prompt the estimate cannot read as text still counts: token ids (``prompt`` or ``input`` as an array of
integers, or of arrays of them, as text completions and embeddings take) are a token each, and an image part
counts as a large image would. Else a hard budget reserves next to nothing for a request that reads
thousands of tokens, and concurrent ones are all admitted past it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from anygate.accounting.budgets import BudgetSpec, StaticBudgets
from anygate.accounting.estimate import IMAGE_PART_TOKENS, Tokenizer, estimate_prompt
from anygate.auth import Principal
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

STUDENT = "sk-ag-student-unseen-input-00000000"
BUDGET = 2_000
IDS = list(range(5_000))  # 5,000 tokens, given as ids
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


@pytest.fixture
def gw() -> Iterator[InProcessGateway]:
    up = FakeUpstream(usage=Usage(11, 7)).in_memory()
    student = Principal(key_id="student", is_admin=False, label="student")
    budgets = StaticBudgets({"student": BudgetSpec(tokens=BUDGET, period="daily")})
    with inprocess_gateway(
        gateway_settings(fake_provider(up)), up, keys={STUDENT: student}, budget_source=budgets
    ) as g:
        yield g


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings", {"model": "fake/fake-model", "input": IDS}),
        ("/v1/embeddings", {"model": "fake/fake-model", "input": [IDS[:2_500], IDS[2_500:]]}),
        ("/v1/completions", {"model": "fake/fake-model", "prompt": IDS, "max_tokens": 1}),
        ("/proxy/fake/v1/embeddings", {"model": "fake-model", "input": IDS}),
        (
            "/v1/chat/completions",
            {"model": "fake/fake-model", "max_tokens": 1, "messages": [{"role": "user", "content": [IMAGE] * 3}]},
        ),
    ],
)
def test_a_prompt_given_as_token_ids_or_images_is_reserved_and_refused_past_a_hard_budget(
    gw: InProcessGateway, path: str, body: dict[str, Any]
) -> None:
    assert gw.upstream is not None
    with gw.client(STUDENT) as http:
        answer = http.post(path, json=body)
    assert answer.status_code == 429, answer.text
    assert answer.json()["error"]["code"] == "insufficient_quota"
    assert not [r for r in gw.upstream.requests if r.method == "POST"]


def test_token_ids_count_one_each_and_images_as_a_large_one() -> None:
    tokenizer = Tokenizer().load_now()
    assert estimate_prompt(tokenizer, {"input": [[1, 2, 3], [4, 5]]}) == 5
    assert estimate_prompt(tokenizer, {"prompt": [7] * 10}) == 10
    one_image = {"messages": [{"role": "user", "content": [IMAGE]}]}
    assert estimate_prompt(tokenizer, one_image) >= IMAGE_PART_TOKENS
