"""Fault injection: each upstream failure, and what the client observes through the gateway."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pytest

from anygate.routing import EJECT_AFTER_FAILURES
from anygate.settings import Settings
from tests.support.fake_transport import FakeNetwork
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import (
    RunningGateway,
    default_retries,
    fake_provider,
    gateway_settings,
    serve_gateway,
)
from tests.support.inprocess import InProcessGateway, inprocess_gateway

CHAT = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "hi"}]}
SHARED = {**CHAT, "model": "shared"}


@pytest.fixture
def network() -> FakeNetwork:
    return FakeNetwork()


@pytest.fixture
def upstream(network: FakeNetwork) -> FakeUpstream:
    return network.add(FakeUpstream())


@pytest.fixture
def socket_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread() as up:
        yield up


@contextmanager
def in_memory(network: FakeNetwork, **options: Any) -> Iterator[FakeUpstream]:
    yield network.add(FakeUpstream(**options))


def serve(network: FakeNetwork, settings: Settings) -> AbstractContextManager[InProcessGateway]:
    """The gateway in-process, its upstreams those of ``network``."""
    return inprocess_gateway(settings, transport=network)


def stream_events(gw: InProcessGateway | RunningGateway, body: dict[str, Any], **headers: str) -> list[bytes]:
    with (
        gw.client() as client,
        client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}, headers=headers) as response,
    ):
        assert response.status_code == 200, response.read()
        raw = b"".join(response.iter_bytes())
    return [event for event in raw.split(b"\n\n") if event]


def chat_paths(up: FakeUpstream) -> list[str]:
    return [r.path for r in up.requests if r.path.endswith("/chat/completions")]


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait for ``check`` to hold (a change that travels through background work), up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        time.sleep(0.02)


def metric(gw: InProcessGateway | RunningGateway, name: str, **labels: str) -> float:
    """One sample of the gateway's ``/metrics`` (0 when absent)."""
    with gw.client() as client:
        text = client.get("/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def ledger_rows(data_dir: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(data_dir / "anygate.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("select * from usage_ledger order by created_at")]


# ------------------------------------------------------------------------------ retries by error class


def test_429_then_success_honours_retry_after(upstream: FakeUpstream, network: FakeNetwork) -> None:
    upstream.script(Reply.rate_limited(retry_after=1), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream, max_retries=2))) as gw, gw.sdk() as client:
        started = time.monotonic()
        reply = client.chat.completions.create(**CHAT)
        waited = time.monotonic() - started
    assert reply.choices[0].message.content == "Hello from the fake upstream!"
    assert len(chat_paths(upstream)) == 2
    assert waited >= 0.9  # the gateway waited for Retry-After before asking again (not a speed test)


def test_a_wait_for_retry_after_that_wakes_early_still_waits_until_the_cooldown_has_ended(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, network: FakeNetwork
) -> None:
    """Timers may fire early (uvloop's have millisecond resolution): here every sleep ends at 90% of its
    time. The round after a Retry-After must still find the deployment ready and ask it again."""
    sleep = asyncio.sleep

    async def early_sleep(seconds: float, result: Any = None) -> Any:
        return await sleep(seconds * 0.9, result)

    monkeypatch.setattr(asyncio, "sleep", early_sleep)
    upstream.script_many([Reply.rate_limited(retry_after=1), Reply()] * 3, path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream, max_retries=2))) as gw, gw.sdk() as client:
        replies = [client.chat.completions.create(**CHAT) for _ in range(3)]
    assert all(reply.choices[0].message.content for reply in replies)
    assert len(chat_paths(upstream)) == 6  # each request asked again after its Retry-After


def test_429_with_a_long_retry_after_is_passed_to_the_client(upstream: FakeUpstream, network: FakeNetwork) -> None:
    upstream.script(Reply.rate_limited(retry_after=120), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream, max_retries=2))) as gw, gw.sdk() as client:
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(**CHAT)
    assert caught.value.response.headers["retry-after"] == "120"
    assert len(chat_paths(upstream)) == 1


def test_429_without_retry_after_is_retried_with_backoff(upstream: FakeUpstream, network: FakeNetwork) -> None:
    upstream.script(Reply.error(429, "slow down"), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream, max_retries=2))) as gw, gw.sdk() as client:
        reply = client.chat.completions.create(**CHAT)
    assert reply.choices[0].message.content
    assert len(chat_paths(upstream)) == 2


