"""Fault injection: each upstream failure, and what the client observes through the gateway."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import orjson
import pytest

from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import ADMIN_KEY, RunningGateway, fake_provider, gateway_settings, serve_gateway

CHAT = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread() as up:
        yield up


def sdk(gw: RunningGateway) -> openai.OpenAI:
    # The SDK's own retries are off: what the test sees is what the gateway did.
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=ADMIN_KEY, max_retries=0, timeout=30)


def stream_events(gw: RunningGateway, body: dict[str, Any], **headers: str) -> list[bytes]:
    with (
        gw.client() as client,
        client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}, headers=headers) as response,
    ):
        assert response.status_code == 200, response.read()
        raw = b"".join(response.iter_bytes())
    return [event for event in raw.split(b"\n\n") if event]


def chat_paths(up: FakeUpstream) -> list[str]:
    return [r.path for r in up.requests if r.path.endswith("/chat/completions")]


def test_429_then_success_honours_retry_after(upstream: FakeUpstream) -> None:
    upstream.script(Reply.rate_limited(retry_after=1), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream, max_retries=2))) as gw:
        started = time.monotonic()
        reply = sdk(gw).chat.completions.create(**CHAT)
        waited = time.monotonic() - started
    assert reply.choices[0].message.content == "Hello from the fake upstream!"
    assert len(chat_paths(upstream)) == 2
    assert waited >= 0.9  # the gateway waited for Retry-After before asking again (not a speed test)


def test_429_with_a_long_retry_after_is_passed_to_the_client(upstream: FakeUpstream) -> None:
    upstream.script(Reply.rate_limited(retry_after=120), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream, max_retries=2))) as gw:
        with pytest.raises(openai.RateLimitError) as caught:
            sdk(gw).chat.completions.create(**CHAT)
    assert caught.value.response.headers["retry-after"] == "120"
    assert len(chat_paths(upstream)) == 1


def test_500_then_success(upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(500, "boom"), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream, max_retries=2))) as gw:
        reply = sdk(gw).chat.completions.create(**CHAT)
    assert reply.choices[0].message.content
    assert len(chat_paths(upstream)) == 2


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_never_retried(upstream: FakeUpstream, status: int) -> None:
    upstream.script(Reply.error(status, "your fault"), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream, max_retries=3))) as gw:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(gw).chat.completions.create(**CHAT)
    assert caught.value.status_code == status
    assert caught.value.body["message"] == "your fault"  # type: ignore[index]
    assert len(chat_paths(upstream)) == 1


def test_reset_mid_stream_ends_with_an_error_event(upstream: FakeUpstream) -> None:
    upstream.script(Reply(reset_after_events=2), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream, max_retries=2))) as gw:
        events = stream_events(gw, CHAT)
    assert len(events) >= 2
    final = orjson.loads(events[-1].removeprefix(b"data: "))
    assert final["error"]["type"] == "upstream_error"
    assert b"data: [DONE]" not in events
    assert len(chat_paths(upstream)) == 1  # never retried after the first byte reached the client


def test_reset_before_the_first_event_is_retried(upstream: FakeUpstream) -> None:
    upstream.script(Reply(reset_after_events=0), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream, max_retries=2))) as gw:
        events = stream_events(gw, CHAT)
    assert events[-1] == b"data: [DONE]"
    assert len(chat_paths(upstream)) == 2


def test_hang_before_the_first_byte_is_a_504(upstream: FakeUpstream) -> None:
    upstream.script(Reply(hang_before_headers=True), path="/v1/chat/completions")
    provider = fake_provider(upstream, timeout=0.5)
    with serve_gateway(gateway_settings(provider)) as gw:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(gw).chat.completions.create(**CHAT)
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "upstream_timeout"  # type: ignore[index]


def test_hang_between_events_ends_the_stream_with_a_timeout_event(upstream: FakeUpstream) -> None:
    upstream.script(Reply(hang_after_events=1), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream, timeout=0.5))) as gw:
        events = stream_events(gw, CHAT)
    final = orjson.loads(events[-1].removeprefix(b"data: "))
    assert final["error"]["code"] == "upstream_timeout"
    assert b"data: [DONE]" not in events


def test_invalid_json_body_is_a_502(upstream: FakeUpstream) -> None:
    upstream.script(Reply.invalid_json(), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream))) as gw:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(gw).chat.completions.create(**CHAT)
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "upstream_error"  # type: ignore[index]


def test_stream_without_done_ends_with_an_error_event(upstream: FakeUpstream) -> None:
    upstream.script(Reply(send_done=False, finish_reason="length"), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream))) as gw:
        events = stream_events(gw, CHAT)
    final = orjson.loads(events[-1].removeprefix(b"data: "))
    assert final["error"]["code"] == "stream_truncated"


def test_a_key_that_returns_401_is_skipped_for_the_next_key(upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(401, "bad key"), path="/v1/chat/completions")
    provider = fake_provider(upstream, api_keys=["sk-second-key-0000"])
    with serve_gateway(gateway_settings(provider)) as gw:
        client = sdk(gw)
        replies = [client.chat.completions.create(**CHAT) for _ in range(3)]
    assert all(r.choices[0].message.content for r in replies)
    keys = [r.headers["authorization"] for r in upstream.requests if r.path.endswith("/chat/completions")]
    refused = keys[0]
    assert keys.count(refused) == 1  # the refused key cooled down: not used again
    assert len(keys) == 4


def test_an_upstream_down_from_the_start_is_a_502() -> None:
    with FakeUpstream.start_in_thread() as up:
        provider = fake_provider(up, models=["fake-model"])
    with serve_gateway(gateway_settings(provider)) as gw:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(gw).chat.completions.create(**CHAT)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_unavailable"  # type: ignore[index]


def test_fallback_chain_whose_first_two_links_fail() -> None:
    with (
        FakeUpstream.start_in_thread(models=["m1"]) as first,
        FakeUpstream.start_in_thread(models=["m2"]) as second,
        FakeUpstream.start_in_thread(models=["m3"]) as third,
    ):
        first.script(Reply.error(500), path="/v1/chat/completions")
        second.script(Reply.error(503), path="/v1/chat/completions")
        settings = gateway_settings(
            fake_provider(first, "one"),
            fake_provider(second, "two"),
            fake_provider(third, "three"),
            fallbacks={"one/m1": ["two/m2", "three/m3"]},
        )
        with serve_gateway(settings) as gw:
            reply = sdk(gw).chat.completions.create(**{**CHAT, "model": "one/m1"})
        assert reply.choices[0].message.content
        assert [r.model for r in third.requests_to("/v1/chat/completions")] == ["m3"]
        assert len(chat_paths(first)) == 1 and len(chat_paths(second)) == 1


def test_a_model_served_by_two_providers_survives_one_failing() -> None:
    with (
        FakeUpstream.start_in_thread(models=["shared"]) as broken,
        FakeUpstream.start_in_thread(models=["shared"]) as working,
    ):
        broken.script_many([Reply.error(502)] * 20, path="/v1/chat/completions")
        settings = gateway_settings(fake_provider(broken, "a"), fake_provider(working, "b"))
        with serve_gateway(settings) as gw:
            client = sdk(gw)
            replies = [client.chat.completions.create(**{**CHAT, "model": "shared"}) for _ in range(10)]
        assert all(r.choices[0].message.content for r in replies)
        # after three consecutive failures the broken deployment is ejected and no longer tried first
        assert len(chat_paths(broken)) <= 5


def test_weights_share_the_load() -> None:
    with (
        FakeUpstream.start_in_thread(models=["shared"]) as heavy,
        FakeUpstream.start_in_thread(models=["shared"]) as light,
    ):
        settings = gateway_settings(fake_provider(heavy, "heavy", weight=9), fake_provider(light, "light", weight=1))
        with serve_gateway(settings) as gw:
            client = sdk(gw)
            for _ in range(60):
                client.chat.completions.create(**{**CHAT, "model": "shared"})
        assert len(chat_paths(heavy)) > len(chat_paths(light))
        assert len(chat_paths(heavy)) + len(chat_paths(light)) == 60


def test_priority_tiers_are_tried_in_order() -> None:
    with (
        FakeUpstream.start_in_thread(models=["shared"]) as primary,
        FakeUpstream.start_in_thread(models=["shared"]) as backup,
    ):
        settings = gateway_settings(fake_provider(primary, "primary"), fake_provider(backup, "backup", priority=1))
        with serve_gateway(settings) as gw:
            client = sdk(gw)
            for _ in range(5):
                client.chat.completions.create(**{**CHAT, "model": "shared"})
        assert len(chat_paths(primary)) == 5 and not chat_paths(backup)


def test_client_disconnect_cancels_the_upstream_request(upstream: FakeUpstream) -> None:
    upstream.script(Reply(hang_before_headers=True), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream))) as gw:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx2.Client(base_url=gw.url, headers=headers, timeout=0.5) as client:
            with pytest.raises(httpx2.ReadTimeout):
                client.post("/v1/chat/completions", json=CHAT)
        deadline = time.monotonic() + 5
        while upstream.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert upstream.disconnects == 1


def test_timeout_header_is_for_admins_only(upstream: FakeUpstream) -> None:
    upstream.script(Reply(first_byte_delay=2), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream))) as gw, gw.client() as client:
        response = client.post("/v1/chat/completions", json=CHAT, headers={"x-anygate-timeout": "0.3"})
        bad = client.post("/v1/chat/completions", json=CHAT, headers={"x-anygate-timeout": "soon"})
    assert response.status_code == 504
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-anygate-timeout"


def test_active_health_check_reports_in_ready_detail(upstream: FakeUpstream) -> None:
    with serve_gateway(gateway_settings(fake_provider(upstream))) as gw, gw.client() as client:
        checked = client.post("/v1/providers/health-check").json()
        ready = client.get("/health/ready").json()
    assert checked["status"] == "completed"
    assert checked["providers"][0]["healthy"] is True
    assert ready["providers"]["fake"]["healthy"] is True


def test_a_refused_key_is_remembered_without_asking_the_upstream_again(upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(401, "bad key"), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream))) as gw:
        client = sdk(gw)
        for _ in range(2):
            with pytest.raises(openai.AuthenticationError) as caught:
                client.chat.completions.create(**CHAT)
            assert caught.value.body["message"] == "bad key"  # type: ignore[index]
    assert len(chat_paths(upstream)) == 1


def test_a_403_for_one_model_leaves_the_provider_s_other_models_alone() -> None:
    with FakeUpstream.start_in_thread(models=["open", "closed"]) as up:
        up.script(Reply.error(403, "no access to this model"), path="/v1/chat/completions")
        with serve_gateway(gateway_settings(fake_provider(up))) as gw:
            client = sdk(gw)
            with pytest.raises(openai.PermissionDeniedError):
                client.chat.completions.create(**{**CHAT, "model": "fake/closed"})
            reply = client.chat.completions.create(**{**CHAT, "model": "fake/open"})
        assert reply.choices[0].message.content


def test_a_rate_limited_model_answers_429_with_the_remaining_wait(upstream: FakeUpstream) -> None:
    upstream.script(Reply.rate_limited(retry_after=60), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream))) as gw:
        client = sdk(gw)
        for _ in range(2):
            with pytest.raises(openai.RateLimitError) as caught:
                client.chat.completions.create(**CHAT)
            assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
    assert len(chat_paths(upstream)) == 1
