"""The SQL limiter: buckets in the database, for several workers that share it and have no Redis.

Each claim is one conditional ``UPDATE ... SET reserved = reserved + x WHERE used + reserved + x <= limit``:
PostgreSQL re-checks the condition after waiting for the row lock, SQLite has one writer at a time, so
concurrent reserves never overrun a limit. All the buckets of a request (its key's, user's and team's,
every window) are reserved in one transaction on one connection (``reserve_all``), and settled in one
(``settle_all``): its counter rows are locked first, in (bucket, counter) order, so two requests sharing
buckets wait for each other and never deadlock, and a request holds one pooled connection at a time.
This backend costs a database transaction per request: choose it only for multi-worker without Redis.
Counters persist in the database; a budget bucket's rows, when first made, start from what the usage
ledger holds for the window (within the same transaction), so switching to this backend mid-period
resets nothing either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import replace
from typing import Any

from sqlalchemy import ColumnElement, bindparam, case, delete, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from anygate.accounting.backend_errors import counters_errors
from anygate.accounting.limiter import Claim, Decisions, Grant, Hold, Rejection, Settling, Tokens
from anygate.accounting.periods import SLOTS, oldest_counted_slot, slot_of
from anygate.accounting.windows import LedgerWindow, rolling_width, window_count
from anygate.store.ledger_tables import limiter_counters as counters
from anygate.store.ledger_tables import limiter_reservations as reservations

DEADLOCK_ATTEMPTS = 3


class _Rejected(Exception):
    def __init__(self, rejection: Rejection) -> None:
        self.rejection = rejection


async def _add(conn: AsyncConnection, changes: Mapping[tuple[str, str], tuple[float, float]]) -> None:
    """Add (used, reserved) to each (bucket, counter) row, in that order, in one batch."""
    rows = [
        {"b": bucket, "c": counter, "u": used, "r": reserved}
        for (bucket, counter), (used, reserved) in sorted(changes.items())
        if used or reserved
    ]
    if rows:
        await conn.execute(_ADD, rows)


_ADD = (
    update(counters)
    .where(counters.c.bucket == bindparam("b"), counters.c.counter == bindparam("c"))
    .values(used=counters.c.used + bindparam("u"), reserved=counters.c.reserved + bindparam("r"))
)


SLOT_ROW_LIFE = 3  # windows a slot row outlives its making: purged only after a reserve has dropped it


def slot_row(bucket: str, slot: int) -> str:
    """The row of one slot of a rolling bucket: ``key:k1:5h:rolling@000005900123`` (names sort as numbers)."""
    return f"{bucket}@{slot:012d}"


def _slot_rows(bucket: str, first: int | None, before: int | None) -> list[ColumnElement[bool]]:
    """A rolling bucket's slot rows from slot ``first`` to before slot ``before`` (None: unbounded)."""
    low = counters.c.bucket >= slot_row(bucket, first) if first is not None else counters.c.bucket > f"{bucket}@"
    high = counters.c.bucket < slot_row(bucket, before) if before is not None else counters.c.bucket < f"{bucket}A"
    return [low, high]


