"""Every limiter backend admits exactly what a budget allows, under concurrency, and reclaims stale reservations."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio.connection import AbstractConnection, Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from anygate.accounting import redis_scripts
from anygate.accounting.limiter import Claim, Grant, Hold, Limiter, MemoryLimiter, Rejection
from anygate.accounting.limiter_redis import RedisLimiter
from anygate.accounting.limiter_sql import SqlLimiter
from anygate.accounting.redis_scripts import commands_bytes
from anygate.accounting.unsettled import Settlement, UnsettledQueue
from anygate.accounting.windows import LedgerWindow, WindowCount
from anygate.store.ledger_tables import metadata
from tests.accounting.conftest import LIMITER_BACKENDS, REDIS


@pytest.fixture(params=LIMITER_BACKENDS)
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    if request.param == "memory":
        yield MemoryLimiter()
    elif request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        redis_limiter = RedisLimiter.from_url(REDIS, prefix)
        yield redis_limiter
        await redis_limiter.close()
    else:
        url = request.getfixturevalue("postgres_url") if request.param == "postgres" else sqlite_url(request)
        engine = create_async_engine(url, pool_size=20, max_overflow=0)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        yield SqlLimiter(engine)
        await engine.dispose()


def sqlite_url(request: pytest.FixtureRequest) -> str:
    return f"sqlite+aiosqlite:///{request.getfixturevalue('tmp_path')}/limiter.db?timeout=30"


def bucket() -> str:
    return f"key:{uuid.uuid4().hex[:8]}:daily:2026-11-21"


async def test_200_concurrent_reserves_against_a_budget_of_50_admit_exactly_50(limiter: Limiter) -> None:
    name = bucket()
    claims = [Claim("tokens", 5000, 100), Claim("usd", 10.0, 0.1)]
    results = await asyncio.gather(*(limiter.reserve(name, claims, ttl=60) for _ in range(200)))
    grants = [r for r in results if isinstance(r, Grant)]
    assert len(grants) == 50
    assert all(isinstance(r, Rejection) and r.counter == "tokens" for r in results if not isinstance(r, Grant))
    await asyncio.gather(*(limiter.settle(g, {"tokens": 100, "usd": 0.1}) for g in grants))
    used = await limiter.usage(name)
    assert used["tokens"] == 5000
    assert used["usd"] == pytest.approx(5.0)
    assert isinstance(await limiter.reserve(name, claims, ttl=60), Rejection)


async def test_settling_below_the_reservation_frees_the_rest(limiter: Limiter) -> None:
    name = bucket()
    first = await limiter.reserve(name, [Claim("tokens", 1000, 800)], ttl=60)
    assert isinstance(first, Grant)
    assert isinstance(await limiter.reserve(name, [Claim("tokens", 1000, 300)], ttl=60), Rejection)
    await limiter.settle(first, {"tokens": 150})
    second = await limiter.reserve(name, [Claim("tokens", 1000, 800)], ttl=60)
    assert isinstance(second, Grant)
    await limiter.release(second)
    assert await limiter.usage(name) == {"tokens": 150}


async def test_a_hard_claim_is_clamped_to_what_is_left_when_its_minimum_fits(limiter: Limiter) -> None:
    name = bucket()
    first = await limiter.reserve(name, [Claim("tokens", 1000, 700)], ttl=60)
    assert isinstance(first, Grant)
    clamped = await limiter.reserve(name, [Claim("tokens", 1000, 500, minimum=100)], ttl=60)
    assert isinstance(clamped, Grant)
    assert clamped.amounts == {"tokens": 300}
    refused = await limiter.reserve(name, [Claim("tokens", 1000, 500, minimum=1)], ttl=60)
    assert isinstance(refused, Rejection)
    assert refused.available == 0


async def test_a_soft_claim_is_admitted_past_the_limit(limiter: Limiter) -> None:
    name = bucket()
    for _ in range(3):
        grant = await limiter.reserve(name, [Claim("tokens", 100, 80, hard=False)], ttl=60)
        assert isinstance(grant, Grant)
        await limiter.settle(grant, {"tokens": 80})
    assert await limiter.usage(name) == {"tokens": 240}


async def test_claims_on_one_bucket_are_all_or_nothing(limiter: Limiter) -> None:
    name = bucket()
    refused = await limiter.reserve(name, [Claim("tokens", 1000, 10), Claim("usd", 1.0, 2.0)], ttl=60)
    assert isinstance(refused, Rejection) and refused.counter == "usd"
    grant = await limiter.reserve(name, [Claim("tokens", 1000, 1000)], ttl=60)
    assert isinstance(grant, Grant)


async def test_a_stale_reservation_of_a_crashed_request_is_reclaimed(limiter: Limiter) -> None:
    name = bucket()
    crashed = await limiter.reserve(name, [Claim("tokens", 1000, 1000)], ttl=0)
    assert isinstance(crashed, Grant)
    # Never settled; its ttl is over, so the next reserve takes the budget back.
    grant = await limiter.reserve(name, [Claim("tokens", 1000, 1000)], ttl=60)
    assert isinstance(grant, Grant)
    await limiter.settle(crashed, {"tokens": 10})  # a late settle still charges what was used
    assert await limiter.usage(name) == {"tokens": 10}


async def test_a_retried_settlement_charges_only_a_reservation_still_held(limiter: Limiter) -> None:
    """``if_held`` (a retry, while the reservation cannot have expired): a reservation gone was settled
    already (the first attempt ran and its answer was lost); one still held is charged."""
    name = bucket()
    settled = await limiter.reserve(name, [Claim("tokens", 1000, 100)], ttl=60)
    waiting = await limiter.reserve(name, [Claim("tokens", 1000, 100)], ttl=60)
    assert isinstance(settled, Grant) and isinstance(waiting, Grant)
    await limiter.settle(settled, {"tokens": 10})
    await limiter.settle(settled, {"tokens": 10}, if_held=True)  # its answer was lost: retried
    await limiter.settle(waiting, {"tokens": 5}, if_held=True)  # never reached the backend: retried
    assert await limiter.usage(name) == {"tokens": 15}
    everything = await limiter.reserve(name, [Claim("tokens", 1000, 985)], ttl=60)
    assert isinstance(everything, Grant)  # both reservations are gone: 985 left


WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from anygate.accounting.limiter import Claim, Grant
    from anygate.accounting.limiter_redis import RedisLimiter
    from anygate.accounting.limiter_sql import SqlLimiter
    from sqlalchemy.ext.asyncio import create_async_engine

    async def admitted(limiter, bucket):
        claims = [Claim("tokens", 5000, 100)]
        results = await asyncio.gather(*(limiter.reserve(bucket, claims, ttl=60) for _ in range(50)))
        await limiter.close()
        return sum(isinstance(r, Grant) for r in results)

    async def main(postgres_url, redis_url, prefix, bucket):
        engine = create_async_engine(postgres_url, pool_size=10, max_overflow=0)
        by_sql = await admitted(SqlLimiter(engine), bucket)
        await engine.dispose()
        by_redis = await admitted(RedisLimiter.from_url(redis_url, prefix), bucket)
        print(by_sql, by_redis)

    asyncio.run(main(*sys.argv[1:]))
    """
)