def test_429s_without_retry_after_answer_with_a_retry_after(upstream: FakeUpstream, network: FakeNetwork) -> None:
    upstream.script_many([Reply.error(429, "slow down")] * 10, path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream, max_retries=2))) as gw, gw.sdk() as client:
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(**CHAT)
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.body["message"] == "slow down"  # type: ignore[index]
    assert len(chat_paths(upstream)) == 3  # retried within max_retries, no more


def test_500_then_success(upstream: FakeUpstream, network: FakeNetwork) -> None:
    upstream.script(Reply.error(500, "boom"), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream, max_retries=2))) as gw, gw.sdk() as client:
        reply = client.chat.completions.create(**CHAT)
    assert reply.choices[0].message.content
    assert len(chat_paths(upstream)) == 2


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_never_retried(upstream: FakeUpstream, status: int, network: FakeNetwork) -> None:
    upstream.script(Reply.error(status, "your fault"), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream, max_retries=3))) as gw, gw.sdk() as client:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(**CHAT)
        errors = metric(gw, "anygate_upstream_errors_total", provider="fake", kind=f"upstream_http_{status}")
    assert caught.value.status_code == status
    assert caught.value.body["message"] == "your fault"  # type: ignore[index]
    assert len(chat_paths(upstream)) == 1
    assert errors == 1  # passed through, and counted as the upstream's error


def test_a_key_that_returns_401_is_skipped_for_the_next_key(upstream: FakeUpstream, network: FakeNetwork) -> None:
    upstream.script(Reply.error(401, "bad key"), path="/v1/chat/completions")
    provider = fake_provider(upstream, api_keys=["sk-second-key-0000"])
    with serve(network, gateway_settings(provider)) as gw, gw.sdk() as client:
        replies = [client.chat.completions.create(**CHAT) for _ in range(3)]
    assert all(r.choices[0].message.content for r in replies)
    keys = [r.headers["authorization"] for r in upstream.requests if r.path.endswith("/chat/completions")]
    refused = keys[0]
    assert keys.count(refused) == 1  # the refused key cooled down: not used again
    assert len(keys) == 4


def test_a_provider_with_only_extra_keys_uses_them_all_and_never_goes_keyless(
    upstream: FakeUpstream, network: FakeNetwork
) -> None:
    provider = fake_provider(upstream, api_key=None, api_keys=["sk-extra-one-0000", "sk-extra-two-0000"])
    with serve(network, gateway_settings(provider)) as gw, gw.sdk() as client:
        replies = [client.chat.completions.create(**CHAT) for _ in range(8)]
    assert all(r.choices[0].message.content for r in replies)
    sent = {r.headers.get("authorization") for r in upstream.requests if r.path.endswith("/chat/completions")}
    assert sent <= {"Bearer sk-extra-one-0000", "Bearer sk-extra-two-0000"}


def test_a_refused_key_is_remembered_without_asking_the_upstream_again(
    upstream: FakeUpstream, network: FakeNetwork
) -> None:
    upstream.script(Reply.error(401, "bad key"), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream))) as gw, gw.sdk() as client:
        for _ in range(2):
            with pytest.raises(openai.AuthenticationError) as caught:
                client.chat.completions.create(**CHAT)
            assert caught.value.body["message"] == "bad key"  # type: ignore[index]
    assert len(chat_paths(upstream)) == 1


def test_a_403_for_one_model_leaves_the_provider_s_other_models_alone(network: FakeNetwork) -> None:
    with in_memory(network, models=["open", "closed"]) as up:
        up.script(Reply.error(403, "no access to this model"), path="/v1/chat/completions")
        with serve(network, gateway_settings(fake_provider(up))) as gw, gw.sdk() as client:
            with pytest.raises(openai.PermissionDeniedError):
                client.chat.completions.create(**{**CHAT, "model": "fake/closed"})
            reply = client.chat.completions.create(**{**CHAT, "model": "fake/open"})
        assert reply.choices[0].message.content


