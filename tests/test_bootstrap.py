"""The quick start's set-up on a machine that has only its system Python: scripts/bootstrap in a throwaway
copy of the tree, run under ``env -i`` with ``/usr/bin:/bin`` as the whole PATH, as a user without sudo.

The system Python here is Debian's (externally managed: ``pip install --user`` is refused). One run has
``venv`` and ``ensurepip`` and takes uv from a venv of its own; the other hides ``ensurepip`` (as a
Debian without python3-venv) and takes uv's binary from its wheel on PyPI. Both need the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = Path("/usr/bin/python3")

pytestmark = [
    pytest.mark.sockets,
    pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no system Python at /usr/bin/python3"),
]


def copy_tree(target: Path) -> Path:
    """The checkout's files as git sees them (tracked and new, not ignored): what a fresh clone has."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            destination = target / name.decode()
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    return target


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """Nothing but a PATH of /usr/bin:/bin and a HOME; the machine's CA bundle and uv's download cache are
    passed on when set (this network needs the first; the second only saves time)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), **extra}
    for name in ("SSL_CERT_FILE", "UV_CACHE_DIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.setdefault("UV_CACHE_DIR", str(Path.home() / ".cache" / "uv"))
    return env


def run_bootstrap(tree: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), "bash", "scripts/bootstrap"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_installed(tree: Path, result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    help_text = subprocess.run(
        [str(tree / ".venv/bin/anygate"), "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "serve" in help_text


def test_bootstrap_with_the_system_python_and_its_venv(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path / "tree")
    result = run_bootstrap(tree, clean_env(tmp_path / "home"))
    assert_installed(tree, result)
    assert (tree / ".tools/venv/bin/uv").exists(), "uv goes into the checkout's own tools folder"
    assert not (tmp_path / "home/.local/bin/uv").exists(), "nothing is installed into the user's site"
    assert "bootstrap: installing anygate and its locked dependencies into" in result.stderr  # never silent
    again = run_bootstrap(tree, clean_env(tmp_path / "home"))
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")  # nothing to do: nothing said


def test_bootstrap_without_ensurepip_takes_uv_from_its_wheel(tmp_path: Path) -> None:
    hidden = tmp_path / "no-ensurepip"
    hidden.mkdir()
    (hidden / "ensurepip.py").write_text('raise ImportError("python3-venv is not installed")\n')
    tree = copy_tree(tmp_path / "tree")
    result = run_bootstrap(tree, clean_env(tmp_path / "home", PYTHONPATH=str(hidden)))
    assert_installed(tree, result)
    assert (tree / ".tools/uv/uv").exists()
    assert not (tree / ".tools/venv").exists()


def test_a_python_reached_through_a_wrapper_is_set_up_once(tmp_path: Path) -> None:
    """A python3.11 on PATH that is a wrapper script (as pyenv's shims are): the venv is made from the
    interpreter it runs, so the next run finds it up to date instead of making it anew each time."""
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / "python3.11"
    shim.write_text(f'#!/bin/sh\nexec {SYSTEM_PYTHON} "$@"\n')
    shim.chmod(0o755)
    tree = copy_tree(tmp_path / "tree")
    env = {**clean_env(tmp_path / "home"), "PATH": f"{shims}:/usr/bin:/bin"}
    assert_installed(tree, run_bootstrap(tree, env))
    again = run_bootstrap(tree, env)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