@pytest.mark.services
def test_four_processes_share_one_budget_without_overrun(postgres_url: str, redis_prefix: str) -> None:
    """Four worker processes, 50 concurrent reserves each, one budget admitting 50: in PostgreSQL and Redis."""
    name = bucket()
    args = [sys.executable, "-c", WORKER, postgres_url, REDIS, redis_prefix, name]
    workers = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    admitted = [tuple(map(int, w.communicate(timeout=90)[0].split())) for w in workers]
    assert all(w.returncode == 0 for w in workers)
    assert sum(sql for sql, _ in admitted) == 50
    assert sum(redis for _, redis in admitted) == 50


async def test_the_sql_limiter_purges_counters_of_ended_windows(limiter: Limiter) -> None:
    if not isinstance(limiter, SqlLimiter):
        pytest.skip("only the SQL limiter keeps counters past their window")
    ended, open_ended = bucket(), bucket()
    for name, window in ((ended, 0.0), (open_ended, None)):
        grant = await limiter.reserve(name, [Claim("tokens", 100, 10)], ttl=60, window=window)
        assert isinstance(grant, Grant)
        await limiter.settle(grant, {"tokens": 10})
    assert await limiter.purge_expired() >= 1
    assert await limiter.usage(ended) == {}
    assert await limiter.usage(open_ended) == {"tokens": 10}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
async def test_one_of_many_concurrent_quota_poll_claims_wins_per_interval(
    request: pytest.FixtureRequest, backend: str
) -> None:
    from anygate.quota.polls import QuotaPolls

    url = request.getfixturevalue("postgres_url") if backend == "postgres" else sqlite_url(request)
    engine = create_async_engine(url, pool_size=20, max_overflow=0)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    polls, provider = QuotaPolls(engine), f"p{uuid.uuid4().hex[:8]}"
    try:
        first = await asyncio.gather(*(polls.claim(provider, 1000.0, 60) for _ in range(20)))
        again = await asyncio.gather(*(polls.claim(provider, 1030.0, 60) for _ in range(20)))
        later = await asyncio.gather(*(polls.claim(provider, 1061.0, 60) for _ in range(20)))
        await polls.store(provider, {"error": "HTTP 500"}, 1061.0)
        stored = await polls.read(provider)
    finally:
        await engine.dispose()
    assert (first.count(True), again.count(True), later.count(True)) == (1, 0, 1)
    assert stored == (1061.0, 1061.0, {"error": "HTTP 500"})


async def test_a_grant_says_what_each_counter_has_left_after_it(limiter: Limiter) -> None:
    name = bucket()
    first = await limiter.reserve(name, [Claim("requests", 3, 1), Claim("tokens", 100, 30)], ttl=60)
    second = await limiter.reserve(name, [Claim("requests", 3, 1), Claim("tokens", 100, 90, minimum=10)], ttl=60)
    assert isinstance(first, Grant) and isinstance(second, Grant)
    assert first.left == {"requests": 2.0, "tokens": 70.0}
    assert second.amounts["tokens"] == 70.0 and second.left == {"requests": 1.0, "tokens": 0.0}  # clamped
    await limiter.settle(first, {"requests": 1, "tokens": 10})  # 20 of its 30 tokens come back
    third = await limiter.reserve(name, [Claim("requests", 3, 1), Claim("tokens", 100, 5)], ttl=60)
    assert isinstance(third, Grant) and third.left == {"requests": 0.0, "tokens": 15.0}
    soft = await limiter.reserve(bucket(), [Claim("usd", 1.0, 1.5, hard=False)], ttl=60)
    assert isinstance(soft, Grant) and soft.left["usd"] == pytest.approx(-0.5)  # past a soft limit


async def test_a_rejection_says_what_the_counters_checked_before_it_had(limiter: Limiter) -> None:
    name = bucket()
    held = await limiter.reserve(name, [Claim("requests", 3, 1), Claim("tokens", 100, 60)], ttl=60)
    refused = await limiter.reserve(name, [Claim("requests", 3, 1), Claim("tokens", 100, 50)], ttl=60)
    assert isinstance(held, Grant)
    assert isinstance(refused, Rejection) and refused.counter == "tokens" and refused.available == 40.0
    assert refused.left == {"requests": 2.0}  # nothing of the refused request was reserved
    again = await limiter.reserve(name, [Claim("requests", 3, 1), Claim("tokens", 100, 40)], ttl=60)
    assert isinstance(again, Grant) and again.left == {"requests": 1.0, "tokens": 0.0}