def tenant_key(gw: InProcessGateway, alias: str, own_provider_key: str | None = None) -> str:
    """A new key (not an admin's); with ``own_provider_key``, its own key for provider ``fake``."""
    with gw.client() as admin:
        created = admin.post("/v1/keys", json={"alias": alias})
        assert created.status_code == 201, created.text
        key = str(created.json()["key"])
    if own_provider_key is not None:
        with gw.client(key) as http:
            stored = http.put("/auth/creds", json={"providers": {"fake": {"apiKey": own_provider_key}}})
            assert stored.status_code == 200, stored.text
    return key


@pytest.mark.parametrize("status", [401, 402, 403, 429, 500])
def test_a_failure_with_a_callers_own_key_leaves_the_shared_deployment_to_the_other_tenants(
    upstream: FakeUpstream, status: int, network: FakeNetwork
) -> None:
    own = "sk-alice-own-provider-key-0001"
    failure = Reply.error(status, "refused", headers={"Retry-After": "60"} if status == 429 else None)
    upstream.script(failure, path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream))) as gw:
        alice, bob = tenant_key(gw, "alice", own), tenant_key(gw, "bob")
        with gw.sdk(alice) as client, pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(**CHAT)
        health = gw.app.state.health.provider_health("fake")
        with gw.sdk(bob) as client:
            reply = client.chat.completions.create(**CHAT)  # at once: nothing cools down, nothing is ejected
    assert refused.value.status_code == status
    assert reply.choices[0].message.content
    sent = [r.headers["authorization"] for r in upstream.requests_to("/v1/chat/completions")]
    assert sent == [f"Bearer {own}", "Bearer sk-fake-provider-key-abcdef"]
    assert (health["cooling_down"], health["ejected"], health["consecutive_failures"]) == (False, False, 0)


def test_a_callers_own_key_rate_limited_is_asked_again_after_its_retry_after(
    upstream: FakeUpstream, network: FakeNetwork
) -> None:
    upstream.script(Reply.rate_limited(retry_after=1), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream, max_retries=2))) as gw:
        alice = tenant_key(gw, "alice", "sk-alice-own-provider-key-0001")
        with gw.sdk(alice) as client:
            reply = client.chat.completions.create(**CHAT)
        cooling = gw.app.state.health.provider_health("fake")["cooling_down"]
    assert reply.choices[0].message.content
    assert len(chat_paths(upstream)) == 2  # asked again (after the Retry-After), though nothing shared cooled
    assert cooling is False


@pytest.mark.parametrize("status", [402, 403])
def test_a_402_or_403_a_client_provoked_through_the_proxy_never_cools_the_deployment_for_others(
    upstream: FakeUpstream, status: int, network: FakeNetwork
) -> None:
    upstream.script(
        Reply.error(status, "This request requires more credits, or fewer max_tokens"), path="/v1/chat/completions"
    )
    with serve(network, gateway_settings(fake_provider(upstream))) as gw:
        mallory, bob = tenant_key(gw, "mallory"), tenant_key(gw, "bob")
        greedy = {"model": "fake-model", "messages": CHAT["messages"], "max_tokens": 10_000_000}
        with gw.client(mallory) as http:
            assert http.post("/proxy/fake/v1/chat/completions", json=greedy).status_code == status
        with gw.sdk(bob) as client:
            reply = client.chat.completions.create(**CHAT)
    assert reply.choices[0].message.content
    assert len(chat_paths(upstream)) == 2  # bob's request was asked upstream, not refused from a cooldown


def test_a_401_with_the_operators_key_still_cools_the_key_for_everyone(
    upstream: FakeUpstream, network: FakeNetwork
) -> None:
    upstream.script(Reply.error(401, "invalid api key"), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream))) as gw:
        alice, bob = tenant_key(gw, "alice"), tenant_key(gw, "bob")
        for key in (alice, bob):
            with gw.sdk(key) as client, pytest.raises(openai.AuthenticationError):
                client.chat.completions.create(**CHAT)
    assert len(chat_paths(upstream)) == 1


def test_a_rate_limited_model_answers_429_with_the_remaining_wait(upstream: FakeUpstream, network: FakeNetwork) -> None:
    upstream.script(Reply.rate_limited(retry_after=60), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream))) as gw, gw.sdk() as client:
        for _ in range(2):
            with pytest.raises(openai.RateLimitError) as caught:
                client.chat.completions.create(**CHAT)
            assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
    assert len(chat_paths(upstream)) == 1


