"""Files anygate makes for itself are private to the user it runs as: directories 0700, files 0600.

Only what anygate creates is given these modes; an existing directory or file keeps the mode it has.
"""

from __future__ import annotations

import os
from pathlib import Path


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) with mode 0700 where it does not exist yet."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)


def create_private_file(path: Path) -> None:
    """Create an empty ``path`` with mode 0600 unless it exists (SQLite then gives its -wal and -shm
    files the database file's mode)."""
    make_private_dir(path.parent)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(descriptor)