def holds_of_a_request(names: list[str], binding: str) -> list[Hold]:
    """A key's, its user's and its team's windows: ``binding`` admits 50 requests, the others thousands."""
    return [
        Hold(name, [Claim("tokens", 5000 if name == binding else 10**6, 100), Claim("requests", 10**6, 1)], 3600.0)
        for name in names
    ]


async def test_200_concurrent_requests_on_nine_buckets_admit_exactly_what_the_tightest_allows(
    limiter: Limiter,
) -> None:
    names = [bucket() for _ in range(9)]
    holds = holds_of_a_request(names, binding=names[4])
    decisions = await asyncio.gather(*(limiter.reserve_all(holds, ttl=60) for _ in range(200)))
    admitted = [d for d in decisions if not isinstance(d[-1], Rejection)]
    assert len(admitted) == 50
    assert all(len(d) == 9 for d in admitted)
    refused = [d[-1] for d in decisions if isinstance(d[-1], Rejection)]
    assert {r.bucket for r in refused} == {names[4]}
    for d in admitted:
        assert await limiter.settle_all([(grant, {"tokens": 100, "requests": 1}) for grant in d]) == []  # type: ignore[misc]
    for name in names:  # a refused request held nothing on the buckets before the one that refused it
        assert await limiter.usage(name) == {"tokens": 5000.0, "requests": 50.0}
        assert await limiter.reserve(name, [Claim("tokens", 5000, 1)], ttl=60) == Rejection(name, "tokens", 0.0, {})


async def test_a_request_refused_by_its_last_bucket_holds_nothing_on_the_others(limiter: Limiter) -> None:
    names = [bucket() for _ in range(3)]
    full = await limiter.reserve(names[2], [Claim("tokens", 5000, 4950)], ttl=60)
    assert isinstance(full, Grant)
    decisions = await limiter.reserve_all(holds_of_a_request(names, binding=names[2]), ttl=60)
    assert isinstance(decisions[-1], Rejection) and decisions[-1].bucket == names[2]
    again = await limiter.reserve_all([Hold(names[0], [Claim("tokens", 100, 100)])], ttl=60)
    assert isinstance(again[0], Grant)  # the refused request's 100 tokens on it were given back


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
async def test_the_sql_limiter_takes_one_connection_to_reserve_a_request_and_one_to_settle_it(
    request: pytest.FixtureRequest, backend: str
) -> None:
    """Nine buckets a request (key, user, team; three windows each): a connection per bucket made 200
    concurrent requests wait on the pool until it timed out (503); one transaction a request does not."""
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else sqlite_url(request)
    engine = create_async_engine(url, pool_size=5, max_overflow=0)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    checkouts: list[object] = []
    event.listen(engine.sync_engine, "checkout", lambda *args: checkouts.append(args))
    limiter = SqlLimiter(engine)
    names = [bucket() for _ in range(9)]
    try:
        decisions = await limiter.reserve_all(holds_of_a_request(names, binding=names[0]), ttl=60)
        assert len(checkouts) == 1 and len(decisions) == 9
        assert await limiter.settle_all([(grant, {"tokens": 100}) for grant in decisions]) == []  # type: ignore[misc]
        assert len(checkouts) == 2
        assert await limiter.usage(names[8]) == {"tokens": 100.0, "requests": 0.0}
    finally:
        await engine.dispose()


# ------------------------------------------------------------------------------------------ Redis round trips


@pytest.fixture
async def redis_limiter(redis_prefix: str) -> AsyncIterator[RedisLimiter]:
    limiter = RedisLimiter.from_url(REDIS, redis_prefix)
    yield limiter
    await limiter.close()


