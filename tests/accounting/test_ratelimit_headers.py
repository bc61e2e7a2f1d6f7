"""OpenAI's ``x-ratelimit-*`` headers and ``Retry-After``: on every model route's answer (whole or streamed,
served or refused) for a key with limits or budgets, read by the official SDKs; in-process."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import openai
import pytest

from anygate.accounting.budgets import scopes_of
from anygate.accounting.enforcer import Ask
from anygate.auth import Budget, Limits, Principal
from tests.support.fake_upstream import FakeUpstream, Reply, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.support.waiting import clear_of_a_minute_boundary

STUDENT = "sk-ag-student-ratelimit-000000000000"
OPEN = "sk-ag-open-ratelimit-0000000000000000"
MODEL = "fake/fake-model"
HI: list[Any] = [{"role": "user", "content": "hi"}]
PRICES = {"fake/*": {"input": 1000, "output": 2000}}  # USD per million tokens
LIMITS = Limits(rpm=60, tpm=100_000)
# OpenAI's duration format (Go's): 850ms, 1s, 21.4s, 6m0s, 14h2m3.5s
DURATION = re.compile(r"^(0s|\d+ms|(\d+h)?(\d+m)?\d+(\.\d+)?s)$")
TRIO = ("limit", "remaining", "reset")


def student(
    budget: Budget | None = None,
    limits: Limits | None = None,
    user_budget: Budget | None = None,
    user_limits: Limits | None = None,
) -> Principal:
    return Principal(
        key_id="student",
        is_admin=False,
        label="student-1",
        user_id=None if user_budget is None and user_limits is None else "course",
        budgets=() if budget is None else (budget,),
        limits=limits,
        user_budgets=() if user_budget is None else (user_budget,),
        user_limits=user_limits,
    )


@contextmanager
def gateway(
    upstream: FakeUpstream, principal: Principal, *, prices: bool = False, **provider: Any
) -> Iterator[InProcessGateway]:
    settings = gateway_settings(fake_provider(upstream, **provider), **({"prices": PRICES} if prices else {}))
    keys = {STUDENT: principal, OPEN: Principal(key_id="open", is_admin=False, label="open")}
    clear_of_a_minute_boundary()  # a test's requests count in one minute's window (59, then 58 left)
    with inprocess_gateway(settings, upstream, keys=keys) as gw:
        yield gw


@pytest.fixture
def upstream() -> FakeUpstream:
    up = FakeUpstream().in_memory()
    up.usage = Usage(7, 3)
    return up


def ratelimit(headers: Mapping[str, str], unit: str) -> dict[str, str]:
    """The trio of ``unit`` (``requests``, ``tokens``, ``usd``) that is present."""
    return {part: headers[f"x-ratelimit-{part}-{unit}"] for part in TRIO if f"x-ratelimit-{part}-{unit}" in headers}


def seconds(duration: str) -> float:
    """A Go duration back in seconds."""
    assert DURATION.match(duration), duration
    if duration.endswith("ms"):
        return int(duration[:-2]) / 1000
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)([hms])", duration):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


def seconds_to_midnight() -> float:
    now = datetime.now(UTC)
    return (datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) - now).total_seconds()


# ------------------------------------------------------------------------------------------ every route


def chat(gw: InProcessGateway, stream: bool) -> Mapping[str, str]:
    with gw.sdk(STUDENT) as client:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=HI, stream=stream)
        if stream:
            assert [c for c in raw.parse() if c.choices]  # the stream arrived whole
        else:
            assert raw.parse().choices[0].message.content
        return raw.headers


def completions(gw: InProcessGateway, stream: bool) -> Mapping[str, str]:
    with gw.sdk(STUDENT) as client:
        raw = client.completions.with_raw_response.create(model=MODEL, prompt="hi", stream=stream)
        if stream:
            assert list(raw.parse())
        else:
            assert raw.parse().choices[0].text
        return raw.headers


def embeddings(gw: InProcessGateway, stream: bool) -> Mapping[str, str]:
    with gw.sdk(STUDENT) as client:
        raw = client.embeddings.with_raw_response.create(model=MODEL, input="hi")
        assert raw.parse().data[0].embedding
        return raw.headers


def responses(gw: InProcessGateway, stream: bool) -> Mapping[str, str]:
    with gw.sdk(STUDENT) as client:
        raw = client.responses.with_raw_response.create(model=MODEL, input="hi", stream=stream)
        if stream:
            assert [e.type for e in raw.parse()][-1] == "response.completed"
        else:
            assert raw.parse().output_text
        return raw.headers


def messages(gw: InProcessGateway, stream: bool) -> Mapping[str, str]:
    with gw.anthropic(STUDENT) as client:
        raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=HI, stream=stream)
        if stream:
            assert [e.type for e in raw.parse()][-1] == "message_stop"
        else:
            assert raw.parse().content[0].type == "text"
        return raw.headers


def proxy(gw: InProcessGateway, stream: bool) -> Mapping[str, str]:
    with gw.client(STUDENT) as http:
        answer = http.post(
            "/proxy/fake/v1/chat/completions", json={"model": "fake-model", "messages": HI, "stream": stream}
        )
        assert answer.status_code == 200, answer.text
        return answer.headers


ROUTES: dict[str, Callable[[InProcessGateway, bool], Mapping[str, str]]] = {
    "chat": chat,
    "completions": completions,
    "embeddings": embeddings,
    "responses": responses,
    "messages": messages,
    "proxy": proxy,
}


ROUTE_CASES = [
    pytest.param(route, stream, id=f"{route}-{'stream' if stream else 'whole'}")
    for route in sorted(ROUTES)
    for stream in (False, True)
    if not (route == "embeddings" and stream)  # embeddings do not stream
]


@pytest.mark.parametrize(("route", "stream"), ROUTE_CASES)
def test_every_model_route_tells_a_limited_key_what_it_has_left(
    upstream: FakeUpstream, route: str, stream: bool
) -> None:
    with gateway(upstream, student(limits=LIMITS)) as gw:
        first, second = ROUTES[route](gw, stream), ROUTES[route](gw, stream)
    for headers in (first, second):
        requests, tokens = ratelimit(headers, "requests"), ratelimit(headers, "tokens")
        assert requests["limit"] == "60" and tokens["limit"] == "100000"
        assert 0 < seconds(requests["reset"]) <= 60 and 0 < seconds(tokens["reset"]) <= 60
        assert 0 < int(tokens["remaining"]) < 100_000  # the request's tokens are held
    assert [ratelimit(first, "requests")["remaining"], ratelimit(second, "requests")["remaining"]] == ["59", "58"]
    assert ratelimit(first, "usd") == {}  # no USD budget: no USD headers


def test_the_responses_bridge_and_a_native_answer_carry_them_alike(upstream: FakeUpstream) -> None:
    with gateway(upstream, student(limits=LIMITS), responses=False) as gw:
        translated = responses(gw, False), responses(gw, True)
    assert upstream.requests_to("/v1/responses") == []  # translated to chat completions
    assert [ratelimit(h, "requests")["remaining"] for h in translated] == ["59", "58"]


def test_a_key_without_limits_gets_the_upstreams_headers_as_before(upstream: FakeUpstream) -> None:
    upstream.script(
        Reply(headers={"x-ratelimit-remaining-requests": "4999", "x-ratelimit-limit-requests": "5000"}),
        Reply(headers={"x-ratelimit-remaining-requests": "4998"}),
        path="/v1/chat/completions",
    )
    with gateway(upstream, student(limits=LIMITS)) as gw, gw.sdk(OPEN) as open_client, gw.sdk(STUDENT) as limited:
        unlimited = open_client.chat.completions.with_raw_response.create(model=MODEL, messages=HI).headers
        own = limited.chat.completions.with_raw_response.create(model=MODEL, messages=HI).headers
    assert ratelimit(unlimited, "requests") == {"limit": "5000", "remaining": "4999"}
    # A limited key's headers are its own: the upstream's describe the gateway's account at the provider.
    assert own.get_list("x-ratelimit-remaining-requests") == ["59"]


# ------------------------------------------------------------------------------------------ each kind of limit


def test_the_tightest_of_a_key_and_its_user_is_told(upstream: FakeUpstream) -> None:
    principal = student(limits=Limits(rpm=60, tpm=100_000), user_limits=Limits(rpm=3, tpm=1_000_000))
    with gateway(upstream, principal) as gw, gw.sdk(STUDENT) as client:
        headers = [client.chat.completions.with_raw_response.create(model=MODEL, messages=HI).headers for _ in "ab"]
    assert [ratelimit(h, "requests")["limit"] for h in headers] == ["3", "3"]  # the user's rpm binds
    assert [ratelimit(h, "requests")["remaining"] for h in headers] == ["2", "1"]
    assert [ratelimit(h, "tokens")["limit"] for h in headers] == ["100000", "100000"]  # the key's tpm binds


def test_a_token_budget_is_told_with_its_window(upstream: FakeUpstream) -> None:
    with gateway(upstream, student(budget=Budget(tokens=50_000, period="daily"))) as gw, gw.sdk(STUDENT) as client:
        first = client.chat.completions.with_raw_response.create(model=MODEL, messages=HI).headers
        second = client.chat.completions.with_raw_response.create(model=MODEL, messages=HI).headers
    assert ratelimit(first, "requests") == {}  # no rpm: no request headers
    tokens = ratelimit(first, "tokens")
    assert tokens["limit"] == "50000"
    assert abs(seconds(tokens["reset"]) - seconds_to_midnight()) < 5
    # The first request was charged its 10 tokens before the second reserved.
    assert int(ratelimit(second, "tokens")["remaining"]) < int(tokens["remaining"]) <= 50_000 - 10


def test_a_usd_budget_is_told_in_dollars(upstream: FakeUpstream) -> None:
    principal = student(budget=Budget(usd=5.0, period="monthly"), limits=Limits(rpm=60))
    with gateway(upstream, principal, prices=True) as gw, gw.sdk(STUDENT) as client:
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=10)  # $0.013 spent
        headers = client.chat.completions.with_raw_response.create(model=MODEL, messages=HI, max_tokens=10).headers
    usd = ratelimit(headers, "usd")
    assert usd["limit"] == "5"
    assert 4.9 < float(usd["remaining"]) < 5.0 - 0.013
    assert seconds(usd["reset"]) > 0
    assert ratelimit(headers, "tokens") == {}  # a USD budget counts no tokens a client could pace by


def test_a_429_of_the_rpm_says_so_and_when(upstream: FakeUpstream) -> None:
    with gateway(upstream, student(limits=Limits(rpm=1, tpm=100_000))) as gw, gw.sdk(STUDENT) as client:
        client.chat.completions.create(model=MODEL, messages=HI)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model=MODEL, messages=HI)
    headers = refused.value.response.headers
    assert ratelimit(headers, "requests")["limit"] == "1" and ratelimit(headers, "requests")["remaining"] == "0"
    assert 1 <= int(headers["retry-after"]) <= 60
    assert abs(seconds(ratelimit(headers, "requests")["reset"]) - int(headers["retry-after"])) <= 1
    assert refused.value.code == "rate_limit_exceeded"


def test_a_429_of_the_tpm_says_what_is_left(upstream: FakeUpstream) -> None:
    with gateway(upstream, student(limits=Limits(rpm=60, tpm=1))) as gw, gw.sdk(STUDENT) as client:
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model=MODEL, messages=HI)
    headers = refused.value.response.headers
    assert ratelimit(headers, "tokens")["limit"] == "1" and ratelimit(headers, "tokens")["remaining"] == "1"
    assert ratelimit(headers, "requests")["remaining"] == "60"  # checked before the tokens: nothing was held
    assert 1 <= int(headers["retry-after"]) <= 60


def test_a_429_of_concurrency_has_retry_after(upstream: FakeUpstream) -> None:
    principal = student(limits=Limits(concurrency=1))
    with gateway(upstream, principal) as gw, gw.sdk(STUDENT) as client:
        enforcer = gw.app.state.accounting.enforcer
        held = gw.run(enforcer.admit(scopes_of(principal), Ask(1, 1)))  # another request of the key in flight
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model=MODEL, messages=HI)
        gw.run(enforcer.release(held))
        client.chat.completions.create(model=MODEL, messages=HI)
    assert refused.value.response.headers["retry-after"] == "1"


def test_a_used_up_daily_budget_says_when_it_resets_and_not_to_retry(upstream: FakeUpstream) -> None:
    with gateway(upstream, student(budget=Budget(tokens=1, period="daily"), limits=LIMITS)) as gw:
        with gw.sdk(STUDENT) as client, pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model=MODEL, messages=HI)
    headers = refused.value.response.headers
    assert refused.value.code == "insufficient_quota"
    assert abs(int(headers["retry-after"]) - seconds_to_midnight()) < 5
    assert headers["x-should-retry"] == "false"  # the SDKs do not retry what seconds cannot free
    assert ratelimit(headers, "tokens")["limit"] == "1"  # the budget, tighter than the tpm
    assert ratelimit(headers, "requests")["remaining"] == "60"  # the minute's request, given back
    assert abs(seconds(ratelimit(headers, "tokens")["reset"]) - seconds_to_midnight()) < 5


def test_the_sdk_does_not_retry_a_used_up_budget(upstream: FakeUpstream) -> None:
    with gateway(upstream, student(budget=Budget(tokens=1, period="daily"))) as gw:
        with gw.sdk(STUDENT, max_retries=2) as client, pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=MODEL, messages=HI)
        refusals = gw.app.state.metrics.requests.value(("chat/completions", "", "", "429"))
    assert refusals == 1  # asked once: x-should-retry and a Retry-After past the SDK's 2 minutes say not to


def test_a_budget_that_never_resets_still_has_retry_after(upstream: FakeUpstream) -> None:
    with gateway(upstream, student(budget=Budget(usd=0.000001)), prices=True) as gw:
        with gw.sdk(STUDENT) as client, pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model=MODEL, messages=HI)
    headers = refused.value.response.headers
    assert headers["retry-after"] == "86400"
    assert ratelimit(headers, "usd") == {"limit": "0.000001", "remaining": "0.000001"}  # no reset to tell


def test_a_refused_messages_request_has_them_in_anthropics_shape(upstream: FakeUpstream) -> None:
    with gateway(upstream, student(limits=Limits(rpm=1))) as gw, gw.anthropic(STUDENT) as client:
        client.messages.create(model=MODEL, max_tokens=64, messages=HI)
        with pytest.raises(anthropic.RateLimitError) as refused:
            client.messages.create(model=MODEL, max_tokens=64, messages=HI)
    headers = refused.value.response.headers
    assert ratelimit(headers, "requests")["remaining"] == "0" and int(headers["retry-after"]) >= 1


# ------------------------------------------------------------------------------------------ the upstream's 429


@pytest.mark.parametrize(
    ("sent", "told"),
    [
        ({"retry-after": "7"}, lambda value: value == "7"),
        ({"retry-after": "2.5"}, lambda value: value == "3"),
        ({}, lambda value: 1 <= int(value) <= 60),  # how long the deployment cools down
        ({"retry-after": "in 30 seconds, as an HTTP date"}, lambda value: 25 <= int(value) <= 31),
    ],
    ids=["seconds", "fraction", "none", "date"],
)
def test_an_upstream_429_passed_on_has_retry_after_in_seconds(
    upstream: FakeUpstream, sent: dict[str, str], told: Callable[[str], bool]
) -> None:
    with gateway(upstream, student(limits=LIMITS)) as gw, gw.sdk(STUDENT) as client:
        if sent.get("retry-after", "").startswith("in 30 seconds"):  # dated once the gateway is up: it may wait
            sent = {"retry-after": (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")}
        upstream.script(Reply.error(429, "slow down", headers=sent), path="/v1/chat/completions")
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model=MODEL, messages=HI)
    headers = refused.value.response.headers
    assert told(headers["retry-after"]), headers["retry-after"]
    assert ratelimit(headers, "requests")["remaining"] == "59"  # the key's own standing, on an error too


def test_an_upstream_error_on_a_limited_key_carries_its_standing(upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(500, "boom"), path="/v1/chat/completions")
    with gateway(upstream, student(limits=LIMITS)) as gw, gw.client(STUDENT) as http:
        answer = http.post("/v1/chat/completions", json={"model": MODEL, "messages": HI})
    assert answer.status_code == 500  # the upstream's status, passed on
    assert ratelimit(answer.headers, "requests")["remaining"] == "59"
    assert "retry-after" not in answer.headers
