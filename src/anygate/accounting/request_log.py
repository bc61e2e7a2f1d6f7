"""The request log: the usage ledger's rows one by one, newest first, for ``GET /v1/requests`` and
``anygate requests``.

Pages are cut by keyset on ``(created_at, request_id)``, never by offset: the cursor names the last row a
page showed, and the next page starts below it, so rows written meanwhile (newer ones, or a buffered
batch landing late) neither repeat a row nor skip one. A viewer that is not an admin sees the rows of
its own key and of the keys made from it (``families.in_family``); every filter narrows within that.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from anygate.accounting.reports import UsageFilter
from anygate.store.ledger_tables import usage_ledger as ledger

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
COLUMNS = (
    ledger.c.request_id,
    ledger.c.created_at,
    ledger.c.route,
    ledger.c.key_id,
    ledger.c.user_id,
    ledger.c.provider_id,
    ledger.c.model,
    ledger.c.status,
    ledger.c.input_tokens,
    ledger.c.output_tokens,
    ledger.c.cached_input_tokens,
    ledger.c.cache_write_tokens,
    ledger.c.reasoning_tokens,
    ledger.c.audio_tokens,
    ledger.c.image_tokens,
    ledger.c.estimated,
    ledger.c.cost_usd,
    ledger.c.cost_source,
    ledger.c.latency_ms,
    ledger.c.ttft_ms,
    ledger.c.byok,
    ledger.c.error,
)


class BadCursor(ValueError):
    """A cursor this log did not give out."""


@dataclass(frozen=True, slots=True)
class RequestQuery:
    """Which rows: every filter is exact (``since`` inclusive, ``until`` exclusive, UNIX seconds).
    ``viewer``: None for an admin (every row), else the key id whose family's rows may be seen."""

    viewer: str | None = None
    key_id: str | None = None
    user_id: str | None = None
    provider_id: str | None = None
    model: str | None = None
    status: int | None = None
    since: float | None = None
    until: float | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        where = UsageFilter(
            self.key_id, self.user_id, self.provider_id, self.model, self.since, self.until, family=self.viewer
        )
        found = where.conditions()
        if self.status is not None:
            found.append(ledger.c.status == self.status)
        return found


@dataclass(frozen=True, slots=True)
class Page:
    records: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(created_at: float, request_id: str) -> str:
    """An opaque cursor naming a row (base64url of its keyset; a float's repr survives the round trip)."""
    return base64.urlsafe_b64encode(orjson.dumps([created_at, request_id])).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, request_id = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise BadCursor(cursor) from None
    if isinstance(created_at, bool) or not isinstance(created_at, int | float) or not isinstance(request_id, str):
        raise BadCursor(cursor)
    return float(created_at), request_id


async def list_requests(
    engine: AsyncEngine, query: RequestQuery, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page:
    """One page of the matching rows, newest first; ``next_cursor`` None on the last page."""
    conditions = query.conditions()
    if cursor is not None:
        created_at, request_id = decode_cursor(cursor)
        conditions.append(
            or_(
                ledger.c.created_at < created_at,
                and_(ledger.c.created_at == created_at, ledger.c.request_id < request_id),
            )
        )
    statement = (
        select(*COLUMNS)
        .where(*conditions)
        .order_by(ledger.c.created_at.desc(), ledger.c.request_id.desc())
        .limit(limit + 1)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(statement)).all()
    shown = rows[:limit]
    last = shown[-1] if len(rows) > limit else None
    return Page([record(row) for row in shown], None if last is None else encode_cursor(last[1], last[0]))


async def find_request(engine: AsyncEngine, request_id: str, viewer: str | None = None) -> dict[str, Any] | None:
    """One row as a record; None when there is none the viewer may see."""
    conditions = [ledger.c.request_id == request_id, *RequestQuery(viewer).conditions()]
    async with engine.connect() as conn:
        row = (await conn.execute(select(*COLUMNS).where(*conditions))).first()
    return None if row is None else record(row)


def record(row: Sequence[Any]) -> dict[str, Any]:
    """A ledger row as the request log shows it."""
    (request_id, created_at, route, key_id, user_id, provider_id, model, status, input_tokens, output_tokens,
     cached, written, reasoning, audio, image, estimated, cost, source, latency, ttft, byok, error) = row  # fmt: skip
    return {
        "request_id": request_id,
        "created_at": iso_time(created_at),
        "route": route,
        "key_id": key_id,
        "user_id": user_id,
        "provider": provider_id,
        "model": model,
        "status": status,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cached_input_tokens": cached,
        "cache_write_tokens": written,
        "reasoning_tokens": reasoning,
        "audio_tokens": audio,
        "image_tokens": image,
        "usage_source": "estimated" if estimated else "reported",
        "cost_usd": cost,
        "cost_source": source,
        "latency_ms": latency,
        "ttft_ms": ttft,
        "byok": bool(byok),
        "error": error,
    }


def moment_of(text: str) -> float:
    """UNIX seconds (``1764547200``, ``1764547200.5``) or an ISO 8601 date or time, as UNIX seconds;
    ValueError for anything else."""
    try:
        seconds = float(text)
    except ValueError:
        return iso_seconds(text)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(text)
    return seconds


def iso_seconds(text: str) -> float:
    """An ISO 8601 date (``2026-12-01``) or date and time (RFC 3339; UTC when it names no zone) as UNIX
    seconds; ValueError for anything else."""
    # RFC 3339 allows a lowercase ``t``/``z`` and a leap second (``23:59:60``), which Python's parser does not.
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00").replace(":60", ":59"))
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    except OverflowError:
        raise ValueError(text) from None


def iso_time(unix: float) -> str:
    """UNIX seconds as ISO 8601 in UTC, to the millisecond (``2026-12-03T07:42:45.123Z``)."""
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
