"""A stream's last events go out with the end of its answer when the upstream's body has ended with them
(one write to the client, not two), and never when more may come or the upstream fails after them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.fake_transport import FakeNetwork
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import ADMIN_KEY, fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

CHAT = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[InProcessGateway, FakeUpstream]]:
    monkeypatch.chdir(tmp_path)
    network = FakeNetwork()
    upstream = network.add(FakeUpstream())
    with inprocess_gateway(gateway_settings(fake_provider(upstream)), transport=network) as gw:
        yield gw, upstream


def body_messages(gw: InProcessGateway) -> list[tuple[bytes, bool]]:
    """The answer's body messages as the server gets them: (body, more_body)."""

    async def call() -> list[tuple[bytes, bool]]:
        body = orjson.dumps(CHAT)
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[tuple[bytes, bool]] = []

        async def receive() -> dict[str, Any]:
            if not messages:
                await asyncio.sleep(3600)  # the client stays to the end
            return messages.pop()

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                sent.append((message.get("body", b""), message.get("more_body", False)))

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"authorization", f"Bearer {ADMIN_KEY}".encode()), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
            "state": {},
        }
        await gw.app(scope, receive, send)
        return sent

    return gw.run(call())


def test_the_last_events_go_out_with_the_end_of_the_answer(gateway: tuple[InProcessGateway, FakeUpstream]) -> None:
    gw, upstream = gateway
    upstream.script(Reply(content="one two three", chunks=3), path="/v1/chat/completions")

    sent = body_messages(gw)

    # The upstream hands out one event a read: the last, [DONE], closes the answer itself (before, an empty
    # closing message followed it: a write of its own, the chunked body's end).
    assert sent[-1] == (b"data: [DONE]\n\n", False)
    assert all(more for _, more in sent[:-1]) and all(body for body, _ in sent)
    assert b"".join(body for body, _ in sent).count(b"chat.completion.chunk") >= 3


def test_events_before_an_upstream_failure_are_all_sent_then_the_error_event(
    gateway: tuple[InProcessGateway, FakeUpstream],
) -> None:
    """The upstream resets right after its last event: it has not ended, so nothing is held back for an end
    that never comes; the events reach the client before the error event."""
    gw, upstream = gateway
    upstream.script(Reply(content="one two", chunks=2, reset_after_events=3), path="/v1/chat/completions")

    sent = body_messages(gw)

    streamed = b"".join(body for body, _ in sent)
    events = [event for event in streamed.split(b"\n\n") if event]
    assert len(events) == 4  # three events, then the error event
    assert all(b"chat.completion.chunk" in event for event in events[:3])
    assert orjson.loads(events[-1].removeprefix(b"data: "))["error"]["type"] == "upstream_error"
    assert sent[-1][1] is False and b"[DONE]" not in streamed
