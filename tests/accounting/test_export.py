"""Per-generation telemetry export (``export:``): one JSON record per request, batched to an HTTP endpoint
and/or appended to a file, off the request path; the prompt and completion only for the keys that ask."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anygate.accounting import export as exporter
from anygate.transport.aiohttp_transport import AiohttpTransport
from tests.support.fake_upstream import FakeUpstream, Reply, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

COLLECTOR = "http://collector.test/v1/generations"
CHAT = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "What is 2+2?"}]}
FIELDS = {
    "request_id", "time", "route", "key_id", "key_alias", "user_id", "provider", "model", "status", "stream",
    "input_tokens", "output_tokens", "cost_usd", "estimated", "byok", "latency_ms", "ttft_ms", "error",
    "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "audio_tokens", "image_tokens", "cost_source",
}  # fmt: skip


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


def exported(up: FakeUpstream, path: str = "/v1/generations") -> list[dict[str, Any]]:
    return [entry for request in up.requests_to(path) for entry in json.loads(request.body)]


def export_settings(up: FakeUpstream, **export: Any) -> Any:
    http = {"url": COLLECTOR, "flush_interval": 0.05, "headers": {"Authorization": "Bearer collector-token"}}
    values = {"http": {**http, **export.pop("http", {})}, **export}
    return gateway_settings(fake_provider(up), export=values, prices={"fake/*": {"input": 1, "output": 2}})


def make_key(gw: InProcessGateway, alias: str) -> str:
    with gw.client() as http:
        user = http.post("/v1/users", json={"name": f"user-{alias}"}).json()["id"]
        created = http.post("/v1/keys", json={"alias": alias, "user_id": user})
    assert created.status_code == 201, created.text
    key: str = created.json()["key"]
    return key


def metric(gw: InProcessGateway, sink: str, outcome: str) -> float:
    with gw.client() as http:
        text = http.get("/metrics").text
    found = re.search(rf'^anygate_export_records_total\{{outcome="{outcome}",sink="{sink}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_each_generation_is_one_record_with_every_field_batched_to_the_endpoint() -> None:
    up = FakeUpstream(usage=Usage(11, 7)).in_memory()
    up.script_many([Reply(json={"ok": True})] * 10, path="/v1/generations")
    with inprocess_gateway(export_settings(up, http={"batch_size": 2}), up) as gw:
        key = make_key(gw, "course-key")
        with gw.client(key) as http:
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
            assert http.post("/v1/chat/completions", json={**CHAT, "stream": True}).status_code == 200
            assert http.post("/v1/embeddings", json={"model": "fake/fake-model", "input": "hi"}).status_code == 200
        eventually(lambda: len(exported(up)) == 3)
    posts = up.requests_to("/v1/generations")
    assert all(p.headers["authorization"] == "Bearer collector-token" for p in posts)
    assert all(p.headers["content-type"] == "application/json" for p in posts)
    assert 2 <= len(posts) <= 3  # batches: a JSON array each
    records = exported(up)
    assert all(set(r) == FIELDS | {"requested_model"} for r in records)  # no text unless asked
    chat, streamed, embedded = sorted(records, key=lambda r: (r["route"], r["stream"]))
    assert (chat["route"], chat["stream"], streamed["stream"], embedded["route"]) == (
        "chat/completions",
        False,
        True,
        "embeddings",
    )
    assert chat["key_alias"] == "course-key" and chat["user_id"] is not None and chat["key_id"] != "admin"
    assert (chat["provider"], chat["model"], chat["requested_model"]) == ("fake", "fake-model", "fake/fake-model")
    assert (chat["status"], chat["error"], chat["byok"], chat["estimated"]) == (200, None, False, False)
    assert (chat["input_tokens"], chat["output_tokens"]) == (11, 7)
    assert chat["cost_usd"] == pytest.approx((11 * 1 + 7 * 2) / 1e6)
    assert chat["latency_ms"] >= chat["ttft_ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", chat["time"])
    assert len({r["request_id"] for r in records}) == 3


def test_a_failed_request_is_recorded_with_its_error() -> None:
    up = FakeUpstream().in_memory()
    up.script(Reply(json={"ok": True}), path="/v1/generations")
    up.script(Reply.error(400, "bad"), path="/v1/chat/completions")
    with inprocess_gateway(export_settings(up), up) as gw, gw.client() as http:
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 400
        eventually(lambda: len(exported(up)) == 1)
    [entry] = exported(up)
    assert (entry["status"], entry["error"], entry["input_tokens"], entry["output_tokens"]) == (
        400,
        "upstream_http_400",
        0,
        0,
    )


def test_prompt_and_completion_only_for_the_keys_that_ask() -> None:
    up = FakeUpstream(content="The answer is 4.").in_memory()
    up.script_many([Reply(json={"ok": True})] * 10, path="/v1/generations")
    with inprocess_gateway(export_settings(up, include_text=True, text_keys=["with-text"]), up) as gw:
        texted, plain = make_key(gw, "with-text"), make_key(gw, "without-text")
        for key in (texted, plain):
            with gw.client(key) as http:
                assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
                assert http.post("/v1/chat/completions", json={**CHAT, "stream": True}).status_code == 200
        eventually(lambda: len(exported(up)) == 4)
    records = {(r["key_alias"], r["stream"]): r for r in exported(up)}
    for stream in (False, True):
        with_text = records[("with-text", stream)]
        assert with_text["prompt"] == CHAT["messages"]
        assert with_text["completion"] == "The answer is 4."
        assert "prompt" not in records[("without-text", stream)]
        assert "completion" not in records[("without-text", stream)]


def test_text_is_never_kept_unless_the_setting_asks_even_for_a_listed_key() -> None:
    up = FakeUpstream().in_memory()
    up.script(Reply(json={"ok": True}), path="/v1/generations")
    with inprocess_gateway(export_settings(up, include_text=False, text_keys=["*"]), up) as gw:
        assert gw.app.state.accounting.export is not None
        assert not gw.app.state.accounting.export.wants_text(gw.app.state.keyring.admin)
        with gw.client() as http:
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
        eventually(lambda: len(exported(up)) == 1)
    assert "prompt" not in exported(up)[0]


def test_a_sink_that_is_down_drops_and_counts_and_the_requests_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # At the stop, the queued records would wait CLOSE_WAIT for a sink that never answers: not the subject here.
    monkeypatch.setattr(exporter, "CLOSE_WAIT", 0.2)
    up = FakeUpstream().in_memory()
    up.script_many([Reply(hang_before_headers=True)] * 50, path="/v1/generations")  # the sink never answers
    settings = export_settings(up, queue_size=2, http={"batch_size": 1, "max_retries": 0, "timeout": 30})
    with inprocess_gateway(settings, up) as gw:
        with gw.client() as http:
            for _ in range(8):
                assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
        # one batch hangs in its POST, two records wait in the queue, the others were dropped
        eventually(lambda: metric(gw, "http", "dropped") == 5)
        assert metric(gw, "http", "sent") == 0
    assert len(up.requests_to("/v1/chat/completions")) == 8


def test_a_failing_sink_is_retried_with_backoff_then_the_batch_is_counted_failed() -> None:
    up = FakeUpstream().in_memory()
    up.script(Reply.error(503, "busy"), Reply.error(503, "busy"), Reply(json={"ok": True}), path="/v1/generations")
    up.script(Reply.error(400, "no"), path="/v1/generations")
    with inprocess_gateway(export_settings(up, http={"max_retries": 2}), up) as gw:
        with gw.client() as http:
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
            eventually(lambda: metric(gw, "http", "sent") == 1)
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
            eventually(lambda: metric(gw, "http", "failed") == 1)  # a 400 is not retried
    assert len(up.requests_to("/v1/generations")) == 4


def test_records_are_appended_to_a_file_as_json_lines() -> None:
    up = FakeUpstream().in_memory()
    path = Path.cwd() / "exports" / "generations.jsonl"
    with inprocess_gateway(gateway_settings(fake_provider(up), export={"file": str(path)}), up) as gw:
        with gw.client() as http:
            for _ in range(3):
                assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    lines = path.read_text(encoding="utf-8").splitlines()  # the last records are written at shutdown
    assert len(lines) == 3
    assert all(set(json.loads(line)) >= FIELDS for line in lines)


@pytest.mark.sockets
def test_records_reach_a_collector_on_loopback_through_the_network() -> None:
    with FakeUpstream.start_in_thread() as upstream, FakeUpstream.start_in_thread() as collector:
        collector.script_many([Reply(json={"ok": True})] * 5, path="/ingest")
        export = {"http": {"url": f"{collector.url}/ingest", "allow_private_network": True, "flush_interval": 0.05}}
        settings = gateway_settings(fake_provider(upstream), export=export)
        with inprocess_gateway(settings, transport=AiohttpTransport()) as gw, gw.client() as http:
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
            eventually(lambda: len(exported(collector, "/ingest")) == 1)
    assert exported(collector, "/ingest")[0]["provider"] == "fake"


def test_a_ticket_keeps_what_is_generated_only_while_it_must() -> None:
    """Without text for the export, events after the usage are not kept (only an estimate needs them)."""
    from anygate.accounting.service import Ticket
    from anygate.auth import Principal
    from anygate.exchange import Exchange

    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
    later = [b'data: {"choices":[{"delta":{"content":"late"}}]}\n\n']
    for keeps_text, expected in ((False, ""), (True, "late")):
        exchange = Exchange("r1", Principal("k", False), "chat/completions", 0.0)
        ticket = Ticket("chat/completions", b"{}", {})
        ticket.keeps_text = keeps_text
        ticket.tap(exchange, [usage])
        ticket.tap(exchange, later)
        assert exchange.usage is not None
        assert ticket.generated_text() == expected