def test_an_upstream_down_from_the_start_is_a_502(network: FakeNetwork) -> None:
    down = FakeUpstream().in_memory("http://down.test")  # not in the network: its connections are refused
    provider = fake_provider(down, models=["fake-model"])
    with serve(network, gateway_settings(provider)) as gw, gw.sdk() as client:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(**CHAT)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_unavailable"  # type: ignore[index]


def test_invalid_json_body_is_a_502(upstream: FakeUpstream, network: FakeNetwork) -> None:
    upstream.script(Reply.invalid_json(), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream))) as gw, gw.sdk() as client:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(**CHAT)
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "upstream_error"  # type: ignore[index]


# ------------------------------------------------------------------------------ budgets


def test_max_attempts_bounds_a_group(upstream: FakeUpstream, network: FakeNetwork) -> None:
    upstream.script_many([Reply.error(500)] * 30, path="/v1/chat/completions")
    keys = [f"sk-extra-key-{i:04d}" for i in range(4)]
    provider = default_retries(fake_provider(upstream, api_keys=keys))
    with serve(network, gateway_settings(provider, routing={"max_attempts": 3})) as gw, gw.sdk() as client:
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(**CHAT)
    assert caught.value.status_code == 500
    assert len(chat_paths(upstream)) == 3  # 5 keys and 4 rounds, but 3 attempts


def test_the_retry_budget_stops_retries_multiplying_during_an_outage(
    upstream: FakeUpstream, network: FakeNetwork
) -> None:
    upstream.script_many([Reply.error(500)] * 1000, path="/v1/chat/completions")
    requests, rounds = 60, 4
    with serve(network, gateway_settings(default_retries(fake_provider(upstream)))) as gw, gw.sdk() as client:
        budget = gw.app.state.health.retry_budget
        # The bucket refills from its last update (its creation, during start-up), not from the burst.
        initial, ratio, per_second, since = budget.tokens, budget.ratio, budget.floor_per_second, budget.updated

        def one(_: int) -> int:
            with pytest.raises(openai.InternalServerError) as caught:
                client.chat.completions.create(**CHAT)
            return caught.value.status_code

        with ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(pool.map(one, range(requests)))
        elapsed = time.monotonic() - since
    attempts = len(chat_paths(upstream))
    assert statuses == [500] * requests
    # Every request's first attempt, plus retries the budget paid for: its initial tokens, a share of the
    # requests, and its slow refill since it was last updated.
    assert attempts <= requests + initial + ratio * requests + per_second * elapsed + 1
    assert attempts < requests * rounds


# ------------------------------------------------------------------------------ streams


def test_reset_mid_stream_ends_with_an_error_event(upstream: FakeUpstream, network: FakeNetwork) -> None:
    upstream.script(Reply(reset_after_events=2), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream, max_retries=2))) as gw:
        events = stream_events(gw, CHAT)
        labels = {"route": "chat/completions", "provider": "fake", "model": "fake-model", "status": "502"}
        # What was generated is estimated, which loads the vocabulary first: counted a moment after the end.
        eventually(lambda: metric(gw, "anygate_requests_total", **labels) > 0)
        errors = metric(gw, "anygate_upstream_errors_total", provider="fake", kind="upstream_unavailable")
        failed = metric(gw, "anygate_requests_total", **labels)
    assert len(events) >= 2
    final = orjson.loads(events[-1].removeprefix(b"data: "))
    assert final["error"]["type"] == "upstream_error"
    assert b"data: [DONE]" not in events
    assert len(chat_paths(upstream)) == 1  # never retried after the first byte reached the client
    assert errors == 1 and failed == 1  # counted as the upstream's failure, and as a failed request


def test_streams_the_upstream_breaks_count_against_its_health(network: FakeNetwork) -> None:
    """A broken stream cannot be retried, but the deployment that broke it is ejected like any other."""
    with (
        in_memory(network, models=["shared"]) as broken,
        in_memory(network, models=["shared"]) as working,
    ):
        broken.script_many([Reply(reset_after_events=2)] * 20, path="/v1/chat/completions")
        # In order, so that the broken deployment is asked until it is ejected.
        settings = gateway_settings(
            fake_provider(broken, "a"), fake_provider(working, "b"), routing={"strategy": "ordered"}
        )
        with serve(network, settings) as gw:
            endings = [stream_events(gw, SHARED)[-1] for _ in range(12)]
            health = gw.app.state.health.provider_health("a")
        assert health["ejected"] is True
        assert len(chat_paths(broken)) == EJECT_AFTER_FAILURES  # not chosen again once ejected
        assert endings.count(b"data: [DONE]") == 12 - EJECT_AFTER_FAILURES


