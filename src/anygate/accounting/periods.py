"""Budget periods (windows) and their UTC bounds: days, ISO weeks (from Monday), calendar months, and
rolling windows of N hours.

A budget with period ``daily`` counts usage since the last 00:00 UTC and resets at the next one; ``weekly``
starts on Monday 00:00 UTC; ``monthly`` on the 1st at 00:00 UTC; ``none`` never resets.

``<N>h`` (``5h``, ``24h``, 1 to 8784) is a rolling window: at any moment it counts what was used in the
last N hours, and usage leaves it N hours after it was counted. Usage is counted in ``SLOTS`` (60) slots of
N/60 hours each (``5h``: 5 minutes, ``24h``: 24 minutes), numbered from 1970-01-01 00:00 UTC so that every
replica and every restart agree on them; a window counts the slot in progress and the 60 before it, every
slot that overlaps the last N hours. It may so count up to one slot of usage older than N hours (never less
than the last N hours): a hard budget is never overrun, and usage leaves the window between N hours and N
hours and one slot after it was counted. Headroom grows when a slot leaves, at a slot boundary:
``next_reset`` of a rolling window is the next boundary, the earliest moment anything can leave it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal

# A calendar period, ``none``, or ``<N>h`` (checked by ``is_period``): kept a str so stored windows load.
Period = str
CalendarPeriod = Literal["daily", "weekly", "monthly", "none"]
PERIODS: tuple[CalendarPeriod, ...] = ("daily", "weekly", "monthly", "none")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_HOURS = 8784  # a leap year: a longer window is better said as ``none`` or a calendar period
SLOTS = 60  # slots a rolling window is counted in; it counts one more, the slot in progress
_HOURS = re.compile(r"([1-9][0-9]{0,3})h")


@lru_cache(maxsize=256)  # asked several times per request, of a handful of distinct periods
def hours_of(period: str) -> int | None:
    """N for a ``<N>h`` window, else None."""
    match = _HOURS.fullmatch(period)
    if match is None:
        return None
    hours = int(match.group(1))
    return hours if hours <= MAX_HOURS else None


def is_period(value: object) -> bool:
    return isinstance(value, str) and (value in PERIODS or hours_of(value) is not None)


def slot_width(period: Period) -> float | None:
    """Seconds in one slot of a rolling window (``5h``: 300); None for a calendar period."""
    hours = hours_of(period)
    return None if hours is None else hours * 3600 / SLOTS


def slot_of(width: float, moment: float) -> int:
    """The slot (of ``width`` seconds, numbered from the epoch) holding ``moment`` (UNIX time)."""
    return int(moment // width)


def oldest_counted_slot(width: float, moment: float) -> int:
    """The oldest slot a rolling window still counts at ``moment``: the one in progress and SLOTS before it."""
    return slot_of(width, moment) - SLOTS


def is_rolling(period: Period) -> bool:
    return hours_of(period) is not None


def window_start(period: Period, now: datetime) -> datetime:
    """The start of the window holding ``now`` (the epoch for ``none``); for a rolling window, the start of
    the oldest slot it counts."""
    now = now.astimezone(UTC)
    width = slot_width(period)
    if width is not None:
        return EPOCH + timedelta(seconds=oldest_counted_slot(width, now.timestamp()) * width)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    return EPOCH


def next_reset(period: Period, now: datetime) -> datetime | None:
    """When the window holding ``now`` ends; ``None`` for a budget that never resets. For a rolling window,
    the next slot boundary: the earliest moment usage leaves it (``rolling_reset`` knows when it does)."""
    width = slot_width(period)
    if width is not None:
        return EPOCH + timedelta(seconds=(slot_of(width, now.astimezone(UTC).timestamp()) + 1) * width)
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
    """A stable name of the window holding ``now``, used to key counters (``2026-11-21``, ``2026-W47``);
    ``rolling`` for a rolling window, whose counters live on (their slots leave them)."""
    if is_rolling(period):
        return "rolling"
    start = window_start(period, now)
    if period == "daily":
        return start.strftime("%Y-%m-%d")
    if period == "weekly":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "monthly":
        return start.strftime("%Y-%m")
    return "all"


def rolling_reset(width: float, oldest_used_slot: int) -> float:
    """When usage of a rolling window's oldest slot that holds any leaves it (UNIX time): when its
    headroom next grows."""
    return (oldest_used_slot + SLOTS + 1) * width


def seconds_until_reset(period: Period, now: datetime) -> float | None:
    reset = next_reset(period, now)
    return None if reset is None else (reset - now.astimezone(UTC)).total_seconds()


def iso_utc(moment: datetime | None) -> str | None:
    """``2026-12-01T00:00:00Z``, the form the quota shapes use."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
