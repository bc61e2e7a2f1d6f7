"""An upstream that reports no usage is charged what anygate counts of what it generated: every kind of
output, not only the text. Tool calls' arguments and reasoning are generated tokens too; counting only the
text let a key spend a whole budget's worth of them as nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from anygate.accounting.budgets import StaticBudgets
from anygate.accounting.estimate import Tokenizer
from anygate.auth import Budget, Principal
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.support.openai_bodies import ToolCall

STUDENT = "sk-ag-student-unreported-output-000"
CHAT = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}
ARGUMENTS = '{"essay": "' + "lorem ipsum dolor sit amet " * 400 + '"}'
REASONING = "first I consider the question carefully " * 300
GENERATED = Tokenizer().load_now().count(ARGUMENTS)


@pytest.fixture
def gw() -> Iterator[InProcessGateway]:
    up = FakeUpstream().in_memory()
    student = Principal(key_id="student", is_admin=False, label="student")
    budgets = StaticBudgets({"student": Budget(tokens=1_000_000, period="daily")})
    with inprocess_gateway(
        gateway_settings(fake_provider(up)), up, keys={STUDENT: student}, budget_source=budgets
    ) as g:
        yield g


def used(gw: InProcessGateway) -> int:
    with gw.client(STUDENT) as http:
        return int(http.get("/v1/quota").json()["tokens"]["used"])


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_arguments_are_counted_when_the_upstream_reports_no_usage(gw: InProcessGateway, stream: bool) -> None:
    assert gw.upstream is not None
    gw.upstream.script(Reply(omit_usage=True, content="", tool_calls=[ToolCall("call_1", "write", ARGUMENTS)]))
    with gw.client(STUDENT) as http:
        assert http.post("/v1/chat/completions", json={**CHAT, "stream": stream}).status_code == 200
    assert used(gw) >= GENERATED


def test_reasoning_is_counted_when_the_upstream_reports_no_usage(gw: InProcessGateway) -> None:
    assert gw.upstream is not None
    message = {"role": "assistant", "content": "42", "reasoning_content": REASONING}
    answer = {"id": "c", "object": "chat.completion", "created": 1, "model": "fake-model",
              "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip
    gw.upstream.script(Reply(json=answer))
    with gw.client(STUDENT) as http:
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert used(gw) >= Tokenizer().load_now().count(REASONING)


def test_a_stream_longer_than_what_is_kept_is_counted_whole(
    gw: InProcessGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``KEPT_STREAM_BYTES`` the events are no longer kept, but they are still counted: the rest is
    charged at the tokens per byte of what was kept."""
    from anygate.accounting import service

    monkeypatch.setattr(service, "KEPT_STREAM_BYTES", 20_000)
    assert gw.upstream is not None
    text = "the quick brown fox jumps over the lazy dog " * 800
    gw.upstream.script(Reply(omit_usage=True, content=text, chunks=800))
    with gw.client(STUDENT) as http:
        assert http.post("/v1/chat/completions", json={**CHAT, "stream": True}).status_code == 200
    assert used(gw) >= 0.9 * Tokenizer().load_now().count(text)
