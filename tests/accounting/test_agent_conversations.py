"""A coding agent sends its whole conversation again every turn, 100-500 KB: with a budget, its prompt's
long parts are counted once per caller and their counts remembered, the estimate of a turn sent again
is what it was, and the upstream gets the client's bytes with only the model rewritten (a tool's own
``model`` parameter left alone). In-process, no sockets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from anygate.accounting.estimate import PER_MESSAGE_OVERHEAD, prompt_text
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

BUDGET = {"budget": {"tokens": 50_000_000, "period": "daily", "mode": "hard"}, "limits": {"tpm": 100_000_000}}


def conversation(turns: int, api: str = "chat") -> dict[str, Any]:
    """An agent's request (chat, or Anthropic ``messages``): a long system prompt, a tool with its own
    ``model`` parameter, long tool results and short replies."""
    listing = "\n".join(f"def step_{line}(state): return advance(state, {line})  # é" for line in range(60))
    system = "You are a careful coding agent. " * 300
    messages: list[dict[str, Any]] = [] if api == "messages" else [{"role": "system", "content": system}]
    for turn in range(turns):
        messages.append({"role": "user", "content": f"{listing}\n# file {turn}"})
        messages.append({"role": "assistant", "content": f"Read file {turn}."})
    schema = {"type": "object", "properties": {"model": {"type": "string", "enum": ["small", "large"]}}}
    description = "Hands a task to a helper. " * 40
    if api == "messages":
        tool: dict[str, Any] = {"name": "delegate", "description": description, "input_schema": schema}
        return {"model": "fake/fake-model", "max_tokens": 64, "system": system, "messages": messages, "tools": [tool]}
    tool = {"type": "function", "function": {"name": "delegate", "description": description, "parameters": schema}}
    return {"model": "fake/fake-model", "messages": messages, "tools": [tool]}


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[InProcessGateway, FakeUpstream]]:
    monkeypatch.chdir(tmp_path)
    upstream = FakeUpstream().in_memory()
    prices = {"fake/*": {"input": 1, "output": 2}}
    with inprocess_gateway(gateway_settings(fake_provider(upstream), prices=prices), upstream) as gw:
        yield gw, upstream


def budgeted_key(gw: InProcessGateway, name: str) -> str:
    user = gw.created("/v1/users", {"name": name})
    key: str = gw.created("/v1/keys", {"alias": name, "user_id": user["id"], **BUDGET})["key"]
    return key


def test_an_agents_conversation_reaches_the_upstream_with_only_its_model_rewritten(
    gateway: tuple[InProcessGateway, FakeUpstream],
) -> None:
    gw, upstream = gateway
    key = budgeted_key(gw, "agent")
    # As Python's json writes it: spaces after separators, every accent an escape (orjson, encoding it
    # again, would write neither: a body re-encoded on the way does not pass).
    body = json.dumps(conversation(40)).encode()
    assert len(body) > 100_000
    with gw.client(key) as http:
        for _ in range(2):  # the second turn's parts all remembered
            answer = http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
            assert answer.status_code == 200, answer.text
            sent = upstream.requests[-1]
            # Every byte of the client's messages and tools as it sent them; the tool's model untouched.
            assert body[body.index(b'"messages"') :] in sent.body
            assert sent.json["model"] == "fake-model"
            assert sent.json["tools"][0]["function"]["parameters"]["properties"]["model"]["enum"] == ["small", "large"]
            assert {name: value for name, value in sent.json.items() if name in conversation(0)} == {
                **orjson.loads(body),
                "model": "fake-model",
            }
    assert gw.app.state.accounting.tokenizer.remembered_parts > 0


def test_a_turn_sent_again_is_estimated_as_before_and_a_longer_one_higher(
    gateway: tuple[InProcessGateway, FakeUpstream],
) -> None:
    gw, _ = gateway
    key = budgeted_key(gw, "estimates")
    counted = []
    with gw.client(key) as http:
        for turns in (30, 30, 31):
            payload = conversation(turns, "messages")
            answer = http.post("/v1/messages/count_tokens", json=payload)
            assert answer.status_code == 200, answer.text
            counted.append(answer.json()["input_tokens"])
    assert counted[0] == counted[1] < counted[2]
    # The estimate of a conversation is never below the count of its text as one piece.
    tokenizer = gw.app.state.accounting.tokenizer
    text, messages = prompt_text(conversation(30, "messages"))
    assert counted[0] >= tokenizer.count(text) + PER_MESSAGE_OVERHEAD * messages


def test_another_callers_identical_conversation_is_counted_for_it_alone(
    gateway: tuple[InProcessGateway, FakeUpstream],
) -> None:
    gw, _ = gateway
    remembered = gw.app.state.accounting.tokenizer
    payload = conversation(10, "messages")
    counts = []
    for name in ("alice", "bob"):
        with gw.client(budgeted_key(gw, name)) as http:
            before = remembered.remembered_parts
            counts.append(http.post("/v1/messages/count_tokens", json=payload).json()["input_tokens"])
            assert remembered.remembered_parts > before  # bob's parts are his own, not alice's
    assert counts[0] == counts[1]


@pytest.mark.parametrize("remembered", [0, 256 * 1024])
def test_the_remembered_counts_hold_no_more_text_than_the_setting_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remembered: int
) -> None:
    monkeypatch.chdir(tmp_path)
    upstream = FakeUpstream().in_memory()
    settings = gateway_settings(fake_provider(upstream), remembered_prompt_bytes=remembered)
    with inprocess_gateway(settings, upstream) as gw:
        tokenizer = gw.app.state.accounting.tokenizer
        counted = []
        for turns in (30, 30, 60, 60):  # ~90 KB, then ~180 KB of long parts
            with gw.client(budgeted_key(gw, f"agent-{len(counted)}")) as http:
                answer = http.post("/v1/messages/count_tokens", json=conversation(turns, "messages"))
                assert answer.status_code == 200, answer.text
                counted.append(answer.json()["input_tokens"])
            assert tokenizer.remembered_bytes <= remembered
        assert counted[0] == counted[1] < counted[2] == counted[3]  # remembered or not, the same estimate
        assert (tokenizer.remembered_parts == 0) is (remembered == 0)
