"""`anygate serve` migrates a database in a process of its own, so the gateway never holds alembic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import asyncio, sys
from pathlib import Path
from anygate.cli.serve import migrate_apart
from anygate.settings import load_settings
from anygate.store.database import Database

settings = load_settings({"data_dir": Path(sys.argv[1])})
migrate_apart(settings)

async def recorded():
    database = Database(settings.resolved_database_url)
    try:
        return await database.recorded()
    finally:
        await database.close()

print(asyncio.run(recorded()), "alembic" in sys.modules)
"""


@pytest.mark.sockets  # processes of their own
def test_a_new_database_is_migrated_by_a_child_and_alembic_stays_out(tmp_path: Path) -> None:
    from anygate.store.database import SHIPPED_HEAD

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "data")], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [SHIPPED_HEAD, "False"]
