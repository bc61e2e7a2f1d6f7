"""A prompt the estimate cannot read as text still counts: token ids (``prompt`` or ``input`` as an array of
integers, or of arrays of them, as text completions and embeddings take) are a token each, and an image part
counts as a large image would. Else a hard budget reserves next to nothing for a request that reads
thousands of tokens, and concurrent ones are all admitted past it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from anygate.accounting.budgets import StaticBudgets
from anygate.accounting.estimate import (
    AUDIO_BYTES_PER_TOKEN,
    DOCUMENT_PAGE_TOKENS,
    IMAGE_PART_TOKENS,
    Tokenizer,
    estimate_prompt,
)
from anygate.auth import Budget, Principal
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

STUDENT = "sk-ag-student-unseen-input-00000000"
BUDGET = 2_000
IDS = list(range(5_000))  # 5,000 tokens, given as ids
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
# A minute of speech at 32 kbit/s (240,000 bytes): about 1,500 tokens billed, reserved as more.
AUDIO = {"type": "input_audio", "input_audio": {"data": base64.b64encode(bytes(240_000)).decode(), "format": "mp3"}}
PDF = b"%PDF-1.4\n" + b"".join(b"%d 0 obj << /Type /Page /Parent 1 0 R >> endobj\n" % n for n in range(3))
PDF_PART = {"type": "file", "file": {"file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode()}}


@pytest.fixture
def gw() -> Iterator[InProcessGateway]:
    up = FakeUpstream(usage=Usage(11, 7)).in_memory()
    student = Principal(key_id="student", is_admin=False, label="student")
    budgets = StaticBudgets({"student": Budget(tokens=BUDGET, period="daily")})
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
        (
            "/v1/chat/completions",
            {"model": "fake/fake-model", "max_tokens": 1, "messages": [{"role": "user", "content": [AUDIO]}]},
        ),
        (
            "/v1/chat/completions",
            {"model": "fake/fake-model", "max_tokens": 1, "messages": [{"role": "user", "content": [PDF_PART]}]},
        ),
        (
            "/v1/responses",
            {"model": "fake/fake-model", "max_output_tokens": 1, "input": [{"role": "user", "content": [PDF_PART]}]},
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


def test_audio_counts_by_its_size_and_a_document_by_its_pages() -> None:
    tokenizer = Tokenizer().load_now()
    audio = estimate_prompt(tokenizer, {"messages": [{"role": "user", "content": [AUDIO]}]})
    assert audio >= 240_000 // AUDIO_BYTES_PER_TOKEN
    pdf = estimate_prompt(tokenizer, {"messages": [{"role": "user", "content": [PDF_PART]}]})
    assert pdf >= 3 * DOCUMENT_PAGE_TOKENS
    opaque = base64.b64encode(bytes(50_000)).decode()  # pages in compressed streams: every byte a token
    source = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": opaque}}
    assert estimate_prompt(tokenizer, {"messages": [{"role": "user", "content": [source]}]}) >= 50_000
    by_id = {"type": "input_file", "file_id": "file-123"}  # its size unknown here: a page at least
    assert estimate_prompt(tokenizer, {"input": [{"role": "user", "content": [by_id]}]}) >= DOCUMENT_PAGE_TOKENS
