"""The SQL limiter: buckets in the database, for several workers that share it and have no Redis.

Each claim is one conditional ``UPDATE ... SET reserved = reserved + x WHERE used + reserved + x <= limit``:
PostgreSQL re-checks the condition after waiting for the row lock, SQLite has one writer at a time, so
concurrent reserves never overrun a limit. A bucket's claims run in one transaction, in counter order.
This backend costs a database round trip per request: choose it only for multi-worker without Redis.
Counters persist in the database; a budget bucket's rows, when first made, start from what the usage
ledger holds for the window (within the same transaction), so switching to this backend mid-period
resets nothing either.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import ColumnElement, case, delete, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from anygate.accounting.limiter import Claim, Grant, Rejection, Tokens
from anygate.accounting.windows import LedgerWindow, window_usage
from anygate.store.ledger_tables import limiter_counters as counters
from anygate.store.ledger_tables import limiter_reservations as reservations

DEADLOCK_ATTEMPTS = 3


class _Rejected(Exception):
    def __init__(self, rejection: Rejection) -> None:
        self.rejection = rejection


class SqlLimiter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        self._tokens = Tokens()

    async def reserve(
        self,
        bucket: str,
        claims: Sequence[Claim],
        ttl: float,
        window: float | None = None,
        seed_from: LedgerWindow | None = None,
    ) -> Grant | Rejection:
        for attempt in range(DEADLOCK_ATTEMPTS):
            try:
                return await self._reserve(bucket, claims, ttl, window, seed_from)
            except DBAPIError as exc:
                # Two reclaims of one bucket's expired reservations may deadlock; PostgreSQL aborts one.
                if attempt + 1 == DEADLOCK_ATTEMPTS or "deadlock" not in str(exc.orig).lower():
                    raise
        raise AssertionError("unreachable")

    async def _reserve(
        self, bucket: str, claims: Sequence[Claim], ttl: float, window: float | None, seed_from: LedgerWindow | None
    ) -> Grant | Rejection:
        now = time.time()
        token = self._tokens.next()
        ordered = sorted(claims, key=lambda c: c.counter)
        try:
            async with self._engine.begin() as conn:
                await self._reclaim(conn, bucket, now)
                made = await self._ensure_rows(conn, bucket, [c.counter for c in ordered], window, now)
                if made and seed_from is not None:
                    await self._seed(conn, bucket, made, seed_from)
                claimed: dict[str, tuple[float, float]] = {}
                for claim in ordered:
                    try:
                        claimed[claim.counter] = await self._claim(conn, bucket, claim)
                    except _Rejected as rejected:  # with what each counter checked before had (rolled back)
                        before = {c: left + amount for c, (amount, left) in claimed.items()}
                        raise _Rejected(replace(rejected.rejection, left=before)) from None
                granted = {counter: amount for counter, (amount, _) in claimed.items()}
                rows = [
                    {"token": token, "counter": c, "bucket": bucket, "amount": a, "expires_at": now + ttl}
                    for c, a in granted.items()
                ]
                if rows:
                    await conn.execute(insert(reservations), rows)
        except _Rejected as rejected:
            return rejected.rejection
        return Grant(bucket, token, granted, {counter: left for counter, (_, left) in claimed.items()})

    async def _reclaim(self, conn: AsyncConnection, bucket: str, now: float) -> None:
        expired = await conn.execute(
            delete(reservations)
            .where(reservations.c.bucket == bucket, reservations.c.expires_at <= now)
            .returning(reservations.c.counter, reservations.c.amount)
        )
        totals: dict[str, float] = {}
        for counter, amount in expired:
            totals[counter] = totals.get(counter, 0.0) + amount
        for counter in sorted(totals):
            await conn.execute(
                update(counters)
                .where(counters.c.bucket == bucket, counters.c.counter == counter)
                .values(reserved=counters.c.reserved - totals[counter])
            )

    async def _ensure_rows(
        self, conn: AsyncConnection, bucket: str, names: list[str], window: float | None, now: float
    ) -> list[str]:
        """Make the bucket's missing counter rows; return the counters made now."""
        expires = None if window is None else now + window
        values = [{"bucket": bucket, "counter": n, "used": 0.0, "reserved": 0.0, "expires_at": expires} for n in names]
        if not values:
            return []
        statement = self._insert(counters).values(values).on_conflict_do_nothing().returning(counters.c.counter)
        return [counter for (counter,) in await conn.execute(statement)]

    @staticmethod
    async def _seed(conn: AsyncConnection, bucket: str, made: list[str], seed_from: LedgerWindow) -> None:
        """New rows start from the ledger's count (other transactions wait on the rows until commit)."""
        used = await window_usage(conn, seed_from)
        for counter in sorted(made):
            if used.get(counter):
                await conn.execute(
                    update(counters)
                    .where(counters.c.bucket == bucket, counters.c.counter == counter)
                    .values(used=used[counter])
                )

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

    async def settle(self, grant: Grant, actual: Mapping[str, float]) -> None:
        async with self._engine.begin() as conn:
            held = await conn.execute(
                delete(reservations)
                .where(reservations.c.token == grant.token)
                .returning(reservations.c.counter, reservations.c.amount)
            )
            changes: dict[str, tuple[float, float]] = {c: (0.0, a) for c, a in held}
            for counter, amount in actual.items():
                changes[counter] = (amount, changes.get(counter, (0.0, 0.0))[1])
            for counter in sorted(changes):
                used, reserved = changes[counter]
                await conn.execute(
                    update(counters)
                    .where(counters.c.bucket == grant.bucket, counters.c.counter == counter)
                    .values(used=counters.c.used + used, reserved=counters.c.reserved - reserved)
                )

    async def release(self, grant: Grant) -> None:
        await self.settle(grant, {})

    async def usage(self, bucket: str) -> dict[str, float]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(counters.c.counter, counters.c.used).where(counters.c.bucket == bucket))
            return {counter: float(used) for counter, used in rows}

    async def purge_expired(self) -> int:
        """Drop the counters of windows that have ended (run now and then, off the request path)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(counters).where(counters.c.expires_at <= time.time()))
            return result.rowcount

    async def close(self) -> None:
        return None
