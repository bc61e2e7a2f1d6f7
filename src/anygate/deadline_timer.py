"""One timer for the deadlines of a connection, shared by the requests or exchanges it carries.

Making and cancelling a timer costs ~2 µs on uvloop, and a request would make several (its headers, its
body, the keep-alive wait after it; the upstream's first byte and reads). A ``DeadlineTimer`` is moved
only when a deadline must be met sooner than it fires. When it fires early, its owner checks what is due
and sets it again (``fire_by``) for what is not yet; when nothing is due, it stays unset.

The callback is held by the scheduled call alone: cancelled, nothing of the owner is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class DeadlineTimer:
    __slots__ = ("_loop", "_handle", "_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._at = 0.0  # when ``_handle`` fires

    def __repr__(self) -> str:
        return f"DeadlineTimer(set={self._handle is not None})"

    @property
    def is_set(self) -> bool:
        return self._handle is not None

    def fire_by(self, when: float, callback: Callable[[], object]) -> None:
        """Have ``callback`` called by ``when``: a timer set to fire sooner already does."""
        if self._handle is None or when < self._at:
            self.fire_at(when, callback)

    def fire_at(self, when: float, callback: Callable[[], object]) -> None:
        """Have ``callback`` called at ``when``: a timer set for another time is moved."""
        if self._handle is not None:
            self._handle.cancel()
        self._at = when
        self._handle = self._loop.call_at(when, callback)

    def fired(self) -> None:
        """The callback's first step: the timer is no longer set."""
        self._handle = None

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