def test_reset_before_the_first_event_is_retried(upstream: FakeUpstream, network: FakeNetwork) -> None:
    upstream.script(Reply(reset_after_events=0), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream, max_retries=2))) as gw:
        events = stream_events(gw, CHAT)
    assert events[-1] == b"data: [DONE]"
    assert len(chat_paths(upstream)) == 2


def test_hang_between_events_ends_the_stream_with_a_timeout_event(upstream: FakeUpstream, network: FakeNetwork) -> None:
    upstream.script(Reply(hang_after_events=1), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream, timeout=0.5))) as gw:
        events = stream_events(gw, CHAT)
        errors = metric(gw, "anygate_upstream_errors_total", provider="fake", kind="upstream_timeout")
    final = orjson.loads(events[-1].removeprefix(b"data: "))
    assert final["error"]["code"] == "upstream_timeout"
    assert b"data: [DONE]" not in events
    assert errors == 1


def test_stream_without_done_ends_with_an_error_event(upstream: FakeUpstream, network: FakeNetwork) -> None:
    upstream.script(Reply(send_done=False, finish_reason="length"), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream))) as gw:
        events = stream_events(gw, CHAT)
        errors = metric(gw, "anygate_upstream_errors_total", provider="fake", kind="stream_truncated")
    final = orjson.loads(events[-1].removeprefix(b"data: "))
    assert final["error"]["code"] == "stream_truncated"
    assert errors == 1
    rows = ledger_rows(Path.cwd() / "data")
    assert [(row["status"], row["provider_id"]) for row in rows] == [(502, "fake")]  # the ledger shows it


def test_an_event_over_the_size_limit_ends_the_stream_with_an_error_event(
    upstream: FakeUpstream, network: FakeNetwork
) -> None:
    first = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    huge = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"x" * 50_000  # never ends
    upstream.script(Reply(raw_events=[first, huge[:30_000], huge[30_000:]]), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream), max_sse_event_bytes=20_000)) as gw:
        events = stream_events(gw, CHAT)
        errors = metric(gw, "anygate_upstream_errors_total", provider="fake", kind="upstream_event_too_large")
    assert events[0] == first.removesuffix(b"\n\n")
    final = orjson.loads(events[-1].removeprefix(b"data: "))
    assert final["error"]["code"] == "upstream_event_too_large" and final["error"]["type"] == "upstream_error"
    assert len(events) == 2 and errors == 1


def test_a_first_event_over_the_size_limit_is_a_502(upstream: FakeUpstream, network: FakeNetwork) -> None:
    huge = b"data: " + b"y" * 30_000 + b"\n\n"
    upstream.script(Reply(raw_events=[huge]), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream, max_retries=2), max_sse_event_bytes=20_000)) as gw:
        with gw.client() as client:
            response = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_event_too_large"
    assert len(chat_paths(upstream)) == 1  # the same upstream would send it again: not retried


@pytest.mark.sockets  # a client that leaves: the server sees its connection close
def test_client_disconnect_cancels_the_upstream_request(socket_upstream: FakeUpstream) -> None:
    socket_upstream.script(Reply(hang_before_headers=True), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(socket_upstream))) as gw:
        with gw.client(timeout=0.5) as client:
            with pytest.raises(httpx2.ReadTimeout):
                client.post("/v1/chat/completions", json=CHAT)
        eventually(lambda: socket_upstream.disconnects > 0)
    assert socket_upstream.disconnects == 1


@pytest.mark.sockets  # a client that leaves: the server sees its connection close
def test_a_streaming_client_that_leaves_cancels_the_upstream_and_pays_for_what_was_generated() -> None:
    content = " ".join(f"word{i}" for i in range(60))
    with FakeUpstream.start_in_thread(content=content, chunks=60, event_delay=0.1) as up:
        with serve_gateway(gateway_settings(fake_provider(up))) as gw:
            with (
                gw.client() as client,
                client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response,
            ):
                received = b""
                for chunk in response.iter_bytes():
                    received += chunk
                    if received.count(b"\n\n") >= 4:
                        break  # leave after a few events: the context closes the connection
            eventually(lambda: up.disconnects > 0)
        rows = ledger_rows(Path.cwd() / "data")
    assert up.disconnects == 1
    assert len(rows) == 1 and rows[0]["estimated"]
    # what reached the gateway before the client left, not the 60 words the whole answer has
    assert 0 < rows[0]["output_tokens"] < 40


