"""``anygate ...`` run in this process, as its console script runs it: ``anygate.cli.main``'s command (the
app with its plain help) under click's test runner, its stdout and stderr apart, its exit status.

What a subprocess would add is the interpreter starting and the imports (about a second a run); the
console script itself, ``serve`` and a terminal are tested as a subprocess (``tests/cli/test_cli.py``).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

import typer
from click.testing import CliRunner

from anygate.cli import app, plain_help


@dataclass
class Ran:
    """What a run of ``anygate`` left: as ``subprocess.CompletedProcess`` has it."""

    returncode: int
    stdout: str
    stderr: str


def invoke(*args: str, **env: str) -> Ran:
    """``anygate ARGS`` with the environment a user's shell gives it (``env`` added), its terminal wide."""
    command = plain_help(typer.main.get_command(app))
    environment = {"COLUMNS": "250", "NO_COLOR": "1", "ANYGATE_DATA_DIR": str(Path.cwd() / "data"), **env}
    result = CliRunner().invoke(command, list(args), env=environment, prog_name="anygate")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # Uncaught, it is what the user would see: Python's traceback on stderr.
        stderr += "".join(traceback.format_exception(result.exception))
    return Ran(result.exit_code, result.stdout, stderr)
