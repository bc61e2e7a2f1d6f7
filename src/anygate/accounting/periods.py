"""Budget periods and their UTC windows: days, ISO weeks (from Monday) and calendar months.

A budget with period ``daily`` counts usage since the last 00:00 UTC and resets at the next one; ``weekly``
starts on Monday 00:00 UTC; ``monthly`` on the 1st at 00:00 UTC; ``none`` never resets.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

Period = Literal["daily", "weekly", "monthly", "none"]
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly", "none")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def window_start(period: Period, now: datetime) -> datetime:
    """The start of the window holding ``now`` (the epoch for ``none``)."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    return EPOCH


def next_reset(period: Period, now: datetime) -> datetime | None:
    """When the window holding ``now`` ends; ``None`` for a budget that never resets."""
    start = window_start(period, now)
    if period == "daily":
        return start + timedelta(days=1)
    if period == "weekly":
        return start + timedelta(weeks=1)
    if period == "monthly":
        return (
            start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        )
    return None


def window_id(period: Period, now: datetime) -> str:
    """A stable name of the window holding ``now``, used to key counters (``2026-11-21``, ``2026-W47``)."""
    start = window_start(period, now)
    if period == "daily":
        return start.strftime("%Y-%m-%d")
    if period == "weekly":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "monthly":
        return start.strftime("%Y-%m")
    return "all"


def seconds_until_reset(period: Period, now: datetime) -> float | None:
    reset = next_reset(period, now)
    return None if reset is None else (reset - now.astimezone(UTC)).total_seconds()


def iso_utc(moment: datetime | None) -> str | None:
    """``2026-12-01T00:00:00Z``, the form the quota shapes use."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
