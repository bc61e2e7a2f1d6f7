"""Budget periods (windows) and their UTC bounds: days, ISO weeks (from Monday), calendar months, and
windows of N hours.

A budget with period ``daily`` counts usage since the last 00:00 UTC and resets at the next one; ``weekly``
starts on Monday 00:00 UTC; ``monthly`` on the 1st at 00:00 UTC; ``none`` never resets. ``<N>h`` (``5h``,
``24h``, 1 to 8784) is a window of N hours counted from 1970-01-01 00:00 UTC: consecutive, fixed windows
(``5h``: 00:00-05:00, 05:00-10:00... of the epoch's clock), so that every replica and every restart agree
on where one ends without remembering when it began; an N that divides 24 starts a window at midnight.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

# A calendar period, ``none``, or ``<N>h`` (checked by ``is_period``): kept a str so stored windows load.
Period = str
CalendarPeriod = Literal["daily", "weekly", "monthly", "none"]
PERIODS: tuple[CalendarPeriod, ...] = ("daily", "weekly", "monthly", "none")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_HOURS = 8784  # a leap year: a longer window is better said as ``none`` or a calendar period
_HOURS = re.compile(r"([1-9][0-9]{0,3})h")


def hours_of(period: str) -> int | None:
    """N for a ``<N>h`` window, else None."""
    match = _HOURS.fullmatch(period)
    if match is None:
        return None
    hours = int(match.group(1))
    return hours if hours <= MAX_HOURS else None


def is_period(value: object) -> bool:
    return isinstance(value, str) and (value in PERIODS or hours_of(value) is not None)


def window_start(period: Period, now: datetime) -> datetime:
    """The start of the window holding ``now`` (the epoch for ``none``)."""
    now = now.astimezone(UTC)
    hours = hours_of(period)
    if hours is not None:
        span = hours * 3600
        return EPOCH + timedelta(seconds=(int((now - EPOCH).total_seconds()) // span) * span)
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
    hours = hours_of(period)
    if hours is not None:
        return start + timedelta(hours=hours)
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
    if hours_of(period) is not None:
        return start.strftime("%Y-%m-%dT%H")
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
