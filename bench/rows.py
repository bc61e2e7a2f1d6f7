"""Measured rows, and what the report derives from them: ratios of RPS and added latency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from load import LoadResult, Scenario


@dataclass(frozen=True)
class Row:
    """One measured (or failed) contender and scenario; RSS in KiB, 0 when unknown."""

    contender: str
    scenario: Scenario
    result: LoadResult | None
    rss_idle_kib: int = 0
    rss_after_kib: int = 0
    note: str = ""


def find_result(rows: Sequence[Row], contender: str, scenario: Scenario) -> LoadResult | None:
    row = find_row(rows, contender, scenario)
    return row.result if row is not None else None


def added_p50_ms(rows: Sequence[Row], contender: str, scenario: Scenario) -> float | None:
    """The contender's median latency minus the direct median for the same load, when both ran."""
    ours, direct = find_result(rows, contender, scenario), find_result(rows, "direct", scenario)
    if ours is None or direct is None or contender == "direct":
        return None
    return ours.p50_ms - direct.p50_ms


def rps_ratio(rows: Sequence[Row], contender: str, other: str, scenario: Scenario) -> float | None:
    ours, theirs = find_result(rows, contender, scenario), find_result(rows, other, scenario)
    if ours is None or theirs is None or not theirs.rps:
        return None
    return ours.rps / theirs.rps


def find_row(rows: Sequence[Row], contender: str, scenario: Scenario) -> Row | None:
    """The measured row of a contender and scenario, if it ran."""
    for row in rows:
        if row.contender == contender and row.scenario == scenario and row.result is not None:
            return row
    return None