class SqlLimiter:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        # SQLite has one writer at a time, and a transaction here holds the write lock across several
        # awaits: a burst queued on SQLite's busy handler gives up after its timeout ("database is locked",
        # a 503), so this process's transactions queue here instead, in order and without a deadline.
        self._writer: AbstractAsyncContextManager[Any] = (
            nullcontext() if engine.dialect.name == "postgresql" else asyncio.Lock()
        )
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        self._tokens = Tokens()

    async def reserve(
        self,
        bucket: str,
        claims: Sequence[Claim],
        ttl: float,
        window: float | None = None,
        seed_from: LedgerWindow | None = None,
        slot: float | None = None,
    ) -> Grant | Rejection:
        return (await self.reserve_all([Hold(bucket, claims, window, seed_from, slot)], ttl))[-1]

    async def reserve_all(self, holds: Sequence[Hold], ttl: float) -> Decisions:
        for attempt in range(DEADLOCK_ATTEMPTS):
            try:
                return await self._reserve_all(holds, ttl)
            except DBAPIError as exc:
                # Locks are taken in one order, so this is not expected; PostgreSQL would abort one of two.
                if attempt + 1 == DEADLOCK_ATTEMPTS or "deadlock" not in str(exc.orig).lower():
                    raise
        raise AssertionError("unreachable")

    async def _reserve_all(self, holds: Sequence[Hold], ttl: float) -> Decisions:
        now = self._clock()
        decisions: Decisions = []
        try:
            async with self._writer, self._engine.begin() as conn:
                made = await self._ensure_rows(conn, holds, now)
                await self._lock(conn, {hold.bucket for hold in holds})
                await self._reclaim(conn, {hold.bucket for hold in holds}, now)
                for hold in holds:
                    if made.get(hold.bucket) and hold.seed_from is not None:
                        await self._seed(conn, hold, made[hold.bucket], now)
                    elif hold.slot is not None:
                        await self._advance(conn, hold, now)
                rows: list[dict[str, Any]] = []
                for hold in holds:
                    decision = await self._claim_all(conn, hold)
                    decisions.append(decision)
                    if isinstance(decision, Rejection):
                        raise _Rejected(decision)  # rolls back every hold of the request
                    expires = now + ttl
                    rows += [
                        {
                            "token": decision.token,
                            "counter": c,
                            "bucket": hold.bucket,
                            "amount": a,
                            "expires_at": expires,
                        }
                        for c, a in decision.amounts.items()
                    ]
                if rows:
                    await conn.execute(insert(reservations), rows)
        except _Rejected:
            pass
        return decisions

    async def _ensure_rows(self, conn: AsyncConnection, holds: Sequence[Hold], now: float) -> dict[str, list[str]]:
        """Make the buckets' missing counter rows, in (bucket, counter) order; return the counters made now.

        The first statement of the transaction writes, so SQLite takes its one write lock at once."""
        wanted: dict[tuple[str, str], float | None] = {}
        for hold in holds:
            for claim in hold.claims:
                wanted[(hold.bucket, claim.counter)] = None if hold.window is None else now + hold.window
        if not wanted:
            return {}
        values = [
            {
                "bucket": bucket,
                "counter": counter,
                "used": 0.0,
                "reserved": 0.0,
                "expires_at": wanted[(bucket, counter)],
            }
            for bucket, counter in sorted(wanted)
        ]
        statement = (
            self._insert(counters)
            .values(values)
            .on_conflict_do_nothing()
            .returning(counters.c.bucket, counters.c.counter)
        )
        made: dict[str, list[str]] = {}
        for bucket, counter in await conn.execute(statement):
            made.setdefault(bucket, []).append(counter)
        return made

    @staticmethod
    async def _lock(conn: AsyncConnection, buckets: set[str]) -> None:
        """Lock every counter row of the request in one order (PostgreSQL; SQLite has one writer at a
        time): two requests sharing buckets wait for each other, and never deadlock."""
        if conn.dialect.name != "postgresql":
            return
        await conn.execute(
            select(counters.c.bucket)
            .where(counters.c.bucket.in_(sorted(buckets)))
            .order_by(counters.c.bucket, counters.c.counter)
            .with_for_update()
        )

    @staticmethod
    async def _reclaim(conn: AsyncConnection, buckets: set[str], now: float) -> None:
        """Give back the expired reservations of the buckets (whose rows this transaction has locked)."""
        expired = await conn.execute(
            delete(reservations)
            .where(reservations.c.bucket.in_(sorted(buckets)), reservations.c.expires_at <= now)
            .returning(reservations.c.bucket, reservations.c.counter, reservations.c.amount)
        )
        totals: dict[tuple[str, str], float] = {}
        for bucket, counter, amount in expired:
            totals[(bucket, counter)] = totals.get((bucket, counter), 0.0) + amount
        await _add(conn, {name: (0.0, -amount) for name, amount in totals.items()})

    async def _seed(self, conn: AsyncConnection, hold: Hold, made: list[str], now: float) -> None:
        """New rows start from the ledger's count (other transactions wait on the rows until commit); a
        rolling window's slot rows too, in place of any left from before."""
        assert hold.seed_from is not None
        count = await window_count(conn, hold.seed_from)
        for counter in sorted(made):
            if count.used.get(counter):
                await conn.execute(
                    update(counters)
                    .where(counters.c.bucket == hold.bucket, counters.c.counter == counter)
                    .values(used=count.used[counter])
                )
        if hold.slot is None:
            return
        await conn.execute(delete(counters).where(*_slot_rows(hold.bucket, None, None), counters.c.counter.in_(made)))
        expires = None if hold.window is None else now + SLOT_ROW_LIFE * hold.window
        rows = [
            {
                "bucket": slot_row(hold.bucket, n),
                "counter": c,
                "used": counted[c],
                "reserved": 0.0,
                "expires_at": expires,
            }
            for n, counted in sorted(count.slots.items())
            for c in sorted(made)
            if counted.get(c)
        ]
        if rows:
            await conn.execute(insert(counters), rows)

    async def _advance(self, conn: AsyncConnection, hold: Hold, now: float) -> None:
        """A rolling bucket (its rows locked): drop the slots the window no longer counts from its running
        sum, and keep its rows alive while it is used."""
        assert hold.slot is not None
        oldest = oldest_counted_slot(hold.slot, now)
        left = await conn.execute(
            delete(counters)
            .where(*_slot_rows(hold.bucket, None, oldest))
            .returning(counters.c.counter, counters.c.used)
        )
        gone: dict[tuple[str, str], tuple[float, float]] = {}
        for counter, used in left:
            old = gone.get((hold.bucket, counter), (0.0, 0.0))[0]
            gone[(hold.bucket, counter)] = (old - used, 0.0)
        await _add(conn, gone)
        if hold.window is not None:
            await conn.execute(
                update(counters).where(counters.c.bucket == hold.bucket).values(expires_at=now + hold.window)
            )

    async def _claim_all(self, conn: AsyncConnection, hold: Hold) -> Grant | Rejection:
        claimed: dict[str, tuple[float, float]] = {}
        for claim in hold.claims:
            try:
                claimed[claim.counter] = await self._claim(conn, hold.bucket, claim)
            except _Rejected as rejected:  # with what each counter checked before had (rolled back)
                before = {c: left + amount for c, (amount, left) in claimed.items()}
                return replace(rejected.rejection, left=before)
        granted = {counter: amount for counter, (amount, _) in claimed.items()}
        left = {counter: left for counter, (_, left) in claimed.items()}
        return Grant(hold.bucket, self._tokens.next(), granted, left, hold.slot)

    async def _claim(self, conn: AsyncConnection, bucket: str, claim: Claim) -> tuple[float, float]:
        """Reserve one claim: (the amount granted, what the counter has left after it), in one statement."""
        available: ColumnElement[Any] = literal(claim.limit) - counters.c.used - counters.c.reserved
        amount: ColumnElement[Any] = literal(claim.amount)
        condition: ColumnElement[bool] = literal(True)
        if claim.hard and claim.minimum is None:
            condition = available >= claim.amount
        elif claim.hard:
            condition = available >= claim.minimum
            amount = case((available >= claim.amount, literal(claim.amount)), else_=available)
        result = await conn.execute(
            update(counters)
            .where(counters.c.bucket == bucket, counters.c.counter == claim.counter, condition)
            .values(reserved=counters.c.reserved + amount, granted=amount)
            .returning(counters.c.granted, literal(claim.limit) - counters.c.used - counters.c.reserved)
        )
        row = result.one_or_none()
        if row is None:
            left = await conn.scalar(
                select(claim.limit - counters.c.used - counters.c.reserved).where(
                    counters.c.bucket == bucket, counters.c.counter == claim.counter
                )
            )
            raise _Rejected(Rejection(bucket, claim.counter, float(left or 0.0)))
        return float(row[0]), float(row[1])

    async def settle(self, grant: Grant, actual: Mapping[str, float], if_held: bool = False) -> None:
        await self._settle_all([(grant, actual)], if_held)

    async def settle_all(self, settlements: Sequence[Settling]) -> list[Settling]:
        try:
            await self._settle_all(settlements)
        except counters_errors(OSError):
            return list(settlements)
        return []

    async def _settle_all(self, settlements: Sequence[Settling], if_held: bool = False) -> None:
        """One transaction: the counter rows locked in the order reserves lock them, then the reservations
        dropped and the counters moved by what was used and what was held (``if_held``: only the
        settlements whose reservation was still there are charged)."""
        if not settlements:
            return
        async with self._writer, self._engine.begin() as conn:
            await self._lock(conn, {grant.bucket for grant, _ in settlements})
            held = await conn.execute(
                delete(reservations)
                .where(reservations.c.token.in_([grant.token for grant, _ in settlements]))
                .returning(reservations.c.token, reservations.c.bucket, reservations.c.counter, reservations.c.amount)
            )
            changes: dict[tuple[str, str], tuple[float, float]] = {}
            holding = set()
            for token, bucket, counter, amount in held:
                holding.add((token, bucket))
                used, reserved = changes.get((bucket, counter), (0.0, 0.0))
                changes[(bucket, counter)] = (used, reserved - amount)
            if if_held:
                settlements = [(g, a) for g, a in settlements if (g.token, g.bucket) in holding]
            for grant, actual in settlements:
                for counter, amount in actual.items():
                    used, reserved = changes.get((grant.bucket, counter), (0.0, 0.0))
                    changes[(grant.bucket, counter)] = (used + amount, reserved)
            await _add(conn, changes)
            await self._count_in_slots(conn, [(g, a) for g, a in settlements if g.slot is not None and a])

    async def _count_in_slots(self, conn: AsyncConnection, settlements: Sequence[Settling]) -> None:
        """What rolling buckets' requests used, in the slot in progress (their main rows locked)."""
        rows = []
        now = self._clock()
        for grant, actual in settlements:
            assert grant.slot is not None
            name = slot_row(grant.bucket, slot_of(grant.slot, now))
            life = SLOT_ROW_LIFE * (SLOTS + 2) * grant.slot
            rows += [
                {"bucket": name, "counter": c, "used": a, "reserved": 0.0, "expires_at": now + life}
                for c, a in sorted(actual.items())
                if a
            ]
        for row in sorted(rows, key=lambda r: (r["bucket"], r["counter"])):
            statement = self._insert(counters).values(row)
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[counters.c.bucket, counters.c.counter],
                    set_={"used": counters.c.used + statement.excluded.used},
                )
            )

    async def release(self, grant: Grant) -> None:
        await self.settle(grant, {})

    async def usage(self, bucket: str) -> dict[str, float]:
        width = rolling_width(bucket)
        async with self._engine.connect() as conn:
            if width is None:
                query = select(counters.c.counter, counters.c.used).where(counters.c.bucket == bucket)
            else:  # what its slots still counted hold, whether or not a reserve has dropped the others yet
                oldest = oldest_counted_slot(width, self._clock())
                query = (
                    select(counters.c.counter, func.sum(counters.c.used))
                    .where(*_slot_rows(bucket, oldest, None))
                    .group_by(counters.c.counter)
                )
            rows = await conn.execute(query)
            return {counter: float(used) for counter, used in rows}

    async def oldest_slot(self, bucket: str) -> int | None:
        width = rolling_width(bucket)
        if width is None:
            return None
        async with self._engine.connect() as conn:
            first = await conn.scalar(
                select(func.min(counters.c.bucket)).where(
                    *_slot_rows(bucket, oldest_counted_slot(width, self._clock()), None), counters.c.used != 0
                )
            )
        return None if first is None else int(str(first).rsplit("@", 1)[1])

    async def purge_expired(self) -> int:
        """Drop the counters of windows that have ended (run now and then, off the request path)."""
        async with self._writer, self._engine.begin() as conn:
            result = await conn.execute(delete(counters).where(counters.c.expires_at <= time.time()))
            return result.rowcount

    async def close(self) -> None:
        return None
