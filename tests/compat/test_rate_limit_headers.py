"""The official openai SDK reads a key's ``x-ratelimit-*`` headers from a gateway served on a real socket,
for a key made through the management API (its own limits and budget, and its user's)."""

from __future__ import annotations

import openai
import pytest

from tests.compat.conftest import MODEL, Tenancy

pytestmark = pytest.mark.sockets

HI = [{"role": "user", "content": "hi"}]


def test_a_served_stream_and_answer_carry_the_keys_headroom(tenancy: Tenancy) -> None:
    with openai.OpenAI(base_url=f"{tenancy.gateway.url}/v1", api_key=tenancy.student, max_retries=0) as client:
        # A small max_tokens: at the test's prices 4096 tokens would hold every dollar of both budgets.
        whole = client.chat.completions.with_raw_response.create(model=MODEL, messages=HI, max_tokens=10)
        with client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=HI, max_tokens=10, stream=True
        ) as streamed:
            headers = streamed.headers  # read before the first event is consumed
            events = list(streamed.iter_lines())
    assert any(line.startswith("data: ") for line in events)
    for answer in (whole.headers, headers):
        assert answer["x-ratelimit-limit-requests"] == "60" and answer["x-ratelimit-limit-tokens"] == "100000"
        # The key's daily $1 binds before its user's monthly $5.
        assert answer["x-ratelimit-limit-usd"] == "1"
    assert [whole.headers["x-ratelimit-remaining-requests"], headers["x-ratelimit-remaining-requests"]] == ["59", "58"]
    assert float(headers["x-ratelimit-remaining-usd"]) < float(whole.headers["x-ratelimit-remaining-usd"]) < 1


def test_a_key_without_limits_gets_no_headroom_of_anygates(tenancy: Tenancy) -> None:
    with openai.OpenAI(base_url=f"{tenancy.gateway.url}/v1", api_key=tenancy.unbudgeted, max_retries=0) as client:
        headers = client.chat.completions.with_raw_response.create(model=MODEL, messages=HI).headers
    assert not [name for name in headers if name.startswith("x-ratelimit-")]