# ------------------------------------------------------------------------------ fallbacks and deployments


@pytest.mark.parametrize("retries", ["default", "none"])
@pytest.mark.parametrize("stream", [False, True])
def test_fallback_chain_whose_first_two_links_fail(retries: str, stream: bool, network: FakeNetwork) -> None:
    with (
        in_memory(network, models=["m1"]) as first,
        in_memory(network, models=["m2"]) as second,
        in_memory(network, models=["m3"]) as third,
    ):
        first.script_many([Reply.error(500)] * 20, path="/v1/chat/completions")
        second.script_many([Reply.error(503)] * 20, path="/v1/chat/completions")
        providers = [fake_provider(first, "one"), fake_provider(second, "two"), fake_provider(third, "three")]
        if retries == "default":
            providers = [default_retries(p) for p in providers]
        settings = gateway_settings(*providers, fallbacks={"one/m1": ["two/m2", "three/m3"]})
        with serve(network, settings) as gw, gw.sdk() as client:
            if stream:
                chunks = client.chat.completions.create(**{**CHAT, "model": "one/m1"}, stream=True)
                content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            else:
                content = client.chat.completions.create(**{**CHAT, "model": "one/m1"}).choices[0].message.content
        assert content == "Hello from the fake upstream!"
        assert [r.model for r in third.requests_to("/v1/chat/completions")] == ["m3"]
        tries = 4 if retries == "default" else 1  # 1 + max_retries each
        assert len(chat_paths(first)) == tries and len(chat_paths(second)) == tries


def test_a_model_served_by_two_providers_survives_one_failing(network: FakeNetwork) -> None:
    with (
        in_memory(network, models=["shared"]) as broken,
        in_memory(network, models=["shared"]) as working,
    ):
        broken.script_many([Reply.error(502)] * 20, path="/v1/chat/completions")
        settings = gateway_settings(fake_provider(broken, "a"), fake_provider(working, "b"))
        with serve(network, settings) as gw, gw.sdk() as client:
            replies = [client.chat.completions.create(**SHARED) for _ in range(10)]
        assert all(r.choices[0].message.content for r in replies)
        # after three consecutive failures the broken deployment is ejected and no longer tried first
        assert len(chat_paths(broken)) <= 5


def test_at_most_half_of_a_group_is_ejected(network: FakeNetwork) -> None:
    with (
        in_memory(network, models=["shared"]) as a,
        in_memory(network, models=["shared"]) as b,
    ):
        for up in (a, b):
            up.script_many([Reply.error(502)] * 100, path="/v1/chat/completions")
        settings = gateway_settings(fake_provider(a, "a"), fake_provider(b, "b"))
        with serve(network, settings) as gw, gw.sdk() as client, gw.client() as admin:
            for _ in range(4 * EJECT_AFTER_FAILURES):
                with pytest.raises(openai.APIStatusError):
                    client.chat.completions.create(**SHARED)
            routing = {p["id"]: p["routing"] for p in admin.get("/v1/providers").json()["data"]}
        assert [routing[p]["ejected"] for p in ("a", "b")].count(True) == 1
        assert all(routing[p]["consecutive_failures"] >= EJECT_AFTER_FAILURES for p in ("a", "b"))


def test_a_keyless_provider_is_skipped_for_the_others(network: FakeNetwork) -> None:
    with (
        in_memory(network, models=["shared"]) as one,
        in_memory(network, models=["shared"]) as two,
        in_memory(network, models=["shared"]) as keyless,
    ):
        providers = [
            fake_provider(one, "one"),
            fake_provider(two, "two"),
            fake_provider(keyless, "nokey", api_key=None),
        ]
        with serve(network, gateway_settings(*providers)) as gw, gw.sdk() as client:
            replies = [client.chat.completions.create(**SHARED) for _ in range(30)]
            with pytest.raises(openai.AuthenticationError) as caught:
                client.chat.completions.create(**{**CHAT, "model": "nokey/shared"})
        assert all(r.choices[0].message.content for r in replies)
        assert not chat_paths(keyless)
        assert len(chat_paths(one)) + len(chat_paths(two)) == 30
        assert caught.value.body["message"] == "No API key configured for nokey"  # type: ignore[index]


