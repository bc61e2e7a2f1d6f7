"""Timeouts through the gateway: connect, first byte, idle gap, total, and the request's own deadline."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import RunningGateway, default_retries, fake_provider, gateway_settings, serve_gateway

pytestmark = pytest.mark.sockets  # the real transport's timers, against an upstream on a loopback port

CHAT = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread() as up:
        yield up


def chat_count(up: FakeUpstream) -> int:
    return len(up.requests_to("/v1/chat/completions"))


def stream_events(gw: RunningGateway, body: dict[str, Any]) -> list[bytes]:
    with (
        gw.client() as client,
        client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response,
    ):
        assert response.status_code == 200, response.read()
        raw = b"".join(response.iter_bytes())
    return [event for event in raw.split(b"\n\n") if event]


def expect_504(gw: RunningGateway, **create: Any) -> openai.APIStatusError:
    with gw.sdk() as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**{**CHAT, **create})
    assert caught.value.status_code == 504
    assert caught.value.body == {  # the contract's error shape
        "message": "Provider 'fake' did not answer in time",
        "type": "upstream_timeout",
        "param": None,
        "code": "upstream_timeout",
    }
    return caught.value


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A base URL whose TCP handshake never completes: a listener whose accept queue is full."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())  # takes the one place in the queue; nothing is accepted
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


# ------------------------------------------------------------------------------ first byte


@pytest.mark.parametrize("stream", [False, True])
def test_a_slow_first_byte_is_a_504(upstream: FakeUpstream, stream: bool) -> None:
    upstream.script(Reply(first_byte_delay=3), path="/v1/chat/completions")
    provider = fake_provider(upstream, timeouts={"first_byte": 0.5, "idle": 30})
    with serve_gateway(gateway_settings(provider)) as gw:
        expect_504(gw, stream=stream)
    assert chat_count(upstream) == 1


def test_a_slow_first_byte_is_retried_as_a_timeout(upstream: FakeUpstream) -> None:
    upstream.script(Reply(first_byte_delay=3), path="/v1/chat/completions")
    provider = fake_provider(upstream, max_retries=1, timeouts={"first_byte": 0.5, "idle": 30})
    with serve_gateway(gateway_settings(provider)) as gw, gw.sdk() as client:
        reply = client.chat.completions.create(**CHAT)
    assert reply.choices[0].message.content
    assert chat_count(upstream) == 2


@pytest.mark.parametrize("stream", [False, True])
def test_the_first_byte_may_take_longer_than_the_idle_gap(upstream: FakeUpstream, stream: bool) -> None:
    # A model that thinks before it answers: a long first-byte wait, a short gap between events.
    upstream.script(Reply(first_byte_delay=1), path="/v1/chat/completions")
    provider = fake_provider(upstream, timeouts={"first_byte": 10, "idle": 0.3})
    with serve_gateway(gateway_settings(provider)) as gw:
        if stream:
            events = stream_events(gw, CHAT)
            assert events[-1] == b"data: [DONE]"
        else:
            with gw.sdk() as client:
                assert client.chat.completions.create(**CHAT).choices[0].message.content
    assert chat_count(upstream) == 1


def test_a_stream_whose_first_event_never_comes_is_a_504_not_a_started_stream(upstream: FakeUpstream) -> None:
    upstream.script(Reply(hang_after_events=0), path="/v1/chat/completions")  # headers, then nothing
    provider = fake_provider(upstream, timeouts={"first_byte": 0.5, "idle": 60})
    with serve_gateway(gateway_settings(provider)) as gw:
        expect_504(gw, stream=True)


def test_the_idle_gap_applies_between_events_after_the_first(upstream: FakeUpstream) -> None:
    upstream.script(Reply(hang_after_events=2), path="/v1/chat/completions")
    provider = fake_provider(upstream, timeouts={"first_byte": 60, "idle": 0.5})
    with serve_gateway(gateway_settings(provider)) as gw:
        events = stream_events(gw, CHAT)
    assert len(events) == 3
    assert orjson.loads(events[-1].removeprefix(b"data: "))["error"]["code"] == "upstream_timeout"


# ------------------------------------------------------------------------------ connect and total


def test_a_connect_timeout_is_a_504(black_hole: str) -> None:
    provider = {
        "id": "fake",
        "type": "custom",
        "base_url": black_hole,
        "api_key": "sk-fake-provider-key-abcdef",
        "allow_private_network": True,
        "models": ["fake-model"],
        "max_retries": 1,
        "timeouts": {"connect": 0.3},
    }
    with serve_gateway(gateway_settings(provider)) as gw:
        expect_504(gw)


def test_the_total_timeout_ends_a_long_stream_with_a_timeout_event() -> None:
    with FakeUpstream.start_in_thread(chunks=50, event_delay=0.1) as up:
        provider = fake_provider(up, timeouts={"total": 1, "idle": 30, "first_byte": 30})
        with serve_gateway(gateway_settings(provider)) as gw:
            events = stream_events(gw, CHAT)
    assert 1 < len(events) < 50
    assert orjson.loads(events[-1].removeprefix(b"data: "))["error"]["code"] == "upstream_timeout"
    assert b"data: [DONE]" not in events


def test_the_total_timeout_bounds_a_slow_answer(upstream: FakeUpstream) -> None:
    upstream.script(Reply(first_byte_delay=3), path="/v1/chat/completions")
    provider = fake_provider(upstream, timeouts={"total": 0.5, "first_byte": 30})
    with serve_gateway(gateway_settings(provider)) as gw:
        expect_504(gw)


# ------------------------------------------------------------------------------ the request's deadline

HANGING_KEYS = [f"sk-hanging-key-{i:04d}" for i in range(5)]  # six deployments with the provider's own key


def hanging(up: FakeUpstream) -> dict[str, Any]:
    up.script_many([Reply(hang_before_headers=True)] * 30, path="/v1/chat/completions")
    return default_retries(fake_provider(up, api_keys=HANGING_KEYS, timeouts={"first_byte": 1}))


def test_retry_deadline_caps_every_attempt(upstream: FakeUpstream) -> None:
    settings = gateway_settings(hanging(upstream), routing={"retry_deadline": 2})
    with serve_gateway(settings) as gw:
        expect_504(gw)
    # Each attempt waits at most what is left of the 2 s: the first 1 s, the second the rest; six keys and
    # four rounds would be 24 attempts, and without the cap 6 (each of the first round given its full 1 s).
    assert chat_count(upstream) <= 3


def test_the_admin_timeout_header_bounds_the_whole_request_retries_included(upstream: FakeUpstream) -> None:
    with serve_gateway(gateway_settings(hanging(upstream))) as gw:
        expect_504(gw, extra_headers={"x-anygate-timeout": "2"})
    assert chat_count(upstream) <= 3
