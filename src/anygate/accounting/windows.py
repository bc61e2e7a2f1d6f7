"""Budget windows as the usage ledger counts them: what a key (and the keys made from it), a user or a
team used since its window started.

The ledger is the record that survives: the limiters' counters are rebuilt from it when they are lost.
A rolling window's counter is rebuilt slot by slot (``window_count``), each row in the slot of its
``created_at``, so that its usage leaves the rebuilt counter when it would have left the lost one.

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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Integer, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from anygate.accounting.periods import Period, slot_width, window_id, window_start
from anygate.store.families import in_family
from anygate.store.ledger_tables import usage_ledger as ledger

ScopeKind = Literal["key", "user", "team"]


@dataclass(frozen=True, slots=True)
class LedgerWindow:
    """The ledger rows one budget bucket counts: one key family's or one user's, since ``start`` (UNIX time);
    ``slot``: a rolling window's slot width (seconds), its rows counted slot by slot."""

    kind: ScopeKind
    id: str
    start: float
    slot: float | None = None


@dataclass(frozen=True, slots=True)
class WindowCount:
    """What a window holds: ``used`` of each counter; for a rolling window, also ``slots``: slot number ->
    the counters used in it (together ``used``)."""

    used: dict[str, float]
    slots: dict[int, dict[str, float]] = field(default_factory=dict)


Seeder = Callable[[LedgerWindow], Awaitable[WindowCount]]


def bucket_name(kind: ScopeKind, scope_id: str, period: Period, now: datetime) -> str:
    """``key:k1:daily:2026-11-21``: a budget window's counters, named the same in every limiter."""
    return f"{kind}:{scope_id}:{period}:{window_id(period, now)}"


def rolling_width(bucket: str) -> float | None:
    """The slot width of a rolling window's bucket (named by ``bucket_name``); None for any other."""
    if not bucket.endswith(":rolling"):
        return None
    return slot_width(bucket.rsplit(":", 2)[1])


def ledger_window(kind: ScopeKind, scope_id: str, period: Period, now: datetime) -> LedgerWindow:
    return LedgerWindow(kind, scope_id, window_start(period, now).timestamp(), slot_width(period))


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


def _slot(width: float, dialect: str) -> ColumnElement[Any]:
    """The slot of a row's ``created_at`` (non-negative: a cast truncates, as floor does)."""
    if dialect == "postgresql":
        return func.floor(ledger.c.created_at / width)
    return cast(ledger.c.created_at / width, Integer)


async def window_count(connection: AsyncConnection, window: LedgerWindow) -> WindowCount:
    """``window_usage``, and for a rolling window each slot's (a counter rebuilt from the ledger)."""
    if window.slot is None:
        return WindowCount(await window_usage(connection, window))
    slot = _slot(window.slot, connection.dialect.name).label("slot")
    statement = (
        select(slot, _tokens(), _usd(), _answered())
        .where(_owner(window), ledger.c.created_at >= window.start)
        .group_by(slot)
    )
    slots: dict[int, dict[str, float]] = {}
    used = {"tokens": 0.0, "usd": 0.0, "requests": 0.0}
    for number, tokens, usd, requests in await connection.execute(statement):
        counted = {"tokens": float(tokens), "usd": float(usd), "requests": float(requests)}
        slots[int(number)] = counted
        for counter, amount in counted.items():
            used[counter] += amount
    return WindowCount(used, slots)


def engine_seeder(engine: AsyncEngine) -> Seeder:
    """A Seeder reading the ledger through its own connection (the Redis limiter's)."""

    async def seed(window: LedgerWindow) -> WindowCount:
        async with engine.connect() as connection:
            return await window_count(connection, window)

    return seed
