"""Keys made by keys spend from every ancestor's budget and rate limits, on every limiter backend and
across a restart: a key holder cannot multiply its budget by minting children and grandchildren."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import redis

from tests.accounting.conftest import REDIS, unavailable
from tests.accounting.gateway import ADMIN_KEY, eventually, fake_provider_settings
from tests.support.fake_upstream import FakeUpstream, Reply, Usage
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.support.tokens import estimate_prompt

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
MODEL = "fake/fake-model"
PROMPT = estimate_prompt({"messages": MESSAGES})


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream(usage=Usage(7, 3)).in_memory()  # 10 tokens a request


def call(gw: InProcessGateway, method: str, path: str, key: str, body: Any = None) -> Any:
    with gw.client(key) as http:
        reply = http.request(method, path, json=body)
    assert reply.status_code in (200, 201), reply.text
    return reply.json()


def mint(gw: InProcessGateway, key: str, **fields: Any) -> dict[str, Any]:
    """A key made with ``key``'s own secret (the admin key makes the first of a family)."""
    return call(gw, "POST", "/v1/keys", key, {"alias": "k", **fields})  # type: ignore[no-any-return]


def three_generations(
    gw: InProcessGateway, **parent_fields: Any
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    parent = mint(gw, ADMIN_KEY, **parent_fields)
    child = mint(gw, parent["key"])
    grandchild = mint(gw, child["key"])
    return parent, child, grandchild


def chat(gw: InProcessGateway, key: str, **extra: Any) -> Any:
    with gw.sdk(key) as client:
        return client.chat.completions.create(model=MODEL, messages=MESSAGES, **extra)


def tokens_used(gw: InProcessGateway, key: str) -> float:
    return call(gw, "GET", "/v1/quota", key)["tokens"]["used"]  # type: ignore[no-any-return]


def backend(limiter: str) -> dict[str, Any]:
    """Settings for a limiter backend; Redis is skipped (or fails in CI) when it is not running."""
    if limiter != "redis":
        return {"limiter": limiter}
    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at 127.0.0.1:6379 ({type(exc).__name__})")
    finally:
        client.close()
    return {"limiter": "redis", "redis_url": REDIS}


def forget_redis_counters(*keys: dict[str, Any]) -> None:
    client = redis.Redis.from_url(REDIS)
    try:
        for key in keys:
            for name in client.scan_iter(match=f"anygate:{{budget:key:{key['id']}:*"):
                client.delete(name)
    finally:
        client.close()


@pytest.fixture
def redis_cleanup(limiter: str) -> Iterator[list[dict[str, Any]]]:
    """The keys whose Redis counters go when the test ends (on the Redis backend; the others use none)."""
    keys: list[dict[str, Any]] = []
    yield keys
    if keys and limiter == "redis":
        forget_redis_counters(*keys)


@pytest.mark.parametrize("limiter", ["memory", "sql", pytest.param("redis", marks=pytest.mark.services)])
def test_children_and_grandchildren_spend_from_the_parents_budget(
    upstream: FakeUpstream, tmp_path: Path, limiter: str, redis_cleanup: list[dict[str, Any]]
) -> None:
    """Each made key gets a copy of the 20-token budget; the family still has 20 tokens in all."""
    settings = fake_provider_settings(upstream.base_url, tmp_path, **backend(limiter))
    with inprocess_gateway(settings, upstream) as gw:
        family = three_generations(gw, budget={"tokens": 20, "period": "daily"})
        redis_cleanup.extend(family)
        parent, child, grandchild = family
        assert grandchild["budget"]["tokens"] == 20 and grandchild["created_by"] == child["id"]
        chat(gw, grandchild["key"])
        chat(gw, child["key"])
        with pytest.raises(openai.RateLimitError) as refusal:
            chat(gw, grandchild["key"])  # its own copy has 10 left; the keys above it have none
        assert "which this key was made from" in refusal.value.message
        with pytest.raises(openai.RateLimitError):
            chat(gw, parent["key"])
        assert tokens_used(gw, parent["key"]) == 20
        assert tokens_used(gw, grandchild["key"]) == 20  # the budget that binds it: its ancestors'
    assert len(upstream.requests_to("/v1/chat/completions")) == 2


@pytest.mark.parametrize("limiter", ["memory", "sql", pytest.param("redis", marks=pytest.mark.services)])
def test_a_restart_counts_what_the_children_spent(
    upstream: FakeUpstream, tmp_path: Path, limiter: str, redis_cleanup: list[dict[str, Any]]
) -> None:
    """The parent's window is rebuilt from the ledger rows of the whole family (here the first run
    counted in memory; the second run's counters start from the ledger)."""
    with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream) as gw:
        family = three_generations(gw, budget={"tokens": 25, "period": "daily"})
        parent, child, grandchild = family
        chat(gw, grandchild["key"])
        chat(gw, child["key"])
    redis_cleanup.extend(family)
    with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path, **backend(limiter)), upstream) as gw:
        chat(gw, parent["key"], max_tokens=100)
        assert upstream.requests_to("/v1/chat/completions")[-1].json["max_tokens"] == 25 - 20 - PROMPT
        with pytest.raises(openai.RateLimitError):
            chat(gw, grandchild["key"])
        assert tokens_used(gw, parent["key"]) == 30