def test_weights_share_the_load(network: FakeNetwork) -> None:
    with (
        in_memory(network, models=["shared"]) as heavy,
        in_memory(network, models=["shared"]) as light,
    ):
        settings = gateway_settings(fake_provider(heavy, "heavy", weight=9), fake_provider(light, "light", weight=1))
        with serve(network, settings) as gw, gw.sdk() as client:
            for _ in range(60):
                client.chat.completions.create(**SHARED)
        assert len(chat_paths(heavy)) > len(chat_paths(light))
        assert len(chat_paths(heavy)) + len(chat_paths(light)) == 60


def test_priority_tiers_are_tried_in_order(network: FakeNetwork) -> None:
    with (
        in_memory(network, models=["shared"]) as primary,
        in_memory(network, models=["shared"]) as backup,
    ):
        settings = gateway_settings(fake_provider(primary, "primary"), fake_provider(backup, "backup", priority=1))
        with serve(network, settings) as gw, gw.sdk() as client:
            for _ in range(5):
                client.chat.completions.create(**SHARED)
        assert len(chat_paths(primary)) == 5 and not chat_paths(backup)


def test_weights_and_priority_of_providers_created_at_runtime(network: FakeNetwork) -> None:
    with (
        in_memory(network, models=["shared"]) as heavy,
        in_memory(network, models=["shared"]) as light,
        in_memory(network, models=["shared"]) as backup,
    ):
        with serve(network, gateway_settings()) as gw, gw.client() as admin, gw.sdk() as client:
            for up, provider_id, fields in (
                (heavy, "heavy", {"weight": 9}),
                (light, "light", {"weight": 1}),
                (backup, "backup", {"priority": 1}),
            ):
                created = admin.post("/v1/providers", json=fake_provider(up, provider_id, **fields))
                assert created.status_code == 201, created.text
            # One request in ten goes to the light deployment: none in 60 happened once in CI (0.9^60, 0.2%);
            # none in 150 is 0.9^150, about one in seven million.
            for _ in range(150):
                client.chat.completions.create(**SHARED)
        assert len(chat_paths(heavy)) > len(chat_paths(light)) > 0
        assert not chat_paths(backup)


@pytest.mark.sockets  # a request held in flight while others run: a stream read as it arrives
def test_a_busy_deployment_is_passed_over_for_an_idle_one() -> None:
    with (
        FakeUpstream.start_in_thread(models=["shared"]) as busy,
        FakeUpstream.start_in_thread(models=["shared"]) as idle,
    ):
        busy.script(Reply(hang_after_events=1), path="/v1/chat/completions")
        settings = gateway_settings(fake_provider(busy, "busy"), fake_provider(idle, "idle"))
        with serve_gateway(settings) as gw, gw.sdk() as client, gw.client() as raw:
            held = {**CHAT, "model": "busy/shared", "stream": True}
            with raw.stream("POST", "/v1/chat/completions", json=held) as response:
                chunks = response.iter_bytes()  # kept: a dropped iterator would close the response
                next(chunks)  # one request in flight on "busy" while the others run
                for _ in range(10):
                    client.chat.completions.create(**SHARED)
        assert len(chat_paths(busy)) == 1  # only the held request
        assert len(chat_paths(idle)) == 10


def test_the_ordered_strategy_uses_the_first_healthy_deployment_then_the_next_in_order(network: FakeNetwork) -> None:
    with (
        in_memory(network, models=["shared"]) as first,
        in_memory(network, models=["shared"]) as second,
        in_memory(network, models=["shared"]) as third,
    ):
        first.script_many([Reply.error(500)] * 100, path="/v1/chat/completions")
        providers = [fake_provider(first, "first"), fake_provider(second, "second"), fake_provider(third, "third")]
        settings = gateway_settings(*providers, routing={"strategy": "ordered"})
        with serve(network, settings) as gw, gw.sdk() as client:
            replies = [client.chat.completions.create(**SHARED) for _ in range(10)]
        assert all(r.choices[0].message.content for r in replies)
        assert len(chat_paths(second)) == 10 and not chat_paths(third)
        assert 1 <= len(chat_paths(first)) <= EJECT_AFTER_FAILURES  # then ejected


