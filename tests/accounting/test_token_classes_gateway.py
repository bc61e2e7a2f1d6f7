"""Cost by token class through the gateway: the ``x-anygate-cost`` header, the ledger's columns, the usage
report, the budget's count, an upstream's own cost in a stream, and an Anthropic upstream's cache.

Prices are per million tokens (``prices:``); each expected cost is spelt out as its arithmetic.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.fake_upstream import FakeUpstream, Reply, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.support.openai_bodies import sse

CHAT = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "hi"}]}
PRICES = {"fake/*": {"input": 2.5, "output": 10, "cached_input": 1.25}}
# 1000 prompt tokens of which 600 cached; 200 completion tokens of which 150 reasoning (inside them).
CLASSED_USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 200,
    "total_tokens": 1200,
    "prompt_tokens_details": {"cached_tokens": 600, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 150, "audio_tokens": 0},
}
# 400 fresh x $2.50 + 600 cached x $1.25 + 200 out x $10, per million: 0.001 + 0.00075 + 0.002
CLASSED_COST = (400 * 2.50 + 600 * 1.25 + 200 * 10) / 1e6
COLUMNS = (
    "input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, audio_tokens, "
    "image_tokens, cost_usd, cost_source, error"
)


def completion(usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}],
        "usage": usage,
    }


def ledger(gw: InProcessGateway, columns: str = COLUMNS) -> list[tuple[Any, ...]]:
    gw.run(gw.app.state.accounting.ledger.flush())
    with sqlite3.connect(Path.cwd() / "data" / "anygate.db") as db:
        return db.execute(f"select {columns} from usage_ledger order by created_at").fetchall()


def test_a_whole_answer_carries_its_class_aware_cost_and_the_ledger_its_classes() -> None:
    up = FakeUpstream().in_memory()
    up.script(Reply(json=completion(CLASSED_USAGE)), path="/v1/chat/completions")
    with inprocess_gateway(gateway_settings(fake_provider(up), prices=PRICES), up) as gw, gw.client() as http:
        answer = http.post("/v1/chat/completions", json=CHAT)
        assert answer.status_code == 200
        assert answer.headers["x-anygate-cost"] == "0.00375"
        assert float(answer.headers["x-anygate-cost"]) == pytest.approx(CLASSED_COST)
        [row] = ledger(gw)
        assert row[:7] == (1000, 200, 600, 0, 150, 0, 0)  # reasoning inside the 200, never added
        assert row[7] == pytest.approx(CLASSED_COST) and row[8:] == ("configured", None)
        report = http.get("/v1/usage").json()["data"][0]
        assert (report["cached_input_tokens"], report["reasoning_tokens"], report["output_tokens"]) == (600, 150, 200)
        assert report["cost_usd"] == pytest.approx(CLASSED_COST) and report["upstream_cost_requests"] == 0


def test_an_unknown_price_sends_no_cost_header_and_records_no_source() -> None:
    up = FakeUpstream().in_memory()
    up.script(Reply(json=completion(CLASSED_USAGE)), path="/v1/chat/completions")
    with inprocess_gateway(gateway_settings(fake_provider(up)), up) as gw, gw.client() as http:
        answer = http.post("/v1/chat/completions", json=CHAT)
        assert answer.status_code == 200 and "x-anygate-cost" not in answer.headers
        [row] = ledger(gw, "cost_usd, cost_source, cached_input_tokens")
        assert row == (None, None, 600)


def test_a_cost_the_upstream_reports_in_its_stream_is_used_and_marked_as_its_own() -> None:
    # OpenRouter reports usage.cost in the last chunk: that figure, not anygate's price (which says 0.00375).
    usage = {**CLASSED_USAGE, "cost": 0.0042, "is_byok": False}
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "fake-model"}
    events = [
        sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "4"}}]}),
        sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        sse({**chunk, "choices": [], "usage": usage}),
        b"data: [DONE]\n\n",
    ]
    up = FakeUpstream().in_memory()
    up.script(Reply(raw_events=events), path="/v1/chat/completions")
    with inprocess_gateway(gateway_settings(fake_provider(up), prices=PRICES), up) as gw, gw.client() as http:
        streamed = http.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert streamed.status_code == 200 and "x-anygate-cost" not in streamed.headers  # a stream: no header
        assert b'"cost"' not in streamed.content  # the usage chunk anygate asked for is the client's no more
        [row] = ledger(gw, "cost_usd, cost_source, cached_input_tokens, reasoning_tokens")
        assert row == (pytest.approx(0.0042), "upstream", 600, 150)
        assert http.get("/v1/usage").json()["data"][0]["upstream_cost_requests"] == 1


def test_an_anthropic_upstreams_cache_reads_are_priced_at_the_cached_price() -> None:
    # The fake Anthropic upstream reports input_tokens 200 beside cache_read_input_tokens 1000.
    up = FakeUpstream(usage=Usage(1200, 40, cached_tokens=1000), models=["claude-x"]).in_memory()
    provider = fake_provider(up, "claude", api="anthropic", auth="x-api-key")
    prices = {"claude/*": {"input": 3, "output": 15, "cached_input": 0.3}}
    with inprocess_gateway(gateway_settings(provider, prices=prices), up) as gw, gw.client() as http:
        body = {"model": "claude/claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
        answer = http.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
        assert answer.status_code == 200, answer.text
        # 200 fresh x $3 + 1000 cached x $0.30 + 40 out x $15, per million: 0.0006 + 0.0003 + 0.0006
        assert answer.headers["x-anygate-cost"] == "0.0015"
        [row] = ledger(gw, "input_tokens, cached_input_tokens, output_tokens, cost_usd, cost_source")
        assert row == (1200, 1000, 40, pytest.approx((200 * 3 + 1000 * 0.3 + 40 * 15) / 1e6), "configured")


def test_a_usd_budget_is_charged_the_class_aware_cost() -> None:
    up = FakeUpstream().in_memory()
    up.script_many([Reply(json=completion(CLASSED_USAGE))] * 2, path="/v1/chat/completions")
    with inprocess_gateway(gateway_settings(fake_provider(up), prices=PRICES), up) as gw:
        with gw.client() as admin:
            created = admin.post("/v1/keys", json={"alias": "course", "budget": {"usd": 1, "period": "daily"}})
            assert created.status_code == 201, created.text
        with gw.client(created.json()["key"]) as http:
            for _ in range(2):
                assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
            used = http.get("/v1/quota").json()["cost"]["used"]
    # Priced as plain tokens, two requests would have used 2 x (1000 x $2.50 + 200 x $10) / 1e6 = 0.009.
    assert used == pytest.approx(2 * CLASSED_COST) == pytest.approx(0.0075)


def test_a_failed_request_records_its_error_code() -> None:
    up = FakeUpstream().in_memory()
    up.script(Reply.error(400, "bad"), path="/v1/chat/completions")
    with inprocess_gateway(gateway_settings(fake_provider(up), prices=PRICES), up) as gw, gw.client() as http:
        failed = http.post("/v1/chat/completions", json=CHAT)
        assert failed.status_code == 400
        [row] = ledger(gw, "error, cost_usd, cost_source")
    assert orjson.loads(failed.content)["error"]["message"] == "bad"  # the upstream's own error, passed on
    assert row == ("upstream_http_400", 0.0, None)  # and the ledger names the failure as the access log does


def test_an_answer_without_usage_has_no_header_and_its_estimate_is_priced_when_settled() -> None:
    up = FakeUpstream().in_memory()
    up.script(Reply(omit_usage=True, content="four"), path="/v1/chat/completions")
    with inprocess_gateway(gateway_settings(fake_provider(up), prices=PRICES), up) as gw, gw.client() as http:
        answer = http.post("/v1/chat/completions", json=CHAT)
        assert answer.status_code == 200 and "x-anygate-cost" not in answer.headers
        [(tokens_in, tokens_out, cost, source)] = ledger(gw, "input_tokens, output_tokens, cost_usd, cost_source")
    assert tokens_in > 0 and tokens_out > 0 and source == "configured"
    assert cost == pytest.approx((tokens_in * 2.5 + tokens_out * 10) / 1e6)