def test_a_childs_request_holds_the_parents_concurrency_slot(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script(Reply(first_byte_delay=1.0), path="/v1/chat/completions")
    with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream) as gw:
        parent = mint(gw, ADMIN_KEY, limits={"concurrency": 1})
        child = mint(gw, parent["key"])

        async def parent_while_child_runs() -> tuple[int, int, int]:
            body = {"model": MODEL, "messages": MESSAGES}
            async with gw.async_client(None) as client:
                running = asyncio.create_task(
                    client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {child['key']}"})
                )
                # Poll until the child's request holds its slot upstream.
                while not upstream.requests_to("/v1/chat/completions"):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                headers = {"Authorization": f"Bearer {parent['key']}"}
                during = await client.post("/v1/chat/completions", json=body, headers=headers)
                first = (await running).status_code
                after = await client.post("/v1/chat/completions", json=body, headers=headers)
                return first, during.status_code, after.status_code

        assert gw.run(parent_while_child_runs()) == (200, 429, 200)


BURST_BACKENDS = [
    "memory",
    pytest.param("redis", marks=pytest.mark.services),
    pytest.param("sql-postgresql", marks=pytest.mark.services),
]


@pytest.mark.parametrize("limiter", BURST_BACKENDS)
def test_200_concurrent_requests_of_a_family_admit_exactly_the_parents_budget(
    upstream: FakeUpstream, tmp_path: Path, limiter: str, request: pytest.FixtureRequest
) -> None:
    """Parent, child and grandchild take turns: 50 requests' worth of budget admits 50, not 50 a key."""
    ask = PROMPT + 20
    upstream.usage = Usage(PROMPT, 20)
    if limiter == "sql-postgresql":
        database = request.getfixturevalue("postgres_url").replace("+asyncpg", "")
        extra: dict[str, Any] = {"limiter": "sql", "database_url": database}
    else:
        extra = backend(limiter)
    family: tuple[dict[str, Any], ...] = ()
    try:
        with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path, **extra), upstream) as gw:
            family = three_generations(gw, budget={"tokens": 50 * ask, "period": "daily"})

            async def burst() -> list[int]:
                body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 20}
                async with gw.async_client(None) as c:
                    replies = await asyncio.gather(
                        *(
                            c.post(
                                "/v1/chat/completions",
                                json=body,
                                headers={"Authorization": f"Bearer {family[n % 3]['key']}"},
                            )
                            for n in range(200)
                        )
                    )
                return [r.status_code for r in replies]

            statuses = gw.run(burst())
            assert statuses.count(200) == 50, statuses
            assert statuses.count(429) == 150
            eventually(lambda: tokens_used(gw, family[0]["key"]) == 50 * ask, "the parent charged 50 requests")
    finally:
        if limiter == "redis" and family:
            forget_redis_counters(*family)
    assert len(upstream.requests_to("/v1/chat/completions")) == 50
