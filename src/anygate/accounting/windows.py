"""Budget windows as the usage ledger counts them: what a key (and the keys made from it), a user or a
team used since its window started.

The ledger is the record that survives: the limiters' counters are rebuilt from it when they are lost.

    one process (memory)   a budget counter the process has not counted yet is read from the ledger
                           (its buffer written first) before the first reservation on it
    Redis                  a budget counter that is absent (Redis restarted, or a new window) is read
                           from the ledger (this process's buffer written first) and set only if still
                           absent, in one Lua script
    the database (SQL)     a budget counter row is made with what the ledger holds, in its transaction

Every request's row is recorded before its reservations are settled, so a counter rebuilt while a
settlement waits to be retried (``unsettled``) already holds that request's usage.

A window's tokens are input + output of every request; its USD leave out requests paid with the caller's
own key (BYOK), as settling does; its requests are the requests that used tokens (were answered), as
settling charges them. A team's window counts the rows made while the key's user was in the team
(``usage_ledger.team_id``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from anygate.accounting.periods import Period, window_id, window_start
from anygate.store.families import in_family
from anygate.store.ledger_tables import usage_ledger as ledger

ScopeKind = Literal["key", "user", "team"]


@dataclass(frozen=True, slots=True)
class LedgerWindow:
    """The ledger rows one budget bucket counts: one key family's or one user's, since ``start`` (UNIX time)."""

    kind: ScopeKind
    id: str
    start: float


Seeder = Callable[[LedgerWindow], Awaitable[dict[str, float]]]


def bucket_name(kind: ScopeKind, scope_id: str, period: Period, now: datetime) -> str:
    """``key:k1:daily:2026-11-21``: a budget window's counters, named the same in every limiter."""
    return f"{kind}:{scope_id}:{period}:{window_id(period, now)}"


def ledger_window(kind: ScopeKind, scope_id: str, period: Period, now: datetime) -> LedgerWindow:
    return LedgerWindow(kind, scope_id, window_start(period, now).timestamp())


def _tokens(since: float | None = None) -> ColumnElement[Any]:
    tokens = ledger.c.input_tokens + ledger.c.output_tokens
    counted = tokens if since is None else case((ledger.c.created_at >= since, tokens), else_=0)
    return func.coalesce(func.sum(counted), 0)


def _usd(since: float | None = None) -> ColumnElement[Any]:
    paid = case((ledger.c.byok, 0.0), else_=func.coalesce(ledger.c.cost_usd, 0.0))
    counted = paid if since is None else case((ledger.c.created_at >= since, paid), else_=0.0)
    return func.coalesce(func.sum(counted), 0.0)


def _answered() -> ColumnElement[Any]:
    answered = case((ledger.c.input_tokens + ledger.c.output_tokens > 0, 1), else_=0)
    return func.coalesce(func.sum(answered), 0)


def _owner(window: LedgerWindow) -> ColumnElement[Any]:
    if window.kind == "key":
        return in_family(ledger.c.key_id, window.id)  # type: ignore[no-any-return]
    column = ledger.c.user_id if window.kind == "user" else ledger.c.team_id
    return column == window.id


async def window_usage(connection: AsyncConnection, window: LedgerWindow) -> dict[str, float]:
    """``{"tokens": ..., "usd": ..., "requests": ...}`` the ledger holds for one window.

    A key's window counts its family: the key and every key made from it (``store.families``), whose
    requests are reserved on the key's counters too; a user's, every request of its keys; a team's, every
    request made under it.
    """
    statement = select(_tokens(), _usd(), _answered()).where(_owner(window), ledger.c.created_at >= window.start)
    tokens, usd, requests = (await connection.execute(statement)).one()
    return {"tokens": float(tokens), "usd": float(usd), "requests": float(requests)}


def engine_seeder(engine: AsyncEngine) -> Seeder:
    """A Seeder reading the ledger through its own connection (the Redis limiter's)."""

    async def seed(window: LedgerWindow) -> dict[str, float]:
        async with engine.connect() as connection:
            return await window_usage(connection, window)

    return seed
