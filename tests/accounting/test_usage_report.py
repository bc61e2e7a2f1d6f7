"""Usage reports read as a person expects: keys by alias and users by name beside their ids, refused requests
apart from served ones with their statuses, an unknown cost as unknown, and ``anygate usage`` within 80
columns."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from anygate.accounting.reports import UsageFilter, as_csv, report
from anygate.settings import Settings
from anygate.store.ledger_tables import usage_ledger
from anygate.store.store import open_store

LONG_MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo-with-a-very-long-name"


def ledger_row(number: int, key_id: str, user_id: str | None, **fields: Any) -> dict[str, Any]:
    row = {
        "request_id": f"req-{number}",
        "created_at": time.time(),
        "key_id": key_id,
        "user_id": user_id,
        "route": "chat/completions",
        "provider_id": "campus",
        "model": "small",
        "input_tokens": 10,
        "output_tokens": 5,
        "estimated": False,
        "cost_usd": 0.25,
        "byok": False,
        "status": 200,
        "latency_ms": 12.0,
        "ttft_ms": None,
    }
    return {**row, **fields}


@pytest.fixture
def ledger(tmp_path: Path) -> tuple[Settings, dict[str, str]]:
    """A store with a user, two keys (one aliased long) and a ledger of served, refused and unpriced rows."""
    settings = Settings.model_validate({"data_dir": tmp_path / "data"})

    async def fill() -> dict[str, str]:
        store = await open_store(settings)
        try:
            user = await store.keys.create_user({"name": "Ada Lovelace"})
            student, _ = await store.keys.create_key({"alias": "student-with-a-long-alias", "user_id": user.id}, "t")
            other, _ = await store.keys.create_key({"alias": "ops"}, "t")
            rows = [
                ledger_row(1, student.id, user.id),
                ledger_row(2, student.id, user.id, cost_usd=None, model=LONG_MODEL),  # no known price
                ledger_row(3, student.id, user.id, status=429, input_tokens=0, output_tokens=0, cost_usd=None),
                ledger_row(4, student.id, user.id, status=429, input_tokens=0, output_tokens=0, cost_usd=None),
                ledger_row(5, student.id, user.id, status=403, input_tokens=0, output_tokens=0, cost_usd=None),
                ledger_row(6, student.id, user.id, status=499, output_tokens=3, estimated=True),  # cut short
                ledger_row(7, other.id, None, cost_usd=None, model=LONG_MODEL),
            ]
            async with store.db.connect() as connection:
                await connection.execute(usage_ledger.insert(), rows)
        finally:
            await store.close()
        return {"student": student.id, "other": other.id, "user": user.id}

    return settings, asyncio.run(fill())


def run_report(settings: Settings, groups: list[Any]) -> list[dict[str, Any]]:
    from anygate.store.database import Database

    async def read() -> list[dict[str, Any]]:
        db = Database(settings.resolved_database_url)
        try:
            return await report(db.engine, UsageFilter(), groups)
        finally:
            await db.close()

    return asyncio.run(read())


def test_a_report_buckets_by_utc_hour_day_and_month(tmp_path: Path) -> None:
    settings = Settings.model_validate({"data_dir": tmp_path / "data"})
    moments = [
        1_764_720_000.0,
        1_764_721_800.0,
        1_764_727_200.0,
        1_767_225_600.0,
    ]  # 2025-12-03 00:00, 00:30, 02:00; 2026-01-01

    async def fill() -> None:
        store = await open_store(settings)
        try:
            rows = [ledger_row(n, "key_a", None, created_at=at) for n, at in enumerate(moments)]
            async with store.db.connect() as connection:
                await connection.execute(usage_ledger.insert(), rows)
        finally:
            await store.close()

    asyncio.run(fill())
    hours = {row["hour"]: row["requests"] for row in run_report(settings, ["hour"])}
    assert hours == {"2025-12-03T00:00": 2, "2025-12-03T02:00": 1, "2026-01-01T00:00": 1}
    days = {row["day"]: row["requests"] for row in run_report(settings, ["day"])}
    assert days == {"2025-12-03": 3, "2026-01-01": 1}
    months = [(row["month"], row["requests"], row["cost_usd"]) for row in run_report(settings, ["month"])]
    assert months == [("2025-12", 3, 0.75), ("2026-01", 1, 0.25)]


def test_a_report_names_keys_and_users_and_counts_refusals_apart(ledger: tuple[Settings, dict[str, str]]) -> None:
    settings, ids = ledger
    by_key = {row["key"]: row for row in run_report(settings, ["key", "user"])}
    student = by_key[ids["student"]]
    assert (student["key_alias"], student["user_name"]) == ("student-with-a-long-alias", "Ada Lovelace")
    assert (student["requests"], student["served"], student["refused"]) == (6, 3, 3)
    assert student["refused_statuses"] == {"403": 1, "429": 2}
    assert student["cost_usd"] == 0.5 and student["unpriced_requests"] == 1
    other = by_key[ids["other"]]
    assert (other["key_alias"], other["user_name"], other["refused_statuses"]) == ("ops", None, {})
    assert other["cost_usd"] is None and other["unpriced_requests"] == 1  # unknown, not $0.00
    exported = list(csv.DictReader(io.StringIO(as_csv(run_report(settings, ["key"]), ["key"]))))
    row = next(r for r in exported if r["key"] == ids["student"])
    assert row["key_alias"] == "student-with-a-long-alias"
    assert (row["served"], row["refused"], row["refused_statuses"]) == ("3", "3", "403:1 429:2")
    assert next(r for r in exported if r["key"] == ids["other"])["cost_usd"] == ""


def test_anygate_usage_fits_80_columns_and_says_what_it_cannot_show_in_numbers(
    ledger: tuple[Settings, dict[str, str]],
) -> None:
    from anygate.cli import app

    settings, ids = ledger
    env = {"ANYGATE_DATA_DIR": str(settings.data_dir), "COLUMNS": "80"}
    shown = CliRunner().invoke(app, ["usage"], env=env)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert max(len(line) for line in lines) <= 80, shown.output
    assert ids["student"] not in shown.output and "ops" in shown.output
    key_column = "".join(line[:16].strip() for line in lines if line[:16].strip() not in ("", "key", "total"))
    assert "student-with-a-long-alias" in key_column  # folded within its cell, never cut short
    assert "…" not in shown.output
    [unknown] = [line for line in lines if line.lstrip().startswith("ops")]
    assert unknown.rstrip().endswith("unknown")
    assert any(line.rstrip().endswith("$0.50+?") for line in lines)  # the known part, and more unpriced
    assert "refused (an error answered, nothing charged) by status: 403 x1, 429 x2" in shown.output
    assert "~  some tokens estimated" in shown.output
    by_user = CliRunner().invoke(app, ["usage", "--by", "day,user,model"], env=env)
    assert by_user.exit_code == 0 and "Ada" in by_user.output and ids["user"] not in by_user.output
    assert max(len(line) for line in by_user.output.splitlines()) <= 80


def test_a_report_groups_by_team_with_its_name(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from anygate.store.tables import teams

    settings = Settings.model_validate({"data_dir": tmp_path / "data"})

    async def fill() -> None:
        store = await open_store(settings)
        try:
            rows = [
                ledger_row(0, "key_a", "usr_a", team_id="comp318"),
                ledger_row(1, "key_b", "usr_b", team_id="comp318"),
                ledger_row(2, "key_c", "usr_c", team_id=None),
            ]
            async with store.db.connect() as connection:
                await connection.execute(
                    teams.insert(), [{"id": "comp318", "name": "COMP318", "created_at": datetime.now(UTC)}]
                )
                await connection.execute(usage_ledger.insert(), rows)
        finally:
            await store.close()

    asyncio.run(fill())
    found = {
        (row["team"], row["team_name"]): (row["requests"], row["cost_usd"]) for row in run_report(settings, ["team"])
    }
    assert found == {("comp318", "COMP318"): (2, 0.5), (None, None): (1, 0.25)}
