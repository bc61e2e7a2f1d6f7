"""Settlements the limiter could not apply, kept and retried until it can: no usage is forgotten.

A request's usage reaches the ledger whatever happens to the counters: its row is recorded before it
settles. When settling fails (Redis or the database unavailable), the settlement waits here and the
accounting's background task applies it once the backend answers again, after the ledger's rows are
written. A bucket this process rebuilds from the ledger in the meantime (Redis came back empty) already
counts those requests, their rows having been written first: their settlements on it are dropped, so
this process never counts a request twice.

A settlement that failed may still have been applied (the backend ran it, and its answer was lost on the
way back). So a retry charges only if the reservation is still held (``if_held``), for as long as that
tells: until the reservation could have expired (``held_until``), when a reservation gone can only have been
settled, or counted by a bucket rebuilt from the ledger (by this process or another replica). After that a
reservation gone may also have been reclaimed, its request still to be charged: the retry charges. (A bucket
rebuilt by another replica before this process's ledger row was written misses the request: rare, and an
under-count the ledger still holds.)

The queue is bounded: past ``limit`` the oldest settlement is dropped and logged (its bucket then counts
less than the ledger until the bucket is rebuilt or its window ends).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from anygate.accounting.backend_errors import counters_errors
from anygate.accounting.limiter import NOTHING_USED, Grant, Limiter

log = logging.getLogger("anygate.accounting")

UNSETTLED_LIMIT = 100_000


def limiter_errors() -> tuple[type[Exception], ...]:
    """What a limiter raises when its backend cannot answer (evaluated when one is caught)."""
    return counters_errors(OSError)


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one grant of a finished request is charged (empty: released)."""

    grant: Grant
    actual: Mapping[str, float]
    held_until: float = float("-inf")  # time.monotonic(): till then a reservation gone was settled already


class UnsettledQueue:
    def __init__(self, limit: int = UNSETTLED_LIMIT) -> None:
        self._waiting: deque[Settlement] = deque()
        self._limit = limit

    def __len__(self) -> int:
        return len(self._waiting)

    def __repr__(self) -> str:
        return f"UnsettledQueue(waiting={len(self._waiting)})"

    def add(self, settlements: Iterable[Settlement]) -> None:
        for settlement in settlements:
            if len(self._waiting) >= self._limit:
                lost = self._waiting.popleft()
                log.error(
                    "too many unsettled requests: the oldest settlement is dropped (the ledger has its usage)",
                    extra={"fields": {"bucket": lost.grant.bucket, "waiting": len(self._waiting)}},
                )
            self._waiting.append(settlement)

    def release_later(self, grants: Iterable[Grant]) -> None:
        """Reservations to give back once the backend answers (a request gone, an answer lost): settled
        with nothing used, whether or not they are still held."""
        self.add(Settlement(grant, NOTHING_USED) for grant in grants)

    def forget_bucket(self, bucket: str) -> None:
        """The bucket was rebuilt from the ledger by this process, its rows written first: it counts them."""
        if any(s.grant.bucket == bucket for s in self._waiting):
            self._waiting = deque(s for s in self._waiting if s.grant.bucket != bucket)

    async def retry(self, limiter: Limiter) -> int:
        """Apply what waits, oldest first, until the backend fails again; return how many were applied."""
        applied = 0
        while self._waiting:
            settlement = self._waiting[0]
            try:
                if_held = time.monotonic() < settlement.held_until
                await limiter.settle(settlement.grant, settlement.actual, if_held)
            except limiter_errors():
                return applied
            if self._waiting and self._waiting[0] is settlement:
                self._waiting.popleft()
            elif settlement in self._waiting:  # the queue changed while it settled
                self._waiting.remove(settlement)
            applied += 1
        return applied
