"""Reserve-then-settle counters, the one interface of every limiter backend.

A *bucket* is one budget window (``key:k1:daily:2026-11-21``) holding counters (``tokens``, ``usd``,
``requests``, ``concurrency``). ``reserve`` admits a set of claims on one bucket atomically, all or none:
a hard claim is admitted while ``used + reserved + amount <= limit``, or clamped down to what is left when
at least its ``minimum`` is left; a soft claim is always admitted. ``settle`` replaces a reservation by
what was actually used; ``release`` drops it. A reservation never settled (its request crashed) expires
after its ``ttl`` and is reclaimed by the next ``reserve`` on the bucket. A budget bucket's counters
start from what the usage ledger holds for its window (``seed_from``; see ``windows``), so a restart
resets no budget and a budget given to a key mid-period counts what the key used before it.

    backend            where                   atomic by
    MemoryLimiter      one process             the event loop (no await inside a decision)
    SqlLimiter         workers sharing a DB    conditional UPDATE ... WHERE used + reserved + x <= limit
    RedisLimiter       replicas sharing Redis  one Lua script reserves a request (all or none), one a bucket settles
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from anygate.accounting.periods import SLOTS, oldest_counted_slot, slot_of

if TYPE_CHECKING:
    from anygate.accounting.windows import LedgerWindow, Seeder, WindowCount


@dataclass(slots=True)  # not frozen: made per request (docs/architecture.md, Hot path)
class Claim:
    """What a request asks of one counter: ``amount`` is admitted when that much is left (always, when
    soft), else what is left when at least ``minimum`` is, else the request is refused."""

    counter: str
    limit: float
    amount: float
    minimum: float | None = None  # None: all or nothing; else the least amount worth admitting
    hard: bool = True


@dataclass(slots=True)  # not frozen: made per request (docs/architecture.md, Hot path)
class Grant:
    """An admitted reservation on one bucket. ``left``: what each counter had left once this reservation was
    made (``limit - used - reserved``, as the limiter's decision saw it; negative past a soft limit), so that
    a caller can be told its headroom without asking the limiter again."""

    bucket: str
    token: str
    amounts: Mapping[str, float]
    left: Mapping[str, float] = field(default_factory=dict)
    slot: float | None = None  # a rolling window's slot width: what is used is counted in the slot of its settling


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused reservation: the claim on ``counter`` did not fit in what it had ``available``. ``left``: what
    each counter checked before it had (nothing of this request was reserved on any)."""

    bucket: str
    counter: str
    available: float
    left: Mapping[str, float] = field(default_factory=dict)


@dataclass(slots=True)  # not frozen: made per request (docs/architecture.md, Hot path)
class Hold:
    """One bucket's claims within a request's reservation (``reserve_all``): ``window`` and ``seed_from``
    as for ``Limiter.reserve``."""

    bucket: str
    claims: Sequence[Claim]
    window: float | None = None
    seed_from: LedgerWindow | None = None
    slot: float | None = None


# What ``reserve_all`` decided: a Grant for each hold, in order; or the grants of the holds before the one
# refused and its Rejection, last, when nothing of the request is held any more.
Decisions = list[Grant | Rejection]
Settling = tuple[Grant, Mapping[str, float]]  # a grant and what its request used
NOTHING_USED: Mapping[str, float] = MappingProxyType({})  # a release: the reservation dropped, nothing charged


class Limiter(Protocol):
    async def reserve(
        self,
        bucket: str,
        claims: Sequence[Claim],
        ttl: float,
        window: float | None = None,
        seed_from: LedgerWindow | None = None,
        slot: float | None = None,
    ) -> Grant | Rejection:
        """Admit every claim or none. ``window``: seconds the bucket lives (None: forever); a rolling bucket's
        lives on while it is used.

        ``seed_from``: the ledger rows a new budget bucket starts from (None: it starts from zero).
        ``slot``: the slot width of a rolling window (``periods``): what is used leaves the bucket once its
        slot is older than the ``SLOTS`` before the one in progress.
        """

    async def reserve_all(self, holds: Sequence[Hold], ttl: float) -> Decisions:
        """Admit a whole request, every hold or none (``Decisions``)."""

    async def settle(self, grant: Grant, actual: Mapping[str, float], if_held: bool = False) -> None:
        """Replace the reservation by what was used (a reclaimed reservation is still charged).

        ``if_held``: charge only if the reservation is still held. A retry says so while the reservation
        cannot have expired yet: it is gone only if an earlier attempt settled it (its answer lost on the
        way back) or its bucket was rebuilt from the ledger, which counts the request already.
        """

    async def settle_all(self, settlements: Sequence[Settling]) -> list[Settling]:
        """Settle a whole request's grants; return those its backend could not settle now."""

    async def release(self, grant: Grant) -> None:
        """Drop the reservation; nothing is charged."""

    async def usage(self, bucket: str) -> dict[str, float]:
        """``used`` of each counter, for quota answers."""

    async def oldest_slot(self, bucket: str) -> int | None:
        """A rolling bucket's oldest slot holding usage (its usage leaves it first); None: none."""

    async def close(self) -> None: ...


async def reserve_in_turn(limiter: Limiter, holds: Sequence[Hold], ttl: float) -> Decisions:
    """``reserve_all`` one bucket after the other: a refusal releases what the holds before it got."""
    decisions: Decisions = []
    for hold in holds:
        decision = await limiter.reserve(hold.bucket, hold.claims, ttl, hold.window, hold.seed_from, hold.slot)
        decisions.append(decision)
        if isinstance(decision, Rejection):
            for grant in decisions[:-1]:
                assert isinstance(grant, Grant)
                await limiter.release(grant)
            break
    return decisions


class Tokens:
    """Reservation tokens, unique across the processes sharing a database or Redis: a random prefix per
    limiter and a counter (32 hex characters, like a uuid4's, for a fraction of its cost)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


class SharedRuns:
    """One run per name at a time: whoever asks while a run is under way waits for that run (requests
    arriving together on a bucket not yet seeded share one ledger read)."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[None]] = {}

    async def run(self, name: str, start: Callable[[], Coroutine[Any, Any, None]]) -> None:
        running = self._running.get(name)
        if running is None:
            running = self._running[name] = asyncio.ensure_future(start())
            running.add_done_callback(lambda _: self._running.pop(name, None))
        await asyncio.shield(running)


# ------------------------------------------------------------------------------------------ memory


@dataclass(slots=True)
class _Bucket:
    used: dict[str, float] = field(default_factory=dict)
    reserved: dict[str, float] = field(default_factory=dict)
    reservations: dict[str, tuple[float, dict[str, float]]] = field(default_factory=dict)
    expires_at: float | None = None
    next_expiry: float = float("inf")  # the earliest expiry of an open reservation: nothing to reclaim before
    # A rolling window's: ``used`` is the running sum of ``slots`` (slot number -> counters used in it);
    # slots older than ``current - SLOTS`` leave it when the slot in progress changes.
    slots: dict[int, dict[str, float]] | None = None
    width: float = 0.0
    current: int = 0


class MemoryLimiter:
    """One process: every decision runs without an await, so the event loop makes it atomic.

    A budget bucket this process has not counted yet (after a start, in a new window, or for a budget
    just given to a key that has been used this period) starts from the ledger's count of its window,
    read once through ``seeder`` by ``reserve``; ``reserve_now`` decides without it once ``needs_seed`` is
    false.
    """

    def __init__(self, seeder: Seeder | None = None, clock: Callable[[], float] = time.time) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._seeds: dict[str, WindowCount] = {}
        self._seeder = seeder
        self._seeding = SharedRuns()
        self._now = time.monotonic  # reservations' expiry
        self._clock = clock  # the slots of rolling windows: UNIX time, as the ledger's
        self._tokens = Tokens()

    def needs_seed(self, bucket: str, seed_from: LedgerWindow | None) -> bool:
        return (
            seed_from is not None
            and self._seeder is not None
            and bucket not in self._buckets
            and bucket not in self._seeds
        )

    async def _read_seed(self, bucket: str, seed_from: LedgerWindow) -> None:
        assert self._seeder is not None
        used = await self._seeder(seed_from)
        if bucket not in self._buckets:
            self._seeds[bucket] = used

    async def reserve(
        self,
        bucket: str,
        claims: Sequence[Claim],
        ttl: float,
        window: float | None = None,
        seed_from: LedgerWindow | None = None,
        slot: float | None = None,
    ) -> Grant | Rejection:
        if seed_from is not None and self.needs_seed(bucket, seed_from):
            await self._seeding.run(bucket, lambda: self._read_seed(bucket, seed_from))
        return self.reserve_now(bucket, claims, ttl, window, slot)

    def reserve_now(
        self,
        bucket: str,
        claims: Sequence[Claim],
        ttl: float,
        window: float | None = None,
        slot: float | None = None,
    ) -> Grant | Rejection:
        """``reserve`` without a coroutine, once the bucket is seeded: the enforcer calls it directly.

        Written for the hot path (one call per bucket of every limited request): the bucket is looked up
        once, reclaiming is skipped until a reservation may have expired."""
        now = self._now()
        state = self._buckets.get(bucket)
        if state is None or (state.expires_at is not None and state.expires_at <= now):
            state = self._new_bucket(bucket, now, window, slot)
        elif state.slots is not None:
            self._advance(state)
        if now >= state.next_expiry:
            self._reclaim(state, now)
        used, reserved = state.used, state.reserved
        granted: dict[str, float] = {}
        left: dict[str, float] = {}
        for claim in claims:
            counter, amount = claim.counter, claim.amount
            available = claim.limit - used.get(counter, 0.0) - reserved.get(counter, 0.0)
            if claim.hard and amount > available:
                if claim.minimum is None or claim.minimum > available:
                    return Rejection(bucket, counter, available, {c: left[c] + granted[c] for c in granted})
                amount = available  # clamped down to what is left
            granted[counter] = amount
            left[counter] = available - amount
        for counter, amount in granted.items():
            reserved[counter] = reserved.get(counter, 0.0) + amount
        token = self._tokens.next()
        expires = now + ttl
        state.reservations[token] = (expires, granted)
        if expires < state.next_expiry:
            state.next_expiry = expires
        return Grant(bucket, token, granted, left, slot)

    def _new_bucket(self, bucket: str, now: float, window: float | None, slot: float | None) -> _Bucket:
        """A bucket not counted yet here (or expired): from its seed, if the ledger gave one."""
        if len(self._buckets) > 100_000:
            self._purge(now)
        seed = self._seeds.pop(bucket, None)
        used = {} if seed is None else dict(seed.used)
        if slot is None:
            state = _Bucket(used, expires_at=None if window is None else now + window)
        else:  # lives on: its usage leaves it slot by slot
            slots = {} if seed is None else {n: dict(counted) for n, counted in seed.slots.items()}
            state = _Bucket(used, slots=slots, width=slot, current=oldest_counted_slot(slot, 0.0))
            self._advance(state)
        self._buckets[bucket] = state
        return state

    def _advance(self, state: _Bucket) -> None:
        """Drop the slots the window no longer counts from its running sum: once a slot, not per request."""
        current = slot_of(state.width, self._clock())
        if current == state.current or state.slots is None:
            return
        state.current = current
        oldest = current - SLOTS
        for number in [n for n in state.slots if n < oldest]:
            for counter, amount in state.slots.pop(number).items():
                state.used[counter] = state.used.get(counter, 0.0) - amount

    def _purge(self, now: float) -> None:
        for name in [n for n, b in self._buckets.items() if b.expires_at is not None and b.expires_at <= now]:
            del self._buckets[name]

    @staticmethod
    def _reclaim(state: _Bucket, now: float) -> None:
        """Drop expired reservations (called once one may have expired, not on every reserve)."""
        for token in [t for t, (expires, _) in state.reservations.items() if expires <= now]:
            _, amounts = state.reservations.pop(token)
            for counter, amount in amounts.items():
                state.reserved[counter] -= amount
        state.next_expiry = min((expires for expires, _ in state.reservations.values()), default=float("inf"))

    async def reserve_all(self, holds: Sequence[Hold], ttl: float) -> Decisions:
        return await reserve_in_turn(self, holds, ttl)

    async def settle(self, grant: Grant, actual: Mapping[str, float], if_held: bool = False) -> None:
        if if_held and not self._holds(grant):
            return
        self.settle_now(grant, actual)

    def _holds(self, grant: Grant) -> bool:
        state = self._buckets.get(grant.bucket)
        return state is not None and grant.token in state.reservations

    async def settle_all(self, settlements: Sequence[Settling]) -> list[Settling]:
        for grant, actual in settlements:
            self.settle_now(grant, actual)
        return []

    def settle_now(self, grant: Grant, actual: Mapping[str, float]) -> None:
        state = self._buckets.get(grant.bucket)
        if state is None:
            return
        held = state.reservations.pop(grant.token, None)
        if held is not None:
            for counter, amount in held[1].items():
                state.reserved[counter] -= amount
        for counter, amount in actual.items():
            state.used[counter] = state.used.get(counter, 0.0) + amount
        if state.slots is not None and actual:
            counted = state.slots.setdefault(slot_of(state.width, self._clock()), {})
            for counter, amount in actual.items():
                counted[counter] = counted.get(counter, 0.0) + amount

    async def release(self, grant: Grant) -> None:
        self.settle_now(grant, {})

    async def usage(self, bucket: str) -> dict[str, float]:
        state = self._buckets.get(bucket)
        if state is None:
            seed = self._seeds.get(bucket)
            return {} if seed is None else dict(seed.used)
        if state.expires_at is not None and state.expires_at <= self._now():
            return {}
        if state.slots is not None:
            self._advance(state)
        return dict(state.used)

    async def oldest_slot(self, bucket: str) -> int | None:
        """The oldest slot of a rolling bucket that holds usage (None: none, or not rolling)."""
        state = self._buckets.get(bucket)
        if state is None or state.slots is None:
            return None
        self._advance(state)
        return min((n for n, counted in state.slots.items() if any(counted.values())), default=None)

    async def close(self) -> None:
        self._buckets.clear()
        self._seeds.clear()