def test_after_a_failure_the_balanced_strategy_follows_the_configured_order(network: FakeNetwork) -> None:
    with (
        in_memory(network, models=["shared"]) as a,
        in_memory(network, models=["shared"]) as b,
        in_memory(network, models=["shared"]) as c,
    ):
        # "b" is nearly always drawn first and always refuses (Retry-After 0: no ejection, no wait)
        b.script_many([Reply.rate_limited(retry_after=0)] * 100, path="/v1/chat/completions")
        providers = [fake_provider(a, "a"), fake_provider(b, "b", weight=1_000_000), fake_provider(c, "c")]
        with serve(network, gateway_settings(*providers)) as gw, gw.sdk() as client:
            replies = [client.chat.completions.create(**SHARED) for _ in range(10)]
        assert all(r.choices[0].message.content for r in replies)
        assert len(chat_paths(b)) == 10
        assert len(chat_paths(c)) == 10 and not chat_paths(a)  # the one after "b", never a draw


# ------------------------------------------------------------------------------ health


def test_active_health_check_reports_in_ready_detail(upstream: FakeUpstream, network: FakeNetwork) -> None:
    with serve(network, gateway_settings(fake_provider(upstream))) as gw, gw.client() as client:
        checked = client.post("/v1/providers/health-check").json()
        ready = client.get("/health/ready").json()
    assert checked["status"] == "completed"
    assert checked["providers"][0]["healthy"] is True
    assert ready["providers"]["fake"]["healthy"] is True


def test_active_checks_run_at_the_configured_interval(upstream: FakeUpstream, network: FakeNetwork) -> None:
    settings = gateway_settings(fake_provider(upstream), routing={"health_check_interval": 0.2})
    with serve(network, settings) as gw, gw.client() as client:
        eventually(lambda: len(upstream.requests_to("/v1/models")) >= 4)  # discovery, then the checks
        provider = client.get("/v1/providers").json()["data"][0]
    assert provider["healthy"] is True  # no one asked for a check
    assert not chat_paths(upstream)  # a check is no chat request (charged to no key)


def test_a_failed_active_check_takes_a_provider_out_of_routing_and_a_passing_one_restores_it(
    network: FakeNetwork,
) -> None:
    with (
        in_memory(network, models=["shared"]) as flaky,
        in_memory(network, models=["shared"]) as steady,
    ):
        settings = gateway_settings(
            fake_provider(flaky, "flaky"), fake_provider(steady, "steady"), routing={"health_check_interval": 0.2}
        )
        with serve(network, settings) as gw, gw.sdk() as client, gw.client() as admin:

            def ejected() -> bool:
                providers = admin.get("/v1/providers").json()["data"]
                return next(p for p in providers if p["id"] == "flaky")["routing"]["ejected"] is True

            flaky.has_models_endpoint = False  # its /models answers 404: the checks fail
            eventually(ejected)
            for _ in range(20):
                client.chat.completions.create(**SHARED)
            assert not chat_paths(flaky)
            flaky.has_models_endpoint = True
            eventually(lambda: not ejected())
            for _ in range(30):
                client.chat.completions.create(**SHARED)
        assert chat_paths(flaky)  # back in routing


def test_the_admin_timeout_header_is_for_admins_only(upstream: FakeUpstream, network: FakeNetwork) -> None:
    upstream.script(Reply(first_byte_delay=2), path="/v1/chat/completions")
    with serve(network, gateway_settings(fake_provider(upstream))) as gw, gw.client() as admin:
        created = admin.post("/v1/keys", json={"alias": "student"})
        assert created.status_code == 201, created.text
        with gw.client(created.json()["key"]) as student:
            refused = student.post("/v1/chat/completions", json=CHAT, headers={"x-anygate-timeout": "0.3"})
        timed_out = admin.post("/v1/chat/completions", json=CHAT, headers={"x-anygate-timeout": "0.3"})
        bad = admin.post("/v1/chat/completions", json=CHAT, headers={"x-anygate-timeout": "soon"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "timeout_override_not_allowed"
    assert timed_out.status_code == 504
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-anygate-timeout"
