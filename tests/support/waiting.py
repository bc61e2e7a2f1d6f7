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


def clear_of_a_minute_boundary(seconds_needed: float = 5.0) -> None:
    """Rate limits count requests in calendar minutes: a test whose requests must share one minute starts
    in the next one when fewer than ``seconds_needed`` are left of this one (a wait, not a measured time)."""
    left = 60 - time.time() % 60
    if left < seconds_needed:
        time.sleep(left + 0.5)
