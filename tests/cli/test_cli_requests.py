"""``anygate requests``: the request log from the store, as a table within 80 columns or as the API's JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anygate.accounting.ledger import Ledger, UsageRow
from anygate.cli import app
from anygate.settings import Settings
from anygate.store.store import open_store

DAY = 1_764_547_200.0  # 2025-12-01T00:00:00Z
LONG_MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo-with-a-very-long-name"


def row(request_id: str, created_at: float, **changes: object) -> UsageRow:
    base = UsageRow(request_id, created_at, "key_5f7bd2bed6f52ef0", "usr_1", "chat/completions", "campus", "small",
                    1200, 340, False, 0.0042, False, 200, 812.4, 95.0)  # fmt: skip
    return base._replace(**changes)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    settings = Settings.model_validate({"data_dir": tmp_path / "data"})

    async def fill() -> None:
        store = await open_store(settings)
        try:
            ledger = Ledger(store.db.engine)
            for each in (
                row("r1", DAY + 1 * 60, cached_input_tokens=1000),
                row("r2", DAY + 2 * 60, model=LONG_MODEL, cost_usd=None, estimated=True),
                row(
                    "r3",
                    DAY + 3 * 60,
                    status=429,
                    input_tokens=0,
                    output_tokens=0,
                    cost_usd=0.0,
                    error="budget_exceeded",
                ),
                row(
                    "r4", DAY + 4 * 60, provider_id="router", cost_usd=0.01, cost_source="upstream", key_id="key_other"
                ),
            ):
                ledger.record(each)
            await ledger.close()
        finally:
            await store.close()

    asyncio.run(fill())
    return tmp_path / "data"


def run(data_dir: Path, *args: str) -> tuple[int, str]:
    env = {"ANYGATE_DATA_DIR": str(data_dir), "COLUMNS": "80"}
    result = CliRunner().invoke(app, ["requests", *args], env=env)
    return result.exit_code, result.output


def test_the_table_fits_80_columns_and_explains_its_marks(data_dir: Path) -> None:
    status, shown = run(data_dir)
    assert status == 0, shown
    lines = shown.splitlines()
    assert max(len(line) for line in lines) <= 80, shown
    rows = [line.split() for line in lines if line.strip().startswith("12-01")]
    assert [cells[1] for cells in rows] == ["00:04", "00:03", "00:02", "00:01"]  # newest first
    assert [cells[2] for cells in rows] == ["key_other", *["key_5f7bd2bed6f52ef0"] * 3]  # ids whole, to copy
    status_cells = "".join(line[47:59].strip() for line in lines)  # the status column, its folds joined
    assert "429budget_exceeded" in status_cells, shown
    assert "unknown" in shown and "$0.01*" in shown
    assert "1.2K+c" in shown and "~1.2K" in shown
    assert "*  the cost the upstream reported" in shown and "~  tokens estimated" in shown
    assert "more:" not in shown  # one page holds them all


def test_json_is_the_apis_shape_and_filters_and_pages_work(data_dir: Path) -> None:
    status, shown = run(data_dir, "--json", "--key", "key_5f7bd2bed6f52ef0", "--limit", "2")
    assert status == 0, shown
    page = json.loads(shown)
    assert page["object"] == "list" and [r["request_id"] for r in page["data"]] == ["r3", "r2"]
    assert page["data"][0]["error"] == "budget_exceeded" and page["data"][1]["usage_source"] == "estimated"
    status, shown = run(data_dir, "--json", "--key", "key_5f7bd2bed6f52ef0", "--cursor", page["next_cursor"])
    rest = json.loads(shown)
    assert [r["request_id"] for r in rest["data"]] == ["r1"] and rest["next_cursor"] is None
    assert rest["data"][0]["cached_input_tokens"] == 1000
    status, shown = run(data_dir, "--json", "--status", "429")
    assert [r["request_id"] for r in json.loads(shown)["data"]] == ["r3"]
    status, shown = run(data_dir, "--json", "--since", "2025-12-01T00:02:00Z", "--until", str(int(DAY + 240)))
    assert [r["request_id"] for r in json.loads(shown)["data"]] == ["r3", "r2"]
    status, shown = run(data_dir, "--provider", "router", "--limit", "1")
    assert status == 0 and "key_other" in shown and "more:" not in shown
    status, shown = run(data_dir, "--limit", "1")
    assert "more: the same command with --cursor " in shown


def test_bad_options_are_refused_by_name(data_dir: Path) -> None:
    status, shown = run(data_dir, "--since", "yesterday")
    assert status == 2 and "--since" in shown
    status, shown = run(data_dir, "--cursor", "nonsense")
    assert status == 2 and "--cursor" in shown
    status, shown = run(data_dir, "--status", "42")
    assert status == 2 and "--status" in shown
    status, shown = run(data_dir, "--model", "nothing-like-it")
    assert status == 0 and "no requests match" in shown
