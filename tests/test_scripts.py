"""The scripts a newcomer runs: scripts/install_chromium says what it does while apt works (a fake apt-get
stands in), and scripts/anygate runs the command line in the caller's folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.docs import ROOT

pytestmark = pytest.mark.sockets  # the scripts, run as processes

FAKE_APT = """#!/bin/sh
echo "Reading package lists..."
case "$*" in
  *update*) echo "Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]"; echo "Fetched 151 kB in 1s" ;;
  *install*)
    [ -n "$FAIL" ] && { echo "E: Unable to locate package chromium"; exit 100; }
    echo "Get:1 http://deb.debian.org/debian bookworm/main amd64 chromium amd64 120.0 [72 MB]"
    echo "Selecting previously unselected package chromium."
    echo "Unpacking chromium (120.0) ..."
    echo "Setting up chromium (120.0) ..." ;;
esac
"""


def run_install(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    apt = bin_dir / "apt-get"
    apt.write_text(FAKE_APT)
    apt.chmod(0o755)
    path = f"{bin_dir}:/usr/bin:/bin"
    return subprocess.run(
        [str(ROOT / "scripts/install_chromium")],
        env={"PATH": path, "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_installing_chromium_says_what_it_does_as_it_goes(tmp_path: Path) -> None:
    done = run_install(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "install_chromium: installing Debian's chromium for the console tests (a minute or two)"
    assert "install_chromium: apt-get update: reading the package lists" in lines
    assert "  Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]" in lines
    assert "  Unpacking chromium (120.0) ..." in lines and "  Setting up chromium (120.0) ..." in lines
    assert "  Selecting previously unselected package chromium." not in lines  # progress, not every line
    assert lines[-1].startswith("install_chromium: chromium installed in ")


def test_a_failed_install_says_why_and_fails(tmp_path: Path) -> None:
    failed = run_install(tmp_path, FAIL="1")
    assert failed.returncode == 1
    assert "  E: Unable to locate package chromium" in failed.stderr.splitlines()
    assert "install_chromium: apt-get install failed after" in failed.stderr


def test_scripts_anygate_runs_the_command_line_in_the_callers_folder(tmp_path: Path) -> None:
    (tmp_path / "anygate.yaml").write_text("providers:\n  - id: groq\n    api_key: gsk-from-the-file\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANYGATE_", "OPENAI_", "OPENROUTER_"))}
    env.update({"ANYGATE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"})
    listed = subprocess.run(
        [str(ROOT / "scripts/anygate"), "providers", "--config", "anygate.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert any("groq" in line and "yes" in line for line in listed.stdout.splitlines())
