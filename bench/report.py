"""The markdown report: one row per contender and load shape, ratios, targets, and how it was made."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from load import Scenario
from rows import Row, added_p50_ms, cpu_ratio, find_result, rps_ratio
from targets import GOAL_CONTENDER, goals_table


class Setup(Protocol):
    """How long each row ran and how often; the harness's options satisfy it."""

    @property
    def duration(self) -> int: ...
    @property
    def warmup(self) -> int: ...
    @property
    def rounds(self) -> int: ...


@dataclass(frozen=True)
class Run:
    """Everything a report says: rows, skipped contenders with reasons, and the setup."""

    rows: list[Row]
    skipped: dict[str, str]
    about: dict[str, str]
    command: str
    started: str
    setup: Setup
    load_before: str


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f}" if kib else "-"


def _or_dash(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _added_p50(rows: Sequence[Row], row: Row) -> str:
    return _or_dash(added_p50_ms(rows, row.contender, row.scenario), "+.2f")


def _table_line(rows: Sequence[Row], row: Row) -> str:
    head = f"| {row.contender} | {row.scenario.mode} | {row.scenario.connections} |"
    memory = f" {_mib(row.rss_idle_kib)} | {_mib(row.rss_after_kib)} |"
    if row.result is None:
        short = row.note if len(row.note) <= 60 else row.note[:57] + "..."
        return head + f" failed: {short.replace('|', '/')} | | | | | |" + memory
    r = row.result
    cpu = _or_dash(row.cpu_us_per_request, ",.0f")
    return (
        head
        + f" {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {_added_p50(rows, row)} | {r.errors} | {cpu} |"
        + memory
    )


def results_table(rows: Sequence[Row]) -> str:
    lines = [
        (
            "| contender | mode | conns | RPS | p50 ms | p99 ms | added p50 ms | errors | CPU us/req "
            "| RSS idle MiB | RSS after MiB |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    return "\n".join(lines + [_table_line(rows, row) for row in rows])


REFERENCES = ("direct", "passthrough", "passthrough-agent")


def reference_of(contender: str) -> str:
    """The passthrough a contender's CPU and RPS are compared with: the one posting the same requests."""
    return "passthrough-agent" if contender.endswith("-agent") else "passthrough"


def ratios_table(rows: Sequence[Row], scenarios: Sequence[Scenario]) -> str:
    """Every gateway's RPS over the passthrough's and LiteLLM's, and its added p50, per load."""
    lines = [
        "| contender | mode | conns | RPS / passthrough | RPS / litellm | CPU: passthrough / it | CPU: litellm / it "
        "| added p50 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    gateways = [name for name in dict.fromkeys(row.contender for row in rows) if name not in REFERENCES]
    for name in gateways:
        for s in scenarios:
            if find_result(rows, name, s) is None:
                continue
            reference = reference_of(name)
            passthrough = _or_dash(rps_ratio(rows, name, reference, s), ".2f")
            # LiteLLM posts the small request only: an agent row has nothing of its to compare with.
            versus_litellm = name != "litellm" and reference == "passthrough"
            litellm = _or_dash(rps_ratio(rows, name, "litellm", s), ".1f") if versus_litellm else "-"
            added = _or_dash(added_p50_ms(rows, name, s), "+.2f")
            cpu_pass = _or_dash(cpu_ratio(rows, name, reference, s), ".2f")
            cpu_litellm = _or_dash(cpu_ratio(rows, name, "litellm", s), ".1f") if versus_litellm else "-"
            lines.append(
                f"| {name} | {s.mode} | {s.connections} | {passthrough} | {litellm} | {cpu_pass} | {cpu_litellm} "
                f"| {added} |"
            )
    return "\n".join(lines)


def streams_lines(rows: Sequence[Row]) -> str:
    """Memory per open stream in the slow-streams rows."""
    lines = []
    for row in rows:
        per_stream = row.kib_per_stream
        if per_stream is not None and row.result is not None:
            lines.append(
                f"- {row.contender}: {row.scenario.connections} open streams, {per_stream:.1f} KiB each "
                f"(RSS {_mib(row.rss_idle_kib)} MiB idle, {_mib(row.rss_after_kib)} MiB with them open), "
                f"p99 {row.result.p99_ms:,.0f} ms"
            )
    return "\n".join(lines) or "- not run"


def _paced(rows: Sequence[Row]) -> list[Scenario]:
    return list(dict.fromkeys(row.scenario for row in rows if row.scenario.is_paced))


def first_line(argv: list[str]) -> str:
    """The first line a command prints, or "unknown"."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: anything else running skews every number."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def environment(versions: dict[str, str], load_before: str) -> str:
    """Machine and tool versions, as a bullet list."""
    facts = {
        "CPU": f"{cpu_model()} ({os.cpu_count()} cores)",
        "kernel": platform.release(),
        "nginx": first_line(["nginx", "-v"]),
        "wrk": first_line(["wrk", "-v"]),
        **versions,
        "load average at start / end": f"{load_before} / {load_average()}",
    }
    return "\n".join(f"- {name}: {value}" for name, value in facts.items())


def _load_shape(setup: Setup) -> str:
    shape = f"{setup.warmup} s warmup then {setup.duration} s of wrk (1 thread) per row"
    return shape + (f", best of {setup.rounds} runs" if setup.rounds > 1 else "")


def render(run: Run, scenarios: Sequence[Scenario], versions: dict[str, str]) -> str:
    skipped = "\n".join(f"- {name}: {reason}" for name, reason in run.skipped.items()) or "- none"
    about = "\n".join(f"- {name}: {text}" for name, text in run.about.items())
    notes = "".join(f"- {row.contender} {row.scenario!r}: {row.note}\n" for row in run.rows if row.note)
    notes_block = f"\nNotes:\n{notes}" if notes else ""
    return f"""# anygate benchmark

Command: `{run.command}`
Date: {run.started}

{results_table(run.rows)}

Added p50 is the contender's median latency minus the direct (nginx) median for the same load.
RSS is VmRSS of the server process and its children: before load, and after that row's run (for
slow-stream rows, halfway through it, with the streams open). CPU us/req is the user + system time of
the server's process tree over the measured run, divided by the requests it answered.

{ratios_table(run.rows, [*scenarios, *_paced(run.rows)])}

CPU ratios are the other contender's CPU per request over this one's (1.0: as cheap; 0.5: twice the
CPU). Slow streams (the upstream sends an event every 100 ms; wrk holds that many streams open):

{streams_lines(run.rows)}

Targets for `{GOAL_CONTENDER}`:

{goals_table(run.rows)}

Contenders:
{about}

Skipped contenders:
{skipped}
{notes_block}
Setup: {_load_shape(run.setup)}.
The gateway runs pinned to core 0, nginx and wrk to core 1. Each gateway is restarted per mode,
since the JSON and SSE upstreams are separate nginx ports.

{environment(versions, run.load_before)}
"""
