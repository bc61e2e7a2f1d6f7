"""Translated streams on a real socket: events reach the client as the upstream sends them, and a client
that leaves midway is charged for what was generated."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import ADMIN_KEY, RunningGateway, fake_provider, gateway_settings, serve_gateway

pytestmark = pytest.mark.sockets

MODEL = "fake/fake-model"
HI: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def served() -> Iterator[tuple[FakeUpstream, RunningGateway]]:
    with FakeUpstream.start_in_thread() as upstream, serve_gateway(gateway_settings(fake_provider(upstream))) as gw:
        yield upstream, gw


def test_a_translated_stream_arrives_as_the_upstream_sends_it(served: tuple[FakeUpstream, RunningGateway]) -> None:
    upstream, gw = served
    # The upstream sends its role chunk and two words, then says nothing more until the client has gone.
    upstream.script(Reply(content="aaaabbbbcccc", chunks=3, hang_after_events=3), path="/v1/chat/completions")
    with anthropic.Anthropic(base_url=gw.url, api_key=ADMIN_KEY, max_retries=0) as client:
        with client.messages.stream(model=MODEL, max_tokens=20, messages=HI) as stream:
            texts = iter(stream.text_stream)
            assert next(texts) + next(texts) == "aaaabbbb"  # before the upstream has finished
    rows = ledger_rows(gw, Path.cwd() / "data" / "anygate.db")
    assert rows == [("messages", 499)]  # the client left: recorded as such, charged what it got


def ledger_rows(gw: RunningGateway, database: Path) -> list[tuple[Any, ...]]:
    """The ledger's rows, once the gateway has noticed the client leaving (``GET /v1/usage`` writes them)."""
    rows: list[tuple[Any, ...]] = []
    for _ in range(200):
        with gw.client() as http:
            assert http.get("/v1/usage").status_code == 200
        with sqlite3.connect(database) as db:
            rows = db.execute("select route, status from usage_ledger").fetchall()
        if rows:
            break
        time.sleep(0.02)
    return rows


def test_pings_keep_a_slow_translated_stream_alive_over_the_network() -> None:
    with (
        FakeUpstream.start_in_thread(event_delay=0.3) as upstream,
        serve_gateway(gateway_settings(fake_provider(upstream), stream_keepalive_interval=0.03)) as gw,
        gw.client() as http,
    ):
        body = {"model": MODEL, "max_tokens": 20, "messages": HI, "stream": True}
        raw = http.post("/v1/messages", json=body).content
    assert raw.startswith(b"event: message_start") and raw.endswith(b'data: {"type":"message_stop"}\n\n')
    assert b"event: ping" in raw
    assert raw.count(b"event: content_block_delta") == 3  # nothing lost between the pings