def count_round_trips(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every write of commands to Redis, through any connection: one a round trip (a command, or a pipeline)."""
    sent: list[object] = []
    send = AbstractConnection.send_packed_command

    async def counted(connection: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent.append(command)
        await send(connection, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return sent


@pytest.mark.services
async def test_the_redis_limiter_reserves_a_request_in_one_round_trip_and_settles_it_in_one(
    redis_limiter: RedisLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nine buckets a request: one script a bucket, all of them in one pipeline (a round trip a bucket cost
    ~150 µs of the gateway's CPU each way)."""
    names = [bucket() for _ in range(9)]
    await redis_limiter.reserve(bucket(), [Claim("tokens", 10, 1)], ttl=60)  # the scripts are loaded
    taken = count_round_trips(monkeypatch)
    decisions = await redis_limiter.reserve_all(holds_of_a_request(names, binding=names[0]), ttl=60)
    assert len(taken) == 1 and len(decisions) == 9 and all(isinstance(d, Grant) for d in decisions)
    assert await redis_limiter.settle_all([(grant, {"tokens": 100}) for grant in decisions]) == []  # type: ignore[misc]
    assert len(taken) == 2
    # (a counter charged nothing is not written)
    assert [await redis_limiter.usage(name) for name in names] == [{"tokens": 100.0}] * 9


@pytest.mark.services
async def test_a_redis_refusal_in_the_middle_gives_back_what_every_other_bucket_granted(
    redis_limiter: RedisLimiter,
) -> None:
    """The buckets after the refusing one were reserved in the same round trip: given back too."""
    names = [bucket() for _ in range(3)]
    full = await redis_limiter.reserve(names[1], [Claim("tokens", 5000, 4950)], ttl=60)
    assert isinstance(full, Grant)
    decisions = await redis_limiter.reserve_all(holds_of_a_request(names, binding=names[1]), ttl=60)
    assert len(decisions) == 2 and isinstance(decisions[0], Grant)
    assert isinstance(decisions[1], Rejection) and decisions[1].bucket == names[1] and decisions[1].available == 50
    for name in (names[0], names[2]):  # all of each taken again: nothing of the refused request is held
        grant = await redis_limiter.reserve(name, [Claim("tokens", 10**6, 10**6)], ttl=60)
        assert isinstance(grant, Grant), name


@pytest.mark.services
async def test_a_redis_that_lost_its_scripts_is_given_them_again(redis_limiter: RedisLimiter) -> None:
    """A restarted Redis has no scripts: the pipeline's NOSCRIPT answers load them, and the calls run once."""
    names = [bucket() for _ in range(3)]
    await redis_limiter.reserve(bucket(), [Claim("tokens", 10, 1)], ttl=60)
    await redis_limiter._redis.script_flush()
    decisions = await redis_limiter.reserve_all(holds_of_a_request(names, binding=names[0]), ttl=60)
    assert all(isinstance(d, Grant) for d in decisions)
    await redis_limiter._redis.script_flush()
    assert await redis_limiter.settle_all([(grant, {"tokens": 7}) for grant in decisions]) == []  # type: ignore[misc]
    assert [await redis_limiter.usage(name) for name in names] == [{"tokens": 7.0}] * 3


@pytest.mark.services
async def test_a_redis_that_cannot_be_reached_at_settle_returns_every_settlement(redis_prefix: str) -> None:
    """Nothing is known to be settled: every grant is returned, to be retried (``unsettled``)."""
    limiter = RedisLimiter.from_url(REDIS, redis_prefix)
    names = [bucket() for _ in range(3)]
    decisions = await limiter.reserve_all(holds_of_a_request(names, binding=names[0]), ttl=60)
    await limiter.close()
    gone = RedisLimiter.from_url("redis://127.0.0.1:1/0", redis_prefix)  # nothing listens on port 1
    settlements = [(grant, {"tokens": 1.0}) for grant in decisions]
    try:
        assert await gone.settle_all(settlements) == settlements  # type: ignore[arg-type]
    finally:
        await gone.close()


async def test_a_redis_that_cannot_be_reached_at_reserve_is_given_nothing_back(redis_prefix: str) -> None:
    """No connection could be opened: nothing went out, so nothing is given back (no work piles up for the
    length of an outage)."""
    limiter = RedisLimiter.from_url("redis://127.0.0.1:1/0", redis_prefix)  # nothing listens on port 1
    given_back: list[list[Grant]] = []
    limiter._give_back = given_back.append  # type: ignore[method-assign]
    try:
        with pytest.raises(RedisConnectionError):
            await limiter.reserve(bucket(), [Claim("tokens", 10, 1)], ttl=60)
        assert given_back == []
    finally:
        await limiter.close()


@pytest.mark.services
async def test_requests_reserving_in_the_same_turn_share_one_round_trip(
    redis_limiter: RedisLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty requests asking in one turn of the loop (as under load): one pipeline, each its own answers."""
    await redis_limiter.reserve(bucket(), [Claim("tokens", 10, 1)], ttl=60)  # the scripts are loaded
    names = [bucket() for _ in range(3)]
    taken = count_round_trips(monkeypatch)
    requests = [holds_of_a_request(names, binding=names[1]) for _ in range(20)]
    decisions = await asyncio.gather(*(redis_limiter.reserve_all(holds, ttl=60) for holds in requests))
    assert len(taken) == 1
    assert [[d.bucket for d in request] for request in decisions] == [names] * 20
    tokens = {d.token for request in decisions for d in request if isinstance(d, Grant)}
    assert len(tokens) == 60  # a reservation a hold, named after its request's: <request token>:<hold>
    assert len({token.rsplit(":", 1)[0] for token in tokens}) == 20
    left = [request[1].left["tokens"] for request in decisions if isinstance(request[1], Grant)]
    assert sorted(left) == sorted(5000 - 100 * n for n in range(1, 21))  # each saw what the ones before it held


@pytest.mark.services
async def test_a_request_cancelled_before_its_turn_is_sent_reserves_nothing(redis_limiter: RedisLimiter) -> None:
    kept, dropped = bucket(), bucket()
    first = asyncio.create_task(redis_limiter.reserve_all([Hold(kept, [Claim("tokens", 100, 100)])], ttl=60))
    second = asyncio.create_task(redis_limiter.reserve_all([Hold(dropped, [Claim("tokens", 100, 100)])], ttl=60))
    await asyncio.sleep(0)  # both have asked; the turn's pipeline is not sent yet
    second.cancel()
    assert isinstance((await first)[0], Grant)
    with pytest.raises(asyncio.CancelledError):
        await second
    whole = await redis_limiter.reserve(dropped, [Claim("tokens", 100, 100)], ttl=60)
    assert isinstance(whole, Grant)  # nothing of the cancelled request was held


@pytest.mark.services
async def test_a_request_refused_by_one_redis_bucket_never_holds_the_others(redis_limiter: RedisLimiter) -> None:
    """All or none in one script: a key past its own concurrency takes nothing, even for a moment, from a
    budget it shares with another key asking in the same turn."""
    slot, shared = bucket(), bucket()
    assert isinstance(await redis_limiter.reserve(slot, [Claim("inflight", 1, 1)], ttl=60), Grant)
    flooding = [Hold(slot, [Claim("inflight", 1, 1)]), Hold(shared, [Claim("tokens", 100, 100)])]
    sibling = [Hold(shared, [Claim("tokens", 100, 100)])]
    refused, admitted = await asyncio.gather(
        redis_limiter.reserve_all(flooding, ttl=60), redis_limiter.reserve_all(sibling, ttl=60)
    )
    assert refused == [Rejection(slot, "inflight", 0.0, {})]
    assert isinstance(admitted[0], Grant) and admitted[0].amounts == {"tokens": 100.0}


@pytest.mark.services
async def test_a_refusal_tells_what_the_buckets_before_it_would_have_had(redis_limiter: RedisLimiter) -> None:
    names = [bucket() for _ in range(3)]
    assert isinstance(await redis_limiter.reserve(names[1], [Claim("tokens", 5000, 4950)], ttl=60), Grant)
    decisions = await redis_limiter.reserve_all(holds_of_a_request(names, binding=names[1]), ttl=60)
    first, refusal = decisions
    assert isinstance(first, Grant) and first.left == {"tokens": 10**6 - 100, "requests": 10**6 - 1}
    assert refusal == Rejection(names[1], "tokens", 50.0, {})
    assert await redis_limiter.usage(names[0]) == {}  # nothing held or used
    whole = await redis_limiter.reserve(names[0], [Claim("tokens", 10**6, 10**6)], ttl=60)
    assert isinstance(whole, Grant)


@pytest.mark.services
async def test_a_failed_seed_leaves_nothing_held_on_the_other_buckets(redis_prefix: str) -> None:
    async def failing_seeder(window: Any) -> Any:
        raise OSError("the ledger is unavailable")

    limiter = RedisLimiter.from_url(REDIS, redis_prefix, seeder=failing_seeder)
    slot, budget = bucket(), bucket()
    window = LedgerWindow("key", "k1", 1_700_000_000.0)
    holds = [Hold(slot, [Claim("inflight", 1, 1)]), Hold(budget, [Claim("tokens", 100, 10)], seed_from=window)]
    try:
        with pytest.raises(OSError, match="ledger"):
            await limiter.reserve_all(holds, ttl=60)
        assert isinstance(await limiter.reserve(slot, [Claim("inflight", 1, 1)], ttl=60), Grant)  # not leaked
    finally:
        await limiter.close()


@pytest.mark.services
async def test_a_caller_gone_once_its_reservation_went_out_gives_it_back(redis_limiter: RedisLimiter) -> None:
    """The request was cancelled (its client left) while Redis answered: what it was granted is released."""
    runner = redis_limiter._scripts
    sent, go_on = asyncio.Event(), asyncio.Event()
    pipeline = runner._pipeline

    async def held_answer(flat: Any) -> list[Any]:
        answers = await pipeline(flat)
        sent.set()
        await go_on.wait()
        return answers

    name = bucket()
    runner._pipeline = held_answer  # type: ignore[method-assign]
    request = asyncio.create_task(redis_limiter.reserve_all([Hold(name, [Claim("inflight", 1, 1)])], ttl=60))
    await sent.wait()  # reserved in Redis, not answered yet
    request.cancel()
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await request
    runner._pipeline = pipeline  # type: ignore[method-assign]
    await runner.wait_sent()  # the release
    assert isinstance(await redis_limiter.reserve(name, [Claim("inflight", 1, 1)], ttl=60), Grant)


@pytest.mark.services
async def test_calls_that_ran_keep_their_answers_when_reloading_a_lost_script_fails(
    redis_limiter: RedisLimiter,
) -> None:
    """A settle that ran in the turn's pipeline is not reported failed (its retry would count it twice)
    because another caller's script was missing and could not be loaded again."""
    name = bucket()
    grant = await redis_limiter.reserve(name, [Claim("tokens", 100, 10)], ttl=60)
    assert isinstance(grant, Grant)
    client = redis_limiter._redis
    await client.script_flush()  # as a restart would; then only the settle script is back
    await client.script_load(redis_limiter._settle.script)

    async def unreachable(scripts: Any) -> None:
        raise RedisConnectionError("gone while loading")

    redis_limiter._scripts._load = unreachable  # type: ignore[method-assign]
    reserving = redis_limiter.reserve_all([Hold(bucket(), [Claim("tokens", 100, 10)])], ttl=60)
    settled, reserved = await asyncio.gather(
        redis_limiter.settle_all([(grant, {"tokens": 7.0})]), reserving, return_exceptions=True
    )
    assert settled == [] and isinstance(reserved, RedisConnectionError)
    assert await redis_limiter.usage(name) == {"tokens": 7.0}


@pytest.mark.services
async def test_a_bucket_gone_while_another_was_seeded_is_seeded_too(redis_prefix: str) -> None:
    """A Redis that restarts between the seeding and the reservation: asked again, seeded again."""
    first, second = bucket(), bucket()
    windows = {name: LedgerWindow("key", f"k{n}", 1_700_000_000.0) for n, name in enumerate((first, second), start=1)}
    seeded: list[str] = []
    made: list[RedisLimiter] = []

    async def seeder(window: LedgerWindow) -> WindowCount:
        seeded.append(window.id)
        if window.id == "k1":  # the other bucket goes meanwhile
            await made[0]._redis.delete(made[0].keys(second)[0])
        return WindowCount({"tokens": 5.0})

    made.append(RedisLimiter.from_url(REDIS, redis_prefix, seeder=seeder))
    try:
        await made[0].seed(second, windows[second], 0)
        holds = [Hold(name, [Claim("tokens", 100, 10)], seed_from=windows[name]) for name in (first, second)]
        decisions = await made[0].reserve_all(holds, ttl=60)
        assert all(isinstance(d, Grant) for d in decisions) and seeded == ["k2", "k1", "k2"]
        assert [d.left for d in decisions] == [{"tokens": 85.0}, {"tokens": 85.0}]  # both counted from the ledger
    finally:
        await made[0].close()


@pytest.mark.services
async def test_one_bucket_held_twice_by_a_request_counts_both_holds(redis_limiter: RedisLimiter) -> None:
    name = bucket()
    twice = [Hold(name, [Claim("inflight", 1, 1)]), Hold(name, [Claim("inflight", 1, 1)])]
    decisions = await redis_limiter.reserve_all(twice, ttl=60)
    assert isinstance(decisions[-1], Rejection) and decisions[-1].available == 0.0  # the first hold took it
    both = [Hold(name, [Claim("tokens", 100, 30)]), Hold(name, [Claim("tokens", 100, 50)])]
    granted = await redis_limiter.reserve_all(both, ttl=60)
    assert [d.left for d in granted] == [{"tokens": 70.0}, {"tokens": 20.0}]
    assert await redis_limiter.settle_all([(grant, {}) for grant in granted]) == []  # type: ignore[misc]
    whole = await redis_limiter.reserve(name, [Claim("tokens", 100, 100), Claim("inflight", 1, 1)], ttl=60)
    assert isinstance(whole, Grant)  # both holds were given back whole


@pytest.mark.services
async def test_one_bucket_held_twice_is_charged_for_both_holds_when_their_settling_is_retried(
    redis_limiter: RedisLimiter,
) -> None:
    """Each hold has a reservation of its own: the retry of one (``if_held``) does not find the other's gone."""
    name = bucket()
    holds = [Hold(name, [Claim("tokens", 1000, 100)]), Hold(name, [Claim("tokens", 1000, 50)])]
    grants = await redis_limiter.reserve_all(holds, ttl=60)
    queue = UnsettledQueue()  # their settling failed before reaching Redis
    queue.add(Settlement(grant, {"tokens": 10.0}, held_until=time.monotonic() + 60) for grant in grants)  # type: ignore[arg-type]
    assert await queue.retry(redis_limiter) == 2
    assert await redis_limiter.usage(name) == {"tokens": 20.0}


@pytest.mark.services
async def test_a_caller_cancelled_in_the_turn_its_answer_came_gives_it_back(redis_limiter: RedisLimiter) -> None:
    runner = redis_limiter._scripts
    pipeline = runner._pipeline
    request: list[asyncio.Task[Any]] = []

    async def cancelled_as_answered(flat: Any) -> list[Any]:
        answers = await pipeline(flat)
        asyncio.get_running_loop().call_soon(request[0].cancel)  # before the caller resumes with its answer
        return answers

    name = bucket()
    runner._pipeline = cancelled_as_answered  # type: ignore[method-assign]
    request.append(asyncio.create_task(redis_limiter.reserve_all([Hold(name, [Claim("inflight", 1, 1)])], ttl=60)))
    with pytest.raises(asyncio.CancelledError):
        await request[0]
    runner._pipeline = pipeline  # type: ignore[method-assign]
    await runner.wait_sent()
    assert isinstance(await redis_limiter.reserve(name, [Claim("inflight", 1, 1)], ttl=60), Grant)


@pytest.mark.services
async def test_a_settlement_whose_answer_was_lost_is_counted_once(redis_limiter: RedisLimiter) -> None:
    """Redis ran the settle scripts and the connection dropped before their answers came: the settlements are
    returned as failed, and the retry (``unsettled``, while the reservations cannot have expired) charges
    nothing again. After that, a reservation gone may have been reclaimed: the retry charges it."""
    names = [bucket() for _ in range(3)]
    decisions = await redis_limiter.reserve_all(holds_of_a_request(names, binding=names[0]), ttl=60)
    pipeline = redis_limiter._scripts._pipeline

    async def answer_lost(flat: Any) -> list[Any]:
        await pipeline(flat)
        raise RedisConnectionError("Connection reset by peer")

    redis_limiter._scripts._pipeline = answer_lost  # type: ignore[method-assign]
    failed = await redis_limiter.settle_all([(grant, {"tokens": 7.0}) for grant in decisions])  # type: ignore[misc]
    redis_limiter._scripts._pipeline = pipeline  # type: ignore[method-assign]
    assert len(failed) == 3
    queue = UnsettledQueue()
    queue.add(Settlement(grant, actual, held_until=time.monotonic() + 60) for grant, actual in failed)
    assert await queue.retry(redis_limiter) == 3 and not queue
    assert [await redis_limiter.usage(name) for name in names] == [{"tokens": 7.0}] * 3

    reclaimed = await redis_limiter.reserve(names[0], [Claim("tokens", 10**6, 100)], ttl=0)
    assert isinstance(reclaimed, Grant)
    await redis_limiter.reserve(names[0], [Claim("tokens", 10**6, 1)], ttl=60)  # reclaims the expired one
    queue.add([Settlement(reclaimed, {"tokens": 3.0}, held_until=time.monotonic() - 1)])
    assert await queue.retry(redis_limiter) == 1
    assert await redis_limiter.usage(names[0]) == {"tokens": 10.0}


def test_commands_are_packed_as_redis_py_packs_them_and_a_word_of_another_type_is_refused() -> None:
    command = ("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", 2, "a", "{b}:café", 900_000, -1, "0.5", b"\x00")
    packed = b"".join(Connection().pack_commands([command, ("SCRIPT", "LOAD", "return 1")]))
    assert commands_bytes([command, ("SCRIPT", "LOAD", "return 1")]) == packed
    for word in (0.5, True, None):
        with pytest.raises(TypeError, match="text, bytes or an int"):
            commands_bytes([("SET", "k", word)])


@pytest.mark.sockets  # a listener of its own on the loopback, that never answers
async def test_a_redis_that_stalls_is_not_sent_more_connections_than_the_runner_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two exchanges under way on a Redis that never answers, at most two connections: the third waits for
    one, then fails as Redis unavailable (its request answered 503, or its settlement retried later)."""
    monkeypatch.setattr(redis_scripts, "MOST_CONNECTIONS", 2)
    monkeypatch.setattr(redis_scripts, "CONNECTION_WAIT", 0.2)
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limiter = RedisLimiter.from_url(f"redis://127.0.0.1:{port}/0")
    stalled = []
    for _ in range(2):  # in turns of the loop of their own: two pipelines
        stalled.append(asyncio.ensure_future(limiter.reserve(bucket(), [Claim("tokens", 10, 1)], ttl=60)))
        await asyncio.sleep(0.05)
    try:
        with pytest.raises(RedisConnectionError, match="no connection to Redis free"):
            await limiter.reserve(bucket(), [Claim("tokens", 10, 1)], ttl=60)
        assert len(accepted) == 2
    finally:
        for writer in accepted:  # the exchanges under way fail at once
            writer.close()
        for waiting in stalled:
            waiting.cancel()
        await asyncio.gather(*stalled, return_exceptions=True)
        await limiter.close()
        server.close()
        await server.wait_closed()


class RedisProxy:
    """A TCP proxy to the test Redis that can reset every client connection (as a load balancer, or a host
    gone, does) and, while ``losing``, pass commands on to Redis but reset the client's connection instead
    of answering: the commands ran, their answers were lost."""

    def __init__(self) -> None:
        self.clients: list[asyncio.StreamWriter] = []
        self.upstreams: list[asyncio.StreamWriter] = []  # the proxy's own connections to Redis
        self.serving: list[asyncio.Future[None]] = []
        self.losing = False
        self.stalling = False  # the commands reach Redis, their answers are dropped: the client hears nothing
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.append(writer)
        redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self.upstreams.append(redis_writer)

        async def commands() -> None:
            while data := await reader.read(65536):
                redis_writer.write(data)

        async def answers() -> None:
            while data := await redis_reader.read(65536):
                if self.losing:
                    self.reset(writer)
                    return
                if not self.stalling:
                    writer.write(data)

        serving = asyncio.gather(commands(), answers())
        self.serving.append(serving)
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await serving
        redis_writer.close()

    def reset(self, writer: asyncio.StreamWriter) -> None:
        if writer.transport.is_closing():
            return
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    def reset_all(self) -> None:
        for writer in self.clients:
            self.reset(writer)
        self.clients.clear()

    async def stop(self) -> None:
        self.reset_all()
        for serving in self.serving:
            serving.cancel()
        for upstream in self.upstreams:
            upstream.close()
            with contextlib.suppress(OSError):
                await upstream.wait_closed()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def redis_proxy() -> AsyncIterator[RedisProxy]:
    proxy = RedisProxy()
    yield proxy
    await proxy.stop()


@contextlib.asynccontextmanager
async def limiter_through(proxy: RedisProxy, query: str = "") -> AsyncIterator[RedisLimiter]:
    """A limiter talking to Redis through ``proxy`` (``query``: the URL's options), its scripts loaded."""
    limiter = RedisLimiter.from_url(f"{await proxy.start()}{query}", f"anygate-test-{uuid.uuid4().hex[:12]}:")
    try:
        await limiter.reserve(bucket(), [Claim("tokens", 10, 1)], ttl=60)
        yield limiter
    finally:
        await limiter.close()


ONE_AT_A_TIME = [Claim("inflight", 1, 1)]  # a key's concurrency of 1: held, it refuses every other request


async def is_free(limiter: RedisLimiter, name: str) -> bool:
    """Whether nothing holds the bucket's one slot (a reservation given back, or never made)."""
    return isinstance(await limiter.reserve(name, ONE_AT_A_TIME, ttl=900), Grant)


@pytest.mark.sockets
@pytest.mark.services
async def test_idle_connections_reset_together_fail_one_turn_not_one_each(redis_proxy: RedisProxy) -> None:
    async with limiter_through(redis_proxy) as limiter:
        runner = limiter._scripts
        await asyncio.gather(*(runner._exchange([("PING",)]) for _ in range(3)))  # three at once: three kept
        assert len(runner._idle) == 3
        redis_proxy.reset_all()
        await asyncio.sleep(0.1)
        given_back: list[list[Grant]] = []
        give_back = limiter._give_back

        def recorded(grants: list[Grant]) -> None:
            given_back.append(grants)
            give_back(grants)

        limiter._give_back = recorded  # type: ignore[method-assign]
        unreleased: list[Grant] = []
        limiter.unreleased_listeners.append(unreleased.extend)
        with pytest.raises(RedisConnectionError):  # a reset is not seen before writing on the connection
            await limiter.reserve(bucket(), [Claim("tokens", 10, 1)], ttl=60)
        assert len(given_back) == 1  # written on an open connection, it may have run: given back on a new one
        await runner.wait_sent()
        assert not unreleased and await is_free(limiter, bucket())


@pytest.mark.sockets
@pytest.mark.services
async def test_a_reservation_whose_answer_was_lost_is_given_back(redis_proxy: RedisProxy) -> None:
    """The reserve ran and its answer never came: its request is refused (503), and what it may hold is
    given back at once rather than held until it expires (a key with a concurrency of 1 locked out for 15
    minutes)."""
    name = bucket()
    async with limiter_through(redis_proxy) as limiter:
        redis_proxy.losing = True
        with pytest.raises(RedisConnectionError):
            await limiter.reserve(name, ONE_AT_A_TIME, ttl=900)
        redis_proxy.losing = False
        await limiter._scripts.wait_sent()  # the give-back
        assert await is_free(limiter, name)


@pytest.mark.services
async def test_closing_waits_for_the_give_backs_that_answers_start_and_leaves_no_connection(redis_prefix: str) -> None:
    """A request cancelled in the turn its reservation came starts a give-back: closing the limiter then waits
    for it too, and no connection of the limiter's stays open on Redis."""
    client_name = f"anygate-test-close-{uuid.uuid4().hex[:8]}"
    limiter = RedisLimiter.from_url(f"{REDIS}?client_name={client_name}", redis_prefix)
    await limiter.reserve(bucket(), [Claim("inflight", 1, 1)], ttl=60)  # the scripts are loaded
    runner = limiter._scripts
    pipeline = runner._pipeline
    requests: list[asyncio.Task[Any]] = []

    async def cancelled_as_answered(flat: Any) -> list[Any]:
        runner._pipeline = pipeline  # type: ignore[method-assign]
        answers = await pipeline(flat)
        asyncio.get_running_loop().call_soon(requests[0].cancel)
        return answers

    runner._pipeline = cancelled_as_answered  # type: ignore[method-assign]
    requests.append(asyncio.create_task(limiter.reserve_all([Hold(bucket(), [Claim("inflight", 1, 1)])], ttl=60)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # its pipeline is under way
    await limiter.close()
    assert requests[0].cancelled() and not runner._sending and not runner._idle
    admin = redis.asyncio.Redis.from_url(REDIS)
    try:
        assert not [c for c in await admin.client_list() if c.get("name") == client_name]
    finally:
        await admin.aclose()


@pytest.mark.sockets
@pytest.mark.services
async def test_a_redis_that_stops_answering_times_out_and_what_it_may_hold_is_given_back(
    redis_proxy: RedisProxy,
) -> None:
    """The answers stop coming (``socket_timeout``, 0.3 s here): the reserve fails as Redis unavailable, and
    once Redis answers again what it may hold is given back."""
    name = bucket()
    async with limiter_through(redis_proxy, "?socket_timeout=0.3") as limiter:
        redis_proxy.stalling = True
        with pytest.raises(RedisTimeoutError, match="did not answer within 0.3 s"):
            await limiter.reserve(name, ONE_AT_A_TIME, ttl=900)
        redis_proxy.stalling = False
        await limiter._scripts.wait_sent()  # the give-back, on a connection of its own
        assert await is_free(limiter, name)


@pytest.mark.sockets
@pytest.mark.services
async def test_a_request_gone_while_its_reservation_was_lost_gives_it_back(redis_proxy: RedisProxy) -> None:
    """The caller is cancelled (its client left) while Redis does not answer; the answer is then lost to the
    timeout: what the reservation may hold is given back all the same."""
    name = bucket()
    async with limiter_through(redis_proxy, "?socket_timeout=0.3") as limiter:
        redis_proxy.stalling = True
        reserving = asyncio.ensure_future(limiter.reserve(name, ONE_AT_A_TIME, ttl=900))
        await asyncio.sleep(0.1)
        reserving.cancel()
        await asyncio.sleep(0.1)
        redis_proxy.stalling = False
        await limiter._scripts.wait_sent()  # the answer lost to the timeout, then the give-back
        assert await is_free(limiter, name)


@pytest.mark.sockets
@pytest.mark.services
async def test_a_give_back_redis_cannot_take_now_waits_to_be_retried(redis_proxy: RedisProxy) -> None:
    """Redis stays silent past the give-back of a lost reservation too: the grants go to the enforcer's
    queue of unsettled work, and are released once Redis answers."""
    name = bucket()
    queue = UnsettledQueue()
    async with limiter_through(redis_proxy, "?socket_timeout=0.3&socket_connect_timeout=0.3") as limiter:
        limiter.unreleased_listeners.append(queue.release_later)
        redis_proxy.stalling = True
        with pytest.raises(RedisTimeoutError):
            await limiter.reserve(name, ONE_AT_A_TIME, ttl=900)
        await limiter._scripts.wait_sent()  # the give-back, timed out too
        assert len(queue) == 1
        redis_proxy.stalling = False
        assert await queue.retry(limiter) == 1 and not queue
        assert await is_free(limiter, name)


@pytest.mark.services
async def test_an_answer_redis_py_gives_as_none_is_a_lost_connection(
    redis_limiter: RedisLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py answers None when the socket itself timed out (ETIMEDOUT) and a read has no timer of its own:
    none of anygate's scripts answers nil, so it is the connection's failure, and the connection is closed."""
    await redis_limiter.reserve(bucket(), [Claim("tokens", 10, 1)], ttl=60)  # the scripts are loaded
    runner = redis_limiter._scripts
    read = AbstractConnection.read_response
    timed_out: list[AbstractConnection] = []

    async def once_none(connection: AbstractConnection, *args: Any, **kwargs: Any) -> Any:
        answer = await read(connection, *args, **kwargs)
        if timed_out:
            return answer
        timed_out.append(connection)
        return None

    monkeypatch.setattr(AbstractConnection, "read_response", once_none)
    with pytest.raises(RedisConnectionError, match="timed out"):
        await redis_limiter.reserve(bucket(), [Claim("inflight", 1, 1)], ttl=60)
    await runner.wait_sent()
    assert not timed_out[0].is_connected and timed_out[0] not in runner._idle
    assert isinstance(await redis_limiter.reserve(bucket(), [Claim("inflight", 1, 1)], ttl=60), Grant)
