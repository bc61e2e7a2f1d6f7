"""Reading the usage ledger: spend windows for quota answers, and grouped reports for ``/v1/usage``."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncEngine

from anygate.accounting.periods import window_start
from anygate.store.families import in_family
from anygate.store.ledger_tables import usage_ledger as ledger

GroupBy = Literal["day", "key", "model", "provider", "user"]
GROUPS: tuple[GroupBy, ...] = ("day", "key", "model", "provider", "user")
REPORT_FIELDS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "estimated_requests",
    "cost_usd",
    "unpriced_requests",
    "byok_cost_usd",
)


@dataclass(frozen=True, slots=True)
class UsageFilter:
    key_id: str | None = None
    user_id: str | None = None
    provider_id: str | None = None
    model: str | None = None
    start: float | None = None  # UNIX time, inclusive
    end: float | None = None  # exclusive

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        for column, value in (
            (ledger.c.key_id, self.key_id),
            (ledger.c.user_id, self.user_id),
            (ledger.c.provider_id, self.provider_id),
            (ledger.c.model, self.model),
        ):
            if value is not None:
                found.append(column == value)
        if self.start is not None:
            found.append(ledger.c.created_at >= self.start)
        if self.end is not None:
            found.append(ledger.c.created_at < self.end)
        return found


@dataclass(frozen=True, slots=True)
class Spend:
    """USD from the ledger: all time and in the current UTC day, ISO week and calendar month."""

    total: float = 0.0
    daily: float = 0.0
    weekly: float = 0.0
    monthly: float = 0.0


async def spend(engine: AsyncEngine, key_id: str, now: datetime | None = None) -> tuple[Spend, Spend]:
    """(spend, byok spend) of a key and the keys made from it (as its budget counts them): all time, this
    UTC day, ISO week and calendar month."""
    now = now or datetime.now(UTC)
    cost = func.coalesce(ledger.c.cost_usd, 0.0)

    def since(period: Literal["daily", "weekly", "monthly"]) -> Any:
        start = window_start(period, now).timestamp()
        return func.coalesce(func.sum(case((ledger.c.created_at >= start, cost), else_=0.0)), 0.0)

    statement = (
        select(
            ledger.c.byok,
            func.coalesce(func.sum(cost), 0.0),
            since("daily"),
            since("weekly"),
            since("monthly"),
        )
        .where(in_family(ledger.c.key_id, key_id))
        .group_by(ledger.c.byok)
    )
    found = {False: Spend(), True: Spend()}
    async with engine.connect() as conn:
        for byok, total, daily, weekly, monthly in await conn.execute(statement):
            found[bool(byok)] = Spend(float(total), float(daily), float(weekly), float(monthly))
    return found[False], found[True]


def day_of(engine: AsyncEngine) -> ColumnElement[Any]:
    if engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", func.to_timestamp(ledger.c.created_at)), "YYYY-MM-DD")
    return func.date(ledger.c.created_at, literal_column("'unixepoch'"))


async def report(engine: AsyncEngine, where: UsageFilter, group_by: Sequence[GroupBy]) -> list[dict[str, Any]]:
    """Totals of the matching rows, one per group (one in all without grouping)."""
    columns: dict[str, ColumnElement[Any]] = {
        "day": day_of(engine),
        "key": ledger.c.key_id,
        "model": ledger.c.model,
        "provider": ledger.c.provider_id,
        "user": ledger.c.user_id,
    }
    keys = [columns[name].label(name) for name in group_by]
    statement = select(
        *keys,
        func.count().label("requests"),
        func.coalesce(func.sum(ledger.c.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(ledger.c.output_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(case((ledger.c.estimated, 1), else_=0)), 0).label("estimated_requests"),
        func.sum(ledger.c.cost_usd).label("cost_usd"),
        func.coalesce(
            func.sum(
                case(
                    (and_(ledger.c.cost_usd.is_(None), ledger.c.input_tokens + ledger.c.output_tokens > 0), 1), else_=0
                )
            ),
            0,
        ).label("unpriced_requests"),
        func.coalesce(func.sum(case((ledger.c.byok, ledger.c.cost_usd), else_=0.0)), 0.0).label("byok_cost_usd"),
    ).where(*where.conditions())
    if keys:
        statement = statement.group_by(*keys).order_by(*keys)
    async with engine.connect() as conn:
        rows = (await conn.execute(statement)).mappings().all()
    return [{str(k): v for k, v in row.items()} for row in rows if row["requests"]]


async def unpriced_models(engine: AsyncEngine, where: UsageFilter | None = None) -> list[dict[str, Any]]:
    """Models used by the matching rows that have no known price (their cost is recorded as unknown)."""
    conditions = (where or UsageFilter()).conditions()
    statement = (
        select(ledger.c.provider_id, ledger.c.model, func.count().label("requests"))
        .where(ledger.c.cost_usd.is_(None), ledger.c.input_tokens + ledger.c.output_tokens > 0, *conditions)
        .group_by(ledger.c.provider_id, ledger.c.model)
        .order_by(ledger.c.provider_id, ledger.c.model)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(statement)).mappings().all()
    return [{str(k): v for k, v in row.items()} for row in rows]


# A text cell starting with one of these is read as a formula by spreadsheet programs (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def as_csv(rows: Sequence[dict[str, Any]], group_by: Sequence[str]) -> str:
    out = io.StringIO()
    # CRLF (RFC 4180): the writer quotes a field holding any character of its line terminator, so a
    # CR or LF in a client's text stays inside its cell instead of starting a row of its own.
    writer = csv.writer(out, lineterminator="\r\n")
    fields = [*group_by, *REPORT_FIELDS]
    writer.writerow(fields)
    for row in rows:
        writer.writerow([spreadsheet_cell(row.get(name)) for name in fields])
    return out.getvalue()


FREE_MODEL_SUFFIX = ":free"


async def free_model_requests(engine: AsyncEngine, key_id: str, now: datetime | None = None) -> int:
    """Requests a key made this UTC day to free model variants (OpenRouter's ``<model>:free``)."""
    start = window_start("daily", now or datetime.now(UTC)).timestamp()
    statement = select(func.count()).where(
        ledger.c.key_id == key_id, ledger.c.created_at >= start, ledger.c.model.like(f"%{FREE_MODEL_SUFFIX}")
    )
    async with engine.connect() as conn:
        return int((await conn.execute(statement)).scalar_one())


async def spend_by_model(engine: AsyncEngine, where: UsageFilter) -> dict[str, float]:
    """USD spent per model by the matching rows, all time (spend with the caller's own key left out)."""
    paid = func.coalesce(func.sum(case((ledger.c.byok, 0.0), else_=func.coalesce(ledger.c.cost_usd, 0.0))), 0.0)
    statement = (
        select(ledger.c.model, paid)
        .where(ledger.c.model.is_not(None), *where.conditions())
        .group_by(ledger.c.model)
        .order_by(ledger.c.model)
    )
    async with engine.connect() as conn:
        return {str(model): float(amount) for model, amount in await conn.execute(statement)}


async def last_request_at(engine: AsyncEngine, key_id: str) -> float | None:
    """UNIX time of a key's last request in the ledger (None: it made none)."""
    statement = select(func.max(ledger.c.created_at)).where(ledger.c.key_id == key_id)
    async with engine.connect() as conn:
        found = (await conn.execute(statement)).scalar_one()
    return None if found is None else float(found)


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows and never evaluates: text that would start a formula (a model
    name a client chose, say) gets a leading ``'``; numbers stay numbers, ``None`` is empty."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
