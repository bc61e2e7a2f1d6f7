"""The targets anygate is held to, and whether one run met them.

Throughput is judged at 16 connections against the passthrough (the Python ceiling) and
LiteLLM; latency at 1 connection as added p50 over nginx directly; memory as idle RSS of a started gateway
and RSS after the budgeted rows. A
row with errors (non-2xx or socket) misses its target whatever its numbers: refused requests
are cheap and would flatter it. A target whose rows did not run is "not measured".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from load import Scenario
from rows import Row, added_p50_ms, cpu_ratio, find_row, rps_ratio

GOAL_CONTENDER = "anygate"
IDLE_CONTENDER = "anygate-admin"  # the same server and config; its idle RSS is a started gateway's
MIN_OF_PASSTHROUGH = 0.60
MIN_OF_LITELLM = 30.0
MAX_ADDED_P50_MS = 0.5
MAX_IDLE_RSS_MB = 80.0
MAX_LOADED_RSS_MB = 150.0  # after the budgeted rows
MIN_CPU_OF_PASSTHROUGH = {GOAL_CONTENDER: 0.60, "anygate-admin": 0.75}  # passthrough CPU / anygate CPU
BUSY, SINGLE = 16, 1


@dataclass(frozen=True)
class Verdict:
    """One target: what it asks, what was measured, and "met", "missed" or "not measured"."""

    target: str
    required: str
    measured: str
    verdict: str

    def line(self) -> str:
        return f"| {self.target} | {self.required} | {self.measured} | {self.verdict} |"


def _judged(is_met: bool, rows: Sequence[Row | None]) -> str:
    errors = sum(row.result.errors for row in rows if row is not None and row.result is not None)
    if errors:
        return f"missed ({errors} errors)"
    return "met" if is_met else "missed"


def _rps_target(rows: Sequence[Row], scenario: Scenario, other: str, minimum: float) -> Verdict:
    target = f"{scenario.mode} RPS at {scenario.connections} conns / {other}"
    required = f">= {minimum:.0%}" if minimum < 1 else f">= {minimum:.0f}x"
    ratio = rps_ratio(rows, GOAL_CONTENDER, other, scenario)
    if ratio is None:
        return Verdict(target, required, "-", f"not measured ({GOAL_CONTENDER} or {other} did not run)")
    measured = f"{ratio:.0%}" if minimum < 1 else f"{ratio:.1f}x"
    ours, theirs = find_row(rows, GOAL_CONTENDER, scenario), find_row(rows, other, scenario)
    return Verdict(target, required, measured, _judged(ratio >= minimum, [ours, theirs]))


def _latency_target(rows: Sequence[Row], scenario: Scenario) -> Verdict:
    target = f"{scenario.mode} added p50 at {scenario.connections} conn"
    required = f"<= {MAX_ADDED_P50_MS} ms"
    added = added_p50_ms(rows, GOAL_CONTENDER, scenario)
    if added is None:
        return Verdict(target, required, "-", f"not measured ({GOAL_CONTENDER} or direct did not run)")
    ours = find_row(rows, GOAL_CONTENDER, scenario)
    return Verdict(target, required, f"{added:+.2f} ms", _judged(added <= MAX_ADDED_P50_MS, [ours]))


def _memory_target(rows: Sequence[Row]) -> Verdict:
    """The largest idle RSS of a started gateway (one instance per mode), in decimal megabytes: the admin-key
    instance, idle once it has answered a model request. The budgeted instance's idle RSS is measured after
    its key was made through the management API (which loads that app) and a request needed a token
    estimate (which loads the vocabulary): what a gateway holds once used, reported in its rows and judged
    by the RSS-after target below."""
    target, required = "idle RSS (started, a model request answered)", f"< {MAX_IDLE_RSS_MB:.0f} MB"
    idle = [row.rss_idle_kib for row in rows if row.contender == IDLE_CONTENDER and row.rss_idle_kib]
    if not idle:
        return Verdict(target, required, "-", f"not measured ({IDLE_CONTENDER} did not run)")
    megabytes = max(idle) * 1024 / 1e6
    return Verdict(target, required, f"{megabytes:.1f} MB", "met" if megabytes < MAX_IDLE_RSS_MB else "missed")


def _cpu_target(rows: Sequence[Row], contender: str, scenario: Scenario, minimum: float) -> Verdict:
    target = f"{contender} {scenario.mode} CPU/request at {scenario.connections} conns: passthrough / it"
    ratio = cpu_ratio(rows, contender, "passthrough", scenario)
    if ratio is None:
        return Verdict(target, f">= {minimum:.2f}", "-", f"not measured ({contender} or passthrough did not run)")
    ours, theirs = find_row(rows, contender, scenario), find_row(rows, "passthrough", scenario)
    return Verdict(target, f">= {minimum:.2f}", f"{ratio:.2f}", _judged(ratio >= minimum, [ours, theirs]))


def _loaded_memory_target(rows: Sequence[Row]) -> Verdict:
    """The largest RSS after a budgeted (non-paced) row, in decimal megabytes."""
    target, required = "RSS after the budgeted rows", f"<= {MAX_LOADED_RSS_MB:.0f} MB"
    after = [
        row.rss_after_kib
        for row in rows
        if row.contender == GOAL_CONTENDER and row.rss_after_kib and not row.scenario.is_paced
    ]
    if not after:
        return Verdict(target, required, "-", f"not measured ({GOAL_CONTENDER} did not run)")
    megabytes = max(after) * 1024 / 1e6
    return Verdict(target, required, f"{megabytes:.1f} MB", "met" if megabytes <= MAX_LOADED_RSS_MB else "missed")


def verdicts(rows: Sequence[Row]) -> list[Verdict]:
    """Every target, in the order the report lists them."""
    found: list[Verdict] = []
    for is_stream in (False, True):
        busy, single = Scenario(is_stream, BUSY), Scenario(is_stream, SINGLE)
        found += [
            _rps_target(rows, busy, "passthrough", MIN_OF_PASSTHROUGH),
            _rps_target(rows, busy, "litellm", MIN_OF_LITELLM),
            _latency_target(rows, single),
        ]
    for contender, minimum in MIN_CPU_OF_PASSTHROUGH.items():
        found += [_cpu_target(rows, contender, Scenario(is_stream, BUSY), minimum) for is_stream in (False, True)]
    return [*found, _memory_target(rows), _loaded_memory_target(rows)]


def goals_table(rows: Sequence[Row]) -> str:
    lines = ["| target | required | measured | verdict |", "|---|---|---:|---|"]
    return "\n".join(lines + [v.line() for v in verdicts(rows)])
