"""An older anygate to compare with: a detached git worktree of a revision, with its own venv.

`checkout` adds the worktree under the run's temp dir, runs `uv sync --locked` there and
removes the worktree however the run ends (failure, Ctrl-C or SIGTERM included). A checkout
or sync that fails does not stop the run: the baseline contender is skipped with the reason.
Revisions before the web console was committed (1ef992e) mount `src/anygate/console` without
having it; the checkout gets an empty one so they start, and the report says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYNC_TIMEOUT = 900
# Variables that would point uv at another environment than the worktree's own `.venv`.
UV_FOREIGN_VARS = ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "CONDA_PREFIX")


@dataclass(frozen=True)
class Baseline:
    """A revision of anygate built in a worktree; `problem` says why it cannot run, if it cannot."""

    rev: str
    subject: str
    root: Path
    problem: str | None = None
    fixup: str = ""

    @property
    def name(self) -> str:
        return f"anygate@{self.rev}"

    @property
    def anygate_bin(self) -> Path:
        return self.root / ".venv" / "bin" / "anygate"

    def __repr__(self) -> str:
        return f"Baseline({self.rev}, {self.problem or 'ready'})"


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)


def resolve(rev: str) -> tuple[str, str]:
    """The short hash and subject of `rev`; ValueError when git does not know it."""
    done = _git("log", "-1", "--format=%h%x00%s", f"{rev}^{{commit}}", "--")
    if done.returncode != 0:
        raise ValueError(f"git does not know revision {rev!r}: {done.stderr.strip()}")
    short, subject = done.stdout.strip().split("\0", 1)
    return short, subject


def find_uv() -> str | None:
    """uv on PATH, or where scripts/bootstrap installs it (`pip --user`)."""
    local = Path.home() / ".local" / "bin" / "uv"
    return shutil.which("uv") or (str(local) if local.exists() else None)


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else "no output"


def _add_missing_console(root: Path) -> str:
    console = root / "src" / "anygate" / "console"
    if console.exists():
        return ""
    console.mkdir()
    return "src/anygate/console is not committed there, so an empty one was created"


def _sync(root: Path) -> str | None:
    """Make the worktree's own venv from its lock file; None when it worked, else why not."""
    uv = find_uv()
    if uv is None:
        return "uv not found on PATH or in ~/.local/bin"
    env = {name: value for name, value in os.environ.items() if name not in UV_FOREIGN_VARS}
    try:
        synced = subprocess.run(
            [uv, "sync", "--locked", "--quiet"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=SYNC_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"`uv sync --locked` did not finish within {SYNC_TIMEOUT} s"
    if synced.returncode != 0:
        return f"`uv sync --locked` exited {synced.returncode}: {_last_line(synced)}"
    return None


def _remove(root: Path) -> None:
    if _git("worktree", "remove", "--force", str(root)).returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
    _git("worktree", "prune")


def _build(short: str, subject: str, root: Path) -> Baseline:
    added = _git("worktree", "add", "--detach", str(root), short)
    if added.returncode != 0:
        return Baseline(short, subject, root, f"`git worktree add` failed: {_last_line(added)}")
    return Baseline(short, subject, root, _sync(root), _add_missing_console(root))


@contextlib.contextmanager
def checkout(rev: str, workdir: Path) -> Iterator[Baseline]:
    """Build `rev` in a worktree under `workdir` for the duration of the block."""
    short, subject = resolve(rev)
    root = workdir / f"baseline-{short}"
    try:
        yield _build(short, subject, root)
    finally:
        _remove(root)
