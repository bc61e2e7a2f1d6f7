"""``anygate users import roster.csv --team comp318 ...``: enrol a class from a roster, and
``anygate audit``: read the audit log.

The roster is a CSV file with a ``name`` column (or, without a header naming one, names in the first
column). The import is the API's (``POST /v1/teams/{id}/roster``): one transaction, a user and a key for
each name not yet in the team, names already there kept. Each new key is printed once, or written with
``--out`` to a file made with mode 0600 (``name,user_id,key_id,key``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from anygate.cli.common import ConfigOption, err_console_print, fail, load, with_store
from anygate.store.store import Store

BudgetSpecs = Annotated[
    list[str] | None,
    typer.Option(
        "--budget",
        help="A per-student budget (repeatable): tokens=50000,usd=2,requests=100,window=daily|weekly|monthly|none|5h,"
        "mode=hard|soft",
    ),
]


def roster_names(text: str) -> list[str]:
    """The names of a roster CSV: its ``name`` column, else its first column (blank lines skipped)."""
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    if "name" in header:
        column = header.index("name")
        return [row[column].strip() for row in rows[1:] if len(row) > column and row[column].strip()]
    return [row[0].strip() for row in rows if row[0].strip()]


def budget_option(text: str) -> dict[str, Any]:
    """``tokens=50000,window=daily`` as a budget object (checked by the API's request model)."""
    budget: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            fail(f"--budget: '{part}' is not name=value")
        if name in ("tokens", "requests"):
            budget[name] = int(value) if value.isdigit() else value
        elif name == "usd":
            try:
                budget[name] = float(value)
            except ValueError:
                budget[name] = value
        else:
            budget[name] = value
    return budget


def write_private(path: Path, rows: list[dict[str, Any]]) -> None:
    """The new keys, in a file only its owner may read (made 0600 before anything is written)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "user_id", "key_id", "key"])
        for row in rows:
            writer.writerow([row["name"], row["user_id"], row["key_id"], row["key"]])


def hand_out(rows: list[dict[str, Any]], out: Path | None, summary: str) -> None:
    """New keys, shown this once: written to ``out`` (0600), else printed as ``name,user_id,key_id,key``."""
    if out is not None:
        write_private(out, rows)
        err_console_print(f"{summary}; the new keys are in {out} (mode 0600)")
        return
    err_console_print(f"{summary}; each key below is shown this once")
    for row in rows:
        Console().print(f"{row['name']},{row['user_id']},{row['key_id']},{row['key']}", highlight=False, markup=False)


def users_import(
    roster: Annotated[Path, typer.Argument(help="CSV with a 'name' column (or names in the first column).")],
    team: Annotated[str, typer.Option("--team", help="The team to enrol them in (it must exist).")],
    budget: BudgetSpecs = None,
    expires: Annotated[str | None, typer.Option("--expires", help="The keys' expiry, ISO 8601: 2027-06-30.")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Allowed model pattern (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the new keys here (mode 0600), not stdout.")] = None,
    config: ConfigOption = None,
) -> None:
    """Enrol a roster in a team: a user and a key per new name, in one transaction; re-runs keep who is there."""
    from anygate.api.routes_teams import enrol
    from anygate.management.schemas import RosterImport
    from anygate.management.validation import validate

    try:
        names = roster_names(roster.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        fail(f"cannot read {roster}: {exc.strerror}")
    if not names:
        fail(f"{roster} names nobody")
    key: dict[str, Any] = {"expires_at": expires, "models": model or None}
    spec = {
        "users": [{"name": n} for n in names],
        "budgets": [budget_option(b) for b in budget or []] or None,
        "key": key,
    }

    async def run(store: Store) -> dict[str, Any]:
        # Checked here, inside with_store: a bad field exits with the API's message.
        return await enrol(store, "cli", team, validate(RosterImport, spec))

    answer = with_store(load(config), run)
    created = [row for row in answer["data"] if row["key"] is not None]
    hand_out(created, out, f"{answer['created']} created, {answer['kept']} kept")


def audit(
    actor: Annotated[str | None, typer.Option("--actor", help="A key id or alias, or 'cli'.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="The id of what was changed.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: ConfigOption = None,
) -> None:
    """The latest management changes: who, when, what (secrets masked)."""
    from anygate.api.routes_audit import entry_view
    from anygate.store.audit import AuditQuery

    async def read(store: Store) -> list[dict[str, Any]]:
        return [entry_view(e) for e in await store.audit.entries(AuditQuery(actor, target, limit=limit))]

    for entry in with_store(load(config), read):
        if as_json:
            Console().print(json.dumps(entry), highlight=False, markup=False, soft_wrap=True)
        else:
            who = entry["actor"]["label"] or entry["actor"]["id"]
            what = f"{entry['action']} {entry['target']['type']} {entry['target']['id']}"
            Console().print(f"{entry['at']}  {who}  {what}", highlight=False, markup=False)
