"""Upstream quota polls claimed through the store's database, so that every worker and replica together
poll a provider at most once per interval, and share what it answered.

A claim is one conditional write: ``UPDATE ... SET claimed_at = now WHERE claimed_at <= now - interval``
(or the row's first ``INSERT``); the database lets one writer win. The winner polls and stores the
result; the others read it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from anygate.store.ledger_tables import quota_polls as polls


class QuotaPolls:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert

    async def claim(self, provider_id: str, now: float, interval: float) -> bool:
        """Whether this process polls the provider now (nobody did in the last ``interval`` seconds)."""
        async with self._engine.begin() as conn:
            taken = await conn.execute(
                update(polls)
                .where(polls.c.provider_id == provider_id, polls.c.claimed_at <= now - interval)
                .values(claimed_at=now)
            )
            if taken.rowcount == 1:
                return True
            first = await conn.execute(
                self._insert(polls).values(provider_id=provider_id, claimed_at=now).on_conflict_do_nothing()
            )
            return bool(first.rowcount == 1)

    async def store(self, provider_id: str, result: dict[str, Any], checked_at: float) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(polls).where(polls.c.provider_id == provider_id).values(result=result, checked_at=checked_at)
            )

    async def read(self, provider_id: str) -> tuple[float, float | None, dict[str, Any] | None] | None:
        """(claimed_at, checked_at, result) of the provider's last poll; None when never claimed."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(polls.c.claimed_at, polls.c.checked_at, polls.c.result).where(
                        polls.c.provider_id == provider_id
                    )
                )
            ).first()
        return None if row is None else (row[0], row[1], row[2])
