"""The process ``anygate serve`` becomes: what it runs without, and what it refuses (``server_process.py``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from anygate.server_process import FLAGS_FLAG, LISTENER_FD_FLAG, parse_argv


@pytest.mark.sockets  # a subprocess: a fresh interpreter
def test_the_server_process_runs_without_the_command_lines_libraries() -> None:
    # A fresh interpreter, as exec leaves it: what the server module and the app import, and nothing of the CLI.
    probe = (
        "import sys, anygate.server_process, anygate.app.gateway, anygate.api.edge;"
        "print(sorted(m for m in ('typer', 'rich', 'anygate.cli', 'websockets', 'watchfiles') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_the_server_process_reads_the_descriptor_and_the_flags_it_was_handed() -> None:
    fd, flags = parse_argv([LISTENER_FD_FLAG, "7", FLAGS_FLAG, '{"port": 8080, "config_file": "a.yaml"}'])
    assert fd == 7 and flags == {"port": 8080, "config_file": "a.yaml"}


@pytest.mark.parametrize(
    "argv",
    [[], ["--listener-fd", "7"], [LISTENER_FD_FLAG, "7", FLAGS_FLAG, "[1]"], ["--flags", "{}", LISTENER_FD_FLAG, "7"]],
)
def test_the_server_process_started_by_hand_says_how_it_is_run(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_argv(argv)
    assert "anygate serve" in str(stopped.value) or "JSON object" in str(stopped.value)
