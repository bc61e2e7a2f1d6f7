"""Measured rows, and what the report derives from them: ratios of RPS and added latency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from load import LoadResult, Scenario


@dataclass(frozen=True)
class Row:
    """One measured (or failed) contender and scenario; RSS in KiB, 0 when unknown; CPU in seconds of
    the server's process tree over the measured run (None when unknown). For a slow-streams row,
    `rss_after_kib` is read while the streams are open."""

    contender: str
    scenario: Scenario
    result: LoadResult | None
    rss_idle_kib: int = 0
    rss_after_kib: int = 0
    note: str = ""
    cpu_seconds: float | None = None

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.cpu_seconds is None or self.result is None or not self.result.requests:
            return None
        return self.cpu_seconds / self.result.requests * 1e6

    @property
    def kib_per_stream(self) -> float | None:
        """Memory per open stream: RSS while they are open over idle, per connection (slow streams)."""
        if not self.scenario.is_paced or not self.rss_idle_kib or not self.rss_after_kib:
            return None
        return (self.rss_after_kib - self.rss_idle_kib) / self.scenario.connections


def find_result(rows: Sequence[Row], contender: str, scenario: Scenario) -> LoadResult | None:
    row = find_row(rows, contender, scenario)
    return row.result if row is not None else None


def added_p50_ms(rows: Sequence[Row], contender: str, scenario: Scenario) -> float | None:
    """The contender's median latency minus the direct median for the same load, when both ran (none for an
    agent row: nginx is posted the small request only)."""
    ours, direct = find_result(rows, contender, scenario), find_result(rows, "direct", scenario)
    if ours is None or direct is None or contender == "direct" or contender.endswith("-agent"):
        return None
    return ours.p50_ms - direct.p50_ms


def rps_ratio(rows: Sequence[Row], contender: str, other: str, scenario: Scenario) -> float | None:
    ours, theirs = find_result(rows, contender, scenario), find_result(rows, other, scenario)
    if ours is None or theirs is None or not theirs.rps:
        return None
    return ours.rps / theirs.rps


def cpu_ratio(rows: Sequence[Row], contender: str, other: str, scenario: Scenario) -> float | None:
    """The other's CPU per request over the contender's: 0.6 means the contender spends 1/0.6 as much."""
    ours, theirs = find_row(rows, contender, scenario), find_row(rows, other, scenario)
    if ours is None or theirs is None:
        return None
    mine, other_cpu = ours.cpu_us_per_request, theirs.cpu_us_per_request
    if mine is None or other_cpu is None or not mine:
        return None
    return other_cpu / mine


def find_row(rows: Sequence[Row], contender: str, scenario: Scenario) -> Row | None:
    """The measured row of a contender and scenario, if it ran."""
    for row in rows:
        if row.contender == contender and row.scenario == scenario and row.result is not None:
            return row
    return None
