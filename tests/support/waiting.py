"""Waiting for background work (discovery, store sync, the ledger) without sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait until ``check()`` holds (work in another thread, worker or replica); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)
