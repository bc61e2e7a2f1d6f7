"""``anygate teams ...``: a team made, listed, changed and deleted from the terminal, checked as the API
checks it, each change in the audit log (a SQLite store in tmp_path; no sockets)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anygate.cli import app
from anygate.settings import Settings
from anygate.store.records import TeamRecord
from anygate.store.store import open_store


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def invoke(data_dir: Path, *args: str) -> tuple[int, str]:
    env = {"ANYGATE_DATA_DIR": str(data_dir), "COLUMNS": "80"}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def run(data_dir: Path, *args: str) -> str:
    status, output = invoke(data_dir, *args)
    assert status == 0, (args, output)
    return output


def refused(data_dir: Path, *args: str) -> str:
    status, output = invoke(data_dir, *args)
    assert status != 0, (args, output)
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output  # one clear line
    return lines[0]


def stored(data_dir: Path, team_id: str) -> TeamRecord | None:
    async def read() -> TeamRecord | None:
        store = await open_store(Settings.model_validate({"data_dir": data_dir}))
        try:
            return await store.teams.get_team(team_id)
        finally:
            await store.close()

    return asyncio.run(read())


def enrol(data_dir: Path, team_id: str, *names: str) -> None:
    async def add() -> None:
        store = await open_store(Settings.model_validate({"data_dir": data_dir}))
        try:
            for name in names:
                await store.keys.create_user({"name": name, "team_id": team_id})
        finally:
            await store.close()

    asyncio.run(add())


def test_a_team_is_created_with_every_field_and_listed_within_80_columns(data_dir: Path) -> None:
    created = run(
        data_dir,
        *("teams", "create", "--name", "Computer Science 318: Machine Learning Systems", "--id", "comp318"),
        *("--budget", "tokens=500000,window=daily", "--budget", "usd=20,requests=1000,window=5h,mode=soft"),
        *("--rpm", "600", "--concurrency", "40", "--model", "campus/*", "--provider", "campus"),
    )
    assert created.splitlines()[-1] == "comp318"
    team = stored(data_dir, "comp318")
    assert team is not None and team.name.startswith("Computer Science 318")
    assert team.budgets == [
        {"tokens": 500000, "usd": None, "requests": None, "window": "daily", "mode": "hard"},
        {"tokens": None, "usd": 20.0, "requests": 1000, "window": "5h", "mode": "soft"},
    ]
    assert team.limits == {"rpm": 600, "tpm": None, "concurrency": 40}
    assert team.models == ["campus/*"] and team.providers == ["campus"]
    made_up = run(data_dir, "teams", "create", "--name", "Research").splitlines()[-1]
    assert made_up.startswith("team_")
    enrol(data_dir, "comp318", "Ana", "Bo")

    shown = run(data_dir, "teams", "list")
    lines = shown.splitlines()
    assert max(len(line) for line in lines) <= 80, shown
    assert lines[0].split() == ["id", "name", "members", "budgets"]
    comp = next(line for line in lines if line.startswith("comp318"))
    assert comp.split()[-5:] == ["2", "500000", "tok", "/", "daily"], shown
    assert "$20 + 1000 req / 5h (soft)" in shown
    research = next(line for line in lines if line.startswith(made_up))
    assert research.split()[1:] == ["Research", "0", "-"]


def test_update_changes_only_what_is_given_and_delete_keeps_the_users(data_dir: Path) -> None:
    run(data_dir, "teams", "create", "--name", "COMP318", "--id", "comp318", "--budget", "tokens=100", "--rpm", "60")
    run(data_dir, "teams", "create", "--name", "Other", "--id", "other", "--model", "a/*")
    run(data_dir, "teams", "update", "comp318", "--tpm", "9000", "--model", "campus/*")
    team = stored(data_dir, "comp318")
    assert team is not None and team.name == "COMP318"
    assert team.limits == {"rpm": 60, "tpm": 9000, "concurrency": None}  # the rpm kept
    assert team.budgets == [{"tokens": 100, "usd": None, "requests": None, "window": "none", "mode": "hard"}]
    assert team.models == ["campus/*"]
    run(data_dir, "teams", "update", "comp318", "--name", "COMP 318", "--budget", "usd=5,window=weekly")
    team = stored(data_dir, "comp318")
    assert team is not None and team.name == "COMP 318" and team.models == ["campus/*"]
    assert team.budgets == [{"tokens": None, "usd": 5.0, "requests": None, "window": "weekly", "mode": "hard"}]
    run(data_dir, "teams", "update", "comp318", "--no-budget", "--no-limits", "--all-models")
    team = stored(data_dir, "comp318")
    assert team is not None and team.budgets is None and team.limits is None and team.models is None
    untouched = stored(data_dir, "other")
    assert untouched is not None and untouched.models == ["a/*"] and untouched.name == "Other"

    enrol(data_dir, "comp318", "Ana")
    assert "its 1 user(s) stay" in run(data_dir, "teams", "delete", "comp318")
    assert stored(data_dir, "comp318") is None
    assert "Ana" in run(data_dir, "users", "list")
    assert refused(data_dir, "teams", "delete", "comp318") == "anygate: no team 'comp318'"

    audit = [json.loads(line) for line in run(data_dir, "audit", "--actor", "cli", "--json").splitlines()]
    actions = sorted(entry["action"] for entry in audit)
    assert actions == ["team.create", "team.create", "team.delete", "team.update", "team.update", "team.update"]
    assert all(entry["target"]["type"] == "team" for entry in audit)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("teams", "update", "comp318"), "nothing to change"),
        (("teams", "update", "nobody", "--name", "x"), "no team 'nobody'"),
        (("teams", "create", "--name", "Again", "--id", "comp318"), "Team 'comp318' exists already"),
        (("teams", "create", "--name", "x", "--id", "not a slug"), "id"),
        (("teams", "create", "--name", ""), "name"),
        (("teams", "create", "--name", "x", "--budget", "tokens=5,window=7d"), "window"),
        (("teams", "create", "--name", "x", "--budget", "window=daily"), "needs a limit"),
        (("teams", "create", "--name", "x", "--budget", "tokens"), "'tokens' is not name=value"),
        (("teams", "create", "--name", "x", "--budget", "tokens=1", "--budget", "usd=1"), "two budgets"),
        (("teams", "create", "--name", "x", "--rpm", "0"), "limits.rpm"),
        (("teams", "update", "comp318", "--no-budget", "--budget", "tokens=1"), "cannot be given"),
        (("teams", "update", "comp318", "--all-models", "--model", "a/*"), "cannot be given"),
    ],
)
def test_bad_input_is_refused_in_one_line_and_nothing_changes(data_dir: Path, args: tuple[str, ...], says: str) -> None:
    run(data_dir, "teams", "create", "--name", "COMP318", "--id", "comp318", "--rpm", "60")
    before = stored(data_dir, "comp318")
    line = refused(data_dir, *args)
    assert line.startswith("anygate: ") and says in line, line
    assert stored(data_dir, "comp318") == before
    assert len(run(data_dir, "teams", "list").splitlines()) == 3  # header, rule, comp318: nothing added


def test_no_teams_says_how_to_add_one(data_dir: Path) -> None:
    assert "anygate teams create --name NAME" in run(data_dir, "teams", "list")
