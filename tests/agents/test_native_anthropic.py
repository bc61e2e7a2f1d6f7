"""``/v1/messages`` to a provider that speaks the Messages API itself (``api: anthropic``): the request and
the answer pass through as bytes, with the provider's own key header and version, and the usage is taken
from Anthropic's own events."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from tests.support.fake_upstream import FakeUpstream, Reply, Usage
from tests.support.gateway import ADMIN_KEY, PROVIDER_KEY, fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

MODEL = "claude/claude-sonnet-4-5-20250929"
HI: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream(usage=Usage(1200, 40, cached_tokens=1000), models=["claude-sonnet-4-5-20250929"]).in_memory()


@pytest.fixture
def gateway(upstream: FakeUpstream) -> Iterator[InProcessGateway]:
    provider = fake_provider(upstream, "claude", api="anthropic", auth="x-api-key")
    settings = gateway_settings(provider, aliases={"claude-sonnet-4-5": MODEL})
    with inprocess_gateway(settings, upstream) as gw:
        yield gw


def ledger(gateway: InProcessGateway) -> list[tuple[Any, ...]]:
    gateway.run(gateway.app.state.accounting.ledger.flush())
    with sqlite3.connect(Path.cwd() / "data" / "anygate.db") as db:
        return db.execute("select route, provider_id, model, input_tokens, output_tokens, estimated, status "
                          "from usage_ledger order by created_at").fetchall()  # fmt: skip


def test_the_request_passes_through_with_the_providers_key_and_version(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    raw = (
        b'{"model": "claude-sonnet-4-5", "max_tokens": 50,  "messages": [{"role": "user", "content": "hi"}],'
        b' "thinking": {"type": "enabled", "budget_tokens": 2048}, "container": "c-1"}'
    )
    headers = {"x-api-key": ADMIN_KEY, "anthropic-beta": "context-1m-2025-08-07", "content-type": "application/json"}
    with httpx2.Client(base_url=gateway.url, transport=gateway.transport()) as http:
        answer = http.post("/v1/messages", content=raw, headers=headers)
    assert answer.status_code == 200, answer.text
    [sent] = upstream.requests_to("/v1/messages")
    assert sent.body == raw.replace(b"claude-sonnet-4-5", b"claude-sonnet-4-5-20250929")  # only the model
    assert sent.headers["x-api-key"] == PROVIDER_KEY and "authorization" not in sent.headers
    assert sent.headers["anthropic-version"] == "2023-06-01"  # the client sent none: the provider's default
    assert sent.headers["anthropic-beta"] == "context-1m-2025-08-07"
    assert answer.json()["usage"]["cache_read_input_tokens"] == 1000  # the upstream's body as it came
    assert not upstream.requests_to("/v1/chat/completions")


def test_the_stream_passes_through_as_bytes_and_its_usage_is_counted(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    upstream.script(*[Reply(stable=True)] * 3, path="/v1/messages")
    with gateway.anthropic(default_headers={"anthropic-version": "2023-06-01"}) as client:
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=HI) as stream:
            message = stream.get_final_message()
    assert message.content[0].text == "Hello from the fake upstream!"  # type: ignore[union-attr]
    assert message.usage.cache_read_input_tokens == 1000
    with gateway.client() as http:
        body = {"model": MODEL, "max_tokens": 50, "messages": HI, "stream": True}
        raw = http.post("/v1/messages", json=body).content
    sent = upstream.requests_to("/v1/messages")[-1]
    assert raw == b"".join(upstream.answer("POST", "http://upstream.test/v1/messages", {}, sent.body).events)
    rows = ledger(gateway)
    # Anthropic counts input without the cache: the ledger counts it all (200 fresh + 1000 read).
    assert rows == [("messages", "claude", "claude-sonnet-4-5-20250929", 1200, 40, 0, 200)] * 2


def test_an_anthropic_upstreams_errors_reach_the_sdk_as_they_came(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    upstream.script(Reply(status=529, json=overloaded), path="/v1/messages")
    with gateway.anthropic() as client, pytest.raises(anthropic.OverloadedError) as caught:
        client.messages.create(model=MODEL, max_tokens=10, messages=HI)
    assert caught.value.body == overloaded


def test_a_stream_cut_before_message_stop_ends_with_an_error_event(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(reset_after_events=3), path="/v1/messages")
    with gateway.client() as http:
        raw = http.post("/v1/messages", json={"model": MODEL, "max_tokens": 50, "messages": HI, "stream": True})
    assert raw.content.startswith(b"event: message_start")
    assert raw.content.endswith(b"\n\n") and b"event: error\ndata: " in raw.content
    assert b"event: message_stop" not in raw.content


def test_fallback_from_an_anthropic_provider_to_a_chat_one_translates_there(tmp_path: Path) -> None:
    """One request, two APIs: the native provider fails, its fallback speaks chat completions."""
    native = FakeUpstream(models=["claude-x"]).in_memory()
    native.script(Reply.error(529, "overloaded"), path="/v1/messages")
    provider = fake_provider(native, "claude", api="anthropic", auth="x-api-key")
    chat = {**fake_provider(native, "local"), "models": ["llama"]}
    settings = gateway_settings(provider, chat, fallbacks={"claude/claude-x": ["local/llama"]})
    with inprocess_gateway(settings, native) as gw, gw.anthropic() as client:
        message = client.messages.create(model="claude/claude-x", max_tokens=10, messages=HI)
    assert message.content[0].text == "Hello from the fake upstream!"  # type: ignore[union-attr]
    assert [r.path for r in native.requests if r.method == "POST"] == ["/v1/messages", "/v1/chat/completions"]
