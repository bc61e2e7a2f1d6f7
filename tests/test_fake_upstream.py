"""The fake upstream behaves like an OpenAI-compatible server and fails exactly as scripted."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import openai
import pytest

from tests.support.fake_upstream import FakeUpstream, Reply, Usage, priced_model

pytestmark = pytest.mark.sockets  # the fake upstream's own server, on a loopback port

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
STREAM_WITH_USAGE = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
SHORT = aiohttp.ClientTimeout(total=0.1)


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[tuple[FakeUpstream, aiohttp.ClientSession]]:
    async with FakeUpstream(**options) as up, aiohttp.ClientSession() as session:
        yield up, session


def parse_sse(raw: bytes) -> list[Any]:
    """The data of each event: parsed JSON, or the raw string (``[DONE]``)."""
    datas = []
    for block in raw.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                datas.append(data if data == "[DONE]" else json.loads(data))
    return datas


async def chat(session: aiohttp.ClientSession, up: FakeUpstream, body: dict[str, Any] = CHAT) -> aiohttp.ClientResponse:
    return await session.post(f"{up.base_url}/chat/completions", json=body)


@pytest.mark.asyncio
async def test_default_chat_completion_echoes_model_and_reports_usage() -> None:
    async with serving(content="Hello!", usage=Usage(7, 3)) as (up, session):
        response = await chat(session, up)
        body = await response.json()
    assert response.status == 200
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-test"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello!", "refusal": None}
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


@pytest.mark.asyncio
async def test_records_method_path_lowercase_headers_and_exact_body() -> None:
    raw = b'{"model":"m",  "messages":[]}'
    async with serving() as (up, session):
        headers = {"Authorization": "Bearer sk-provider", "Content-Type": "application/json"}
        await session.post(f"{up.base_url}/chat/completions?x=1", data=raw, headers=headers)
    [seen] = up.requests
    assert (seen.method, seen.path, seen.query) == ("POST", "/v1/chat/completions", {"x": "1"})
    assert seen.headers["authorization"] == "Bearer sk-provider"
    assert "cookie" not in seen.headers
    assert seen.body == raw
    assert seen.json == {"model": "m", "messages": []}
    assert seen.model == "m"


@pytest.mark.asyncio
async def test_stream_splits_content_and_ends_with_done_without_usage_unless_asked() -> None:
    async with serving(content="abcdef", chunks=3) as (up, session):
        response = await chat(session, up, {**CHAT, "stream": True})
        events = parse_sse(await response.read())
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)
    deltas = [chunk["choices"][0]["delta"].get("content") for chunk in chunks]
    assert deltas == ["", "ab", "cd", "ef", None]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.asyncio
async def test_stream_sends_usage_chunk_when_asked() -> None:
    async with serving(usage=Usage(4, 2)) as (up, session):
        events = parse_sse(await (await chat(session, up, STREAM_WITH_USAGE)).read())
    *chunks, usage_chunk, done = events
    assert done == "[DONE]"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert all(chunk["usage"] is None for chunk in chunks)


@pytest.mark.asyncio
async def test_stream_can_omit_usage_and_done() -> None:
    async with serving() as (up, session):
        up.script(Reply(omit_usage=True, send_done=False))
        events = parse_sse(await (await chat(session, up, STREAM_WITH_USAGE)).read())
    assert "[DONE]" not in events
    assert all(event["choices"] for event in events)


@pytest.mark.asyncio
async def test_scripted_replies_are_consumed_in_order_then_default_returns() -> None:
    async with serving() as (up, session):
        up.script_many([Reply.rate_limited(retry_after=2), Reply.error(500)])
        limited, failed, ok = [await chat(session, up) for _ in range(3)]
        assert limited.status == 429
        assert limited.headers["Retry-After"] == "2"
        assert (await limited.json())["error"]["type"] == "rate_limit_error"
        assert failed.status == 500
        assert (await failed.json())["error"]["type"] == "server_error"
        assert ok.status == 200


@pytest.mark.asyncio
async def test_a_reply_scripted_for_a_path_waits_for_that_path() -> None:
    async with serving() as (up, session):
        up.script(Reply.error(401, code="invalid_api_key"), path="/v1/chat/completions")
        models = await session.get(f"{up.base_url}/models")
        denied = await chat(session, up)
        assert models.status == 200
        assert denied.status == 401
        assert (await denied.json())["error"]["code"] == "invalid_api_key"


@pytest.mark.asyncio
async def test_invalid_json_and_huge_bodies() -> None:
    async with serving() as (up, session):
        up.script(Reply.invalid_json(), Reply.huge(1_000_000))
        broken = await chat(session, up)
        with pytest.raises(json.JSONDecodeError):
            json.loads(await broken.read())
        huge = await (await chat(session, up)).json()
    assert broken.status == 200
    assert len(huge["choices"][0]["message"]["content"]) == 1_000_000


@pytest.mark.asyncio
async def test_paced_stream_and_slow_first_byte() -> None:
    async with serving(content="abc", chunks=3) as (up, session):
        up.script(Reply(first_byte_delay=0.05, event_delay=0.01))
        started = time.monotonic()
        response = await chat(session, up, {**CHAT, "stream": True})
        first_byte = time.monotonic() - started
        await response.read()
        total = time.monotonic() - started
    assert first_byte >= 0.05
    assert total - first_byte >= 0.01 * 5  # six events, five gaps


@pytest.mark.asyncio
async def test_hang_before_headers_times_out_the_client_and_counts_the_disconnect() -> None:
    async with serving() as (up, session):
        up.script(Reply(hang_before_headers=True))
        with pytest.raises(asyncio.TimeoutError):
            await session.post(f"{up.base_url}/chat/completions", json=CHAT, timeout=SHORT)
        await asyncio.sleep(0.05)
        assert up.disconnects == 1
        assert len(up.requests) == 1


@pytest.mark.asyncio
async def test_hang_after_events_delivers_only_those_events() -> None:
    async with serving() as (up, session):
        up.script(Reply(hang_after_events=2))
        received = b""
        async with session.post(f"{up.base_url}/chat/completions", json={**CHAT, "stream": True}) as response:
            with pytest.raises(asyncio.TimeoutError):
                async with asyncio.timeout(0.1):
                    async for data in response.content.iter_any():
                        received += data
    assert len(parse_sse(received)) == 2


@pytest.mark.asyncio
async def test_server_close_releases_a_hanging_request() -> None:
    up = await FakeUpstream().start()
    up.script(Reply(hang_before_headers=True))
    async with aiohttp.ClientSession() as session:
        pending = asyncio.ensure_future(chat(session, up))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await up.close()
        with pytest.raises(aiohttp.ClientError):
            await pending
    assert time.monotonic() - started < 0.4


@pytest.mark.asyncio
async def test_reset_mid_stream_delivers_the_events_before_it() -> None:
    async with serving() as (up, session):
        up.script(Reply(reset_after_events=2))
        received = b""
        async with session.post(f"{up.base_url}/chat/completions", json={**CHAT, "stream": True}) as response:
            with pytest.raises(aiohttp.ClientPayloadError, match="reset"):
                async for data in response.content.iter_any():
                    received += data
    assert len(parse_sse(received)) == 2


@pytest.mark.asyncio
async def test_reset_before_headers() -> None:
    async with serving() as (up, session):
        up.script(Reply(reset_before_headers=True))
        with pytest.raises(aiohttp.ClientOSError, match="reset"):
            await chat(session, up)


@pytest.mark.asyncio
async def test_raw_events_are_sent_verbatim() -> None:
    events = [b": keep-alive\n\n", b'data: {"x":1}\r\n\r\n']
    async with serving() as (up, session):
        up.script(Reply(raw_events=events))
        assert await (await chat(session, up)).read() == b"".join(events)


@pytest.mark.asyncio
async def test_models_listing_pricing_and_missing_endpoint() -> None:
    async with serving(models=["a", priced_model("b", prompt="0.5", completion="1")]) as (up, session):
        listing = await (await session.get(f"{up.base_url}/models")).json()
        tags = await (await session.get(f"{up.url}/api/tags")).json()
        up.has_models_endpoint = False
        missing = await session.get(f"{up.base_url}/models")
    assert [model["id"] for model in listing["data"]] == ["a", "b"]
    assert listing["data"][1]["pricing"] == {"prompt": "0.5", "completion": "1"}
    assert [tag["name"] for tag in tags["models"]] == ["a", "b"]
    assert missing.status == 404


@pytest.mark.asyncio
async def test_quota_and_key_shapes() -> None:
    async with serving() as (up, session):
        up.quota["cost"]["used"] = 1.5
        quota = await (await session.get(f"{up.url}/quota")).json()
        key = await (await session.get(f"{up.base_url}/key")).json()
    assert quota["cost"]["used"] == 1.5
    assert set(quota) == {"key", "tokens", "cost"}
    assert key["data"]["limit_reset"] == "monthly"
    assert key["data"]["rate_limit"]["interval"] == "10s"


@pytest.mark.asyncio
async def test_completions_embeddings_and_responses() -> None:
    async with serving(content="done") as (up, session):
        text = await (await session.post(f"{up.base_url}/completions", json={"model": "m", "prompt": "x"})).json()
        vectors = await (
            await session.post(f"{up.base_url}/embeddings", json={"model": "e", "input": ["a", "b"]})
        ).json()
        answer = await (await session.post(f"{up.base_url}/responses", json={"model": "r", "input": "x"})).json()
        streamed = await (await session.post(f"{up.base_url}/responses", json={"model": "r", "stream": True})).read()
    assert text["choices"][0]["text"] == "done"
    assert [item["index"] for item in vectors["data"]] == [0, 1]
    assert answer["output"][0]["content"][0]["text"] == "done"
    assert answer["usage"]["total_tokens"] == 15
    types = [event["type"] for event in parse_sse(streamed)]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert b"event: response.output_text.delta\n" in streamed


def test_threaded_upstream_serves_the_sync_openai_sdk() -> None:
    with FakeUpstream.start_in_thread(content="sync ok") as up:
        up.script(Reply.error(400, "bad"), path="/v1/embeddings")
        with openai.OpenAI(base_url=up.base_url, api_key="sk-test", max_retries=0) as client:
            completion = client.chat.completions.create(model="m", messages=[])
            chunks = list(
                client.chat.completions.create(
                    model="m", messages=[], stream=True, stream_options={"include_usage": True}
                )
            )
            with pytest.raises(openai.BadRequestError):
                client.embeddings.create(model="e", input="x")
    assert completion.choices[0].message.content == "sync ok"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "sync ok"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 15
    assert up.requests[0].headers["authorization"] == "Bearer sk-test"
