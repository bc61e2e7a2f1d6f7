"""Rolling windows of N hours on every limiter backend, with an injected clock: usage counts for N hours
(and at most one slot more), leaves the window slot by slot, is admitted exactly under concurrency, and is
rebuilt from the ledger, slot by slot, when the counters are lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from anygate.accounting.limiter import Claim, Grant, Limiter, MemoryLimiter, Rejection
from anygate.accounting.limiter_redis import RedisLimiter
from anygate.accounting.limiter_sql import SqlLimiter
from anygate.accounting.periods import SLOTS, next_reset, rolling_reset, slot_width, window_start
from anygate.accounting.windows import LedgerWindow, bucket_name, engine_seeder, ledger_window, window_count
from anygate.store.ledger_tables import limiter_counters, metadata, usage_ledger
from tests.accounting.conftest import LIMITER_BACKENDS, REDIS

HOURS = 5
N = HOURS * 3600.0
SLOT = N / SLOTS  # 300 s
T = 1_800_000_123.0  # some moment inside a slot


@dataclass
class Clock:
    now: float = T

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    limiter: Limiter
    clock: Clock
    engine: AsyncEngine
    backend: str

    def window(self, user: str) -> LedgerWindow:
        return ledger_window("user", user, f"{HOURS}h", datetime.fromtimestamp(self.clock.now, UTC))

    async def reserve(
        self, bucket: str, amount: float, limit: float = 100, user: str | None = None
    ) -> Grant | Rejection:
        seed = None if user is None else self.window(user)
        return await self.limiter.reserve(bucket, [Claim("tokens", limit, amount)], 60, SLOT * (SLOTS + 2), seed, SLOT)

    async def use(self, bucket: str, amount: float, user: str | None = None) -> None:
        grant = await self.reserve(bucket, amount, limit=10**9, user=user)
        assert isinstance(grant, Grant)
        await self.limiter.settle(grant, {"tokens": amount})

    async def lose_counters(self, bucket: str) -> Limiter:
        """The counters are gone (a restart, Redis flushed, rows deleted): a limiter that must rebuild them."""
        if isinstance(self.limiter, MemoryLimiter):
            return MemoryLimiter(engine_seeder(self.engine), self.clock)
        if isinstance(self.limiter, RedisLimiter):
            await self.limiter._redis.delete(*self.limiter.keys(bucket))
            return self.limiter
        async with self.engine.begin() as conn:
            await conn.execute(delete(limiter_counters).where(limiter_counters.c.bucket.startswith(bucket)))
        return self.limiter


@pytest.fixture(params=LIMITER_BACKENDS)
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    clock = Clock()
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite+aiosqlite:///{request.getfixturevalue('tmp_path')}/rolling.db?timeout=30"
    engine = create_async_engine(url, pool_size=20, max_overflow=0)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    limiter: Limiter
    if request.param == "memory":
        limiter = MemoryLimiter(engine_seeder(engine), clock)
    elif request.param == "redis":
        limiter = RedisLimiter.from_url(REDIS, request.getfixturevalue("redis_prefix"), engine_seeder(engine), clock)
    else:
        limiter = SqlLimiter(engine, clock)
    yield Rig(limiter, clock, engine, request.param)
    await limiter.close()
    await engine.dispose()


def rolling_bucket(user: str | None = None) -> str:
    return bucket_name("user", user or uuid.uuid4().hex[:8], f"{HOURS}h", datetime.fromtimestamp(T, UTC))


async def test_usage_counts_for_n_hours_and_leaves_within_one_slot_after(rig: Rig) -> None:
    bucket = rolling_bucket()
    await rig.use(bucket, 60)
    rig.clock.now = T + N - 1  # still within the last 5 hours
    assert isinstance(await rig.reserve(bucket, 60), Rejection)
    assert await rig.limiter.usage(bucket) == {"tokens": 60.0}
    rig.clock.now = T + N + SLOT  # 5 hours and a slot later: gone
    assert (await rig.limiter.usage(bucket)).get("tokens", 0.0) == 0.0
    grant = await rig.reserve(bucket, 100)
    assert isinstance(grant, Grant) and grant.left == {"tokens": 0.0}


async def test_the_window_rolls_slot_by_slot_not_all_at_once(rig: Rig) -> None:
    bucket = rolling_bucket()
    for hour in range(HOURS):  # 20 tokens at the start of each of five hours
        rig.clock.now = T + hour * 3600
        await rig.use(bucket, 20)
    rig.clock.now = T + N + SLOT  # the first hour's usage has left, the four others are still counted
    assert await rig.limiter.usage(bucket) == {"tokens": 80.0}
    assert await rig.limiter.oldest_slot(bucket) == int((T + 3600) // SLOT)
    assert isinstance(await rig.reserve(bucket, 21), Rejection)
    assert isinstance(await rig.reserve(bucket, 20), Grant)


async def test_200_concurrent_reserves_on_a_rolling_budget_admit_exactly_50(rig: Rig) -> None:
    bucket = rolling_bucket()
    claims = [Claim("tokens", 5000, 100)]
    decisions = await asyncio.gather(*(rig.limiter.reserve(bucket, claims, 60, N, None, SLOT) for _ in range(200)))
    grants = [d for d in decisions if isinstance(d, Grant)]
    assert len(grants) == 50
    assert await rig.limiter.settle_all([(g, {"tokens": 100}) for g in grants]) == []
    rig.clock.now = T + N - 1
    again = await asyncio.gather(*(rig.limiter.reserve(bucket, claims, 60, N, None, SLOT) for _ in range(20)))
    assert not any(isinstance(d, Grant) for d in again)  # nothing has left yet
    rig.clock.now = T + N + SLOT
    later = await asyncio.gather(*(rig.limiter.reserve(bucket, claims, 60, N, None, SLOT) for _ in range(200)))
    assert sum(isinstance(d, Grant) for d in later) == 50


async def record(engine: AsyncEngine, user: str, at: float, tokens: int) -> None:
    """A request's ledger row, as the accounting writes it when it settles."""
    row = {
        "request_id": uuid.uuid4().hex,
        "created_at": at,
        "key_id": "k",
        "user_id": user,
        "route": "chat/completions",
        "input_tokens": tokens,
        "output_tokens": 0,
        "estimated": False,
        "cost_usd": 0.0,
        "byok": False,
        "status": 200,
        "latency_ms": 1.0,
    }
    async with engine.begin() as conn:
        await conn.execute(insert(usage_ledger), [row])


