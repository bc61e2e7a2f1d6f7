"""Reading the usage ledger: spend windows for quota answers, and grouped reports for ``/v1/usage``."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, case, func, literal_column, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from anygate.accounting.periods import window_start
from anygate.store.families import in_family
from anygate.store.ledger_tables import usage_ledger as ledger
from anygate.store.tables import api_keys, teams, users

GroupBy = Literal["hour", "day", "month", "key", "model", "provider", "user", "team"]
GROUPS: tuple[GroupBy, ...] = ("hour", "day", "month", "key", "model", "provider", "user", "team")
# Time buckets (UTC) as sortable text: 2026-12-03T14:00, 2026-12-03, 2026-12.
BUCKET_FORMATS = {
    "hour": ("%Y-%m-%dT%H:00", 'YYYY-MM-DD"T"HH24:00'),
    "day": ("%Y-%m-%d", "YYYY-MM-DD"),
    "month": ("%Y-%m", "YYYY-MM"),
}
# Parts of input_tokens and output_tokens that have prices of their own (docs/budgets-and-quotas.md).
TOKEN_CLASSES = ("cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "audio_tokens", "image_tokens")
REPORT_FIELDS = (
    "requests",
    "served",
    "refused",
    "refused_statuses",
    "input_tokens",
    "output_tokens",
    *TOKEN_CLASSES,
    "estimated_requests",
    "upstream_cost_requests",
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
    family: str | None = None  # only this key and the keys made from it (what a key holder may see)

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.family is not None:
            found.append(in_family(ledger.c.key_id, self.family))
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


def bucket_of(engine: AsyncEngine, bucket: str) -> ColumnElement[Any]:
    """The UTC hour, day or month of each row as text (``BUCKET_FORMATS``), in the database's own terms."""
    sqlite_format, postgres_format = BUCKET_FORMATS[bucket]
    if engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", func.to_timestamp(ledger.c.created_at)), postgres_format)
    return func.strftime(sqlite_format, ledger.c.created_at, literal_column("'unixepoch'"))


# A refused request: answered with an error and charged nothing (a budget, limit or permission refusal, an
# unknown model, an upstream that failed before answering). A stream cut short after it began (the client
# left, 499, or the upstream broke off) was served in part, and charged for it: it counts as served.
REFUSED = and_(ledger.c.status >= 400, ledger.c.status != 499, ledger.c.input_tokens + ledger.c.output_tokens == 0)
# Where each group's display name comes from: a key's alias, a user's name.
NAMES = {
    "key": ("key_alias", api_keys.c.id, api_keys.c.alias),
    "user": ("user_name", users.c.id, users.c.name),
    "team": ("team_name", teams.c.id, teams.c.name),
}


async def report(engine: AsyncEngine, where: UsageFilter, group_by: Sequence[GroupBy]) -> list[dict[str, Any]]:
    """Totals of the matching rows, one per group (one in all without grouping): ``requests`` of which
    ``served`` and ``refused`` (with ``refused_statuses``: status -> count), tokens (and the classes inside
    them, ``TOKEN_CLASSES``), ``upstream_cost_requests`` (costs the upstream reported), and ``cost_usd`` (None
    when no row's price is known; ``unpriced_requests`` counts those whose price is not). A key group has its
    ``key_alias`` beside, a user group its ``user_name``."""
    columns = group_columns(engine)
    keys = [columns[name].label(name) for name in group_by]
    statement = select(
        *keys,
        func.count().label("requests"),
        func.coalesce(func.sum(case((REFUSED, 0), else_=1)), 0).label("served"),
        func.coalesce(func.sum(case((REFUSED, 1), else_=0)), 0).label("refused"),
        func.coalesce(func.sum(ledger.c.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(ledger.c.output_tokens), 0).label("output_tokens"),
        *(func.coalesce(func.sum(ledger.c[name]), 0).label(name) for name in TOKEN_CLASSES),
        func.coalesce(func.sum(case((ledger.c.estimated, 1), else_=0)), 0).label("estimated_requests"),
        func.sum(ledger.c.cost_usd).label("cost_usd"),
        func.coalesce(func.sum(case((ledger.c.cost_source == "upstream", 1), else_=0)), 0).label(
            "upstream_cost_requests"
        ),
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
        rows = [dict(row) for row in (await conn.execute(statement)).mappings().all() if row["requests"]]
    statuses = await refused_statuses(engine, where, group_by)
    for row in rows:
        row["refused_statuses"] = statuses.get(tuple(row[name] for name in group_by), {})
    await add_names(engine, rows, group_by)
    return [{str(k): v for k, v in row.items()} for row in rows]


def group_columns(engine: AsyncEngine) -> dict[str, ColumnElement[Any]]:
    return {
        **{bucket: bucket_of(engine, bucket) for bucket in BUCKET_FORMATS},
        "key": ledger.c.key_id,
        "model": ledger.c.model,
        "provider": ledger.c.provider_id,
        "user": ledger.c.user_id,
        "team": ledger.c.team_id,  # the team of the key's user when the request was made
    }


async def refused_statuses(
    engine: AsyncEngine, where: UsageFilter, group_by: Sequence[GroupBy]
) -> dict[tuple[Any, ...], dict[str, int]]:
    """Per group: how many requests were refused with each status (``{"429": 3, "403": 1}``)."""
    columns = group_columns(engine)
    keys = [columns[name].label(name) for name in group_by]
    statement = (
        select(*keys, ledger.c.status, func.count().label("count"))
        .where(REFUSED, *where.conditions())
        .group_by(*keys, ledger.c.status)
        .order_by(*keys, ledger.c.status)
    )
    found: dict[tuple[Any, ...], dict[str, int]] = {}
    async with engine.connect() as conn:
        for row in (await conn.execute(statement)).mappings().all():
            group = tuple(row[name] for name in group_by)
            found.setdefault(group, {})[str(row["status"])] = int(row["count"])
    return found


async def add_names(engine: AsyncEngine, rows: list[dict[str, Any]], group_by: Sequence[GroupBy]) -> None:
    """Put each key's alias (``key_alias``), user's name (``user_name``) and team's name (``team_name``) beside its
    id; None for one the store no longer has (a deleted user)."""
    for group in group_by:
        if group not in NAMES:
            continue
        field, id_column, name_column = NAMES[group]
        ids = {row[group] for row in rows if row[group] is not None}
        names: dict[Any, Any] = {}
        if ids:
            try:
                async with engine.connect() as conn:
                    found = await conn.execute(select(id_column, name_column).where(id_column.in_(ids)))
                    names = {row[0]: row[1] for row in found}
            except SQLAlchemyError:
                names = {}  # a ledger without the store's tables beside it: ids it is
        for row in rows:
            row[field] = names.get(row[group])


def report_fields(group_by: Sequence[str]) -> list[str]:
    """The columns of a report: each group (with its display name beside), then the totals."""
    fields: list[str] = []
    for group in group_by:
        fields.append(group)
        if group in NAMES:
            fields.append(NAMES[group][0])
    return [*fields, *REPORT_FIELDS]


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
    fields = report_fields(group_by)
    writer.writerow(fields)
    for row in rows:
        writer.writerow([spreadsheet_cell(csv_value(row.get(name))) for name in fields])
    return out.getvalue()


def csv_value(value: Any) -> Any:
    """A cell's value: refused statuses as ``429:3 403:1``."""
    if isinstance(value, dict):
        return " ".join(f"{status}:{count}" for status, count in value.items())
    return value


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