async def test_counters_rebuilt_from_the_ledger_count_what_the_lost_ones_did(rig: Rig) -> None:
    user = uuid.uuid4().hex[:8]
    bucket = rolling_bucket(user)
    for offset, tokens in ((0, 30), (2 * 3600, 20), (4 * 3600 + 100, 10)):
        rig.clock.now = T + offset
        await rig.use(bucket, tokens, user=user)
        await record(rig.engine, user, rig.clock.now, tokens)
    rig.clock.now = T + N + SLOT  # the first 30 have left
    kept = await rig.limiter.usage(bucket)
    rebuilt = await rig.lose_counters(bucket)
    held = await rebuilt.reserve(bucket, [Claim("tokens", 100, 70)], 60, N, rig.window(user), SLOT)
    assert isinstance(held, Grant) and held.left == {"tokens": 0.0}
    await rebuilt.release(held)
    assert kept["tokens"] == (await rebuilt.usage(bucket))["tokens"] == 30.0
    rig.clock.now = T + 2 * 3600 + N + SLOT  # and the 20 of two hours later, in the rebuilt counters too
    grant = await rebuilt.reserve(bucket, [Claim("tokens", 100, 90)], 60, N, rig.window(user), SLOT)
    assert isinstance(grant, Grant) and grant.left == {"tokens": 0.0}


async def test_the_ledger_counts_a_rolling_window_slot_by_slot(rig: Rig) -> None:
    if rig.backend != "sqlite" and rig.backend != "postgres":
        pytest.skip("the ledger query, once per database")
    user = uuid.uuid4().hex[:8]
    for offset in (0.0, 1.0, SLOT, N + SLOT):
        await record(rig.engine, user, T + offset, 5)
    moment = datetime.fromtimestamp(T + N + SLOT, UTC)
    async with rig.engine.connect() as conn:
        count = await window_count(conn, ledger_window("user", user, f"{HOURS}h", moment))
    first = int(T // SLOT)
    assert count.slots == {
        first + 1: {"tokens": 5.0, "usd": 0.0, "requests": 1.0},
        first + SLOTS + 1: {"tokens": 5.0, "usd": 0.0, "requests": 1.0},
    }
    assert count.used == {"tokens": 10.0, "usd": 0.0, "requests": 2.0}


def test_a_rolling_window_is_counted_in_sixty_slots_and_the_one_in_progress() -> None:
    moment = datetime(2026, 12, 3, 13, 57, 30, tzinfo=UTC)
    assert slot_width("5h") == 300 and slot_width("24h") == 1440 and slot_width("daily") is None
    assert window_start("5h", moment) == datetime(2026, 12, 3, 8, 55, tzinfo=UTC)  # 5 hours and 2.5 minutes
    assert next_reset("5h", moment) == datetime(2026, 12, 3, 14, 0, tzinfo=UTC)  # the next slot boundary
    slot = int(datetime(2026, 12, 3, 9, 1, tzinfo=UTC).timestamp() // 300)  # usage at 09:01 leaves at 14:05
    assert rolling_reset(300, slot) == datetime(2026, 12, 3, 14, 5, tzinfo=UTC).timestamp()
    assert bucket_name("key", "k1", "5h", moment) == "key:k1:5h:rolling"
    assert window_start("daily", moment) == datetime(2026, 12, 3, tzinfo=UTC)  # calendar windows unchanged
