"""The dispatch loop: one request's attempts over its deployments, with retries, backoff and fallbacks.

A request comes with its deployment groups (``planning.Planner``): the model's own deployments, then each
fallback's. Groups are tried in order. Within a group the loop makes rounds (one plus the largest
``max_retries`` of its providers); each round tries the deployments the health book offers
(``routing.HealthBook.choose``), each at most once; between rounds it waits a full-jitter backoff, or
until a rate-limited deployment may be asked again. What bounds it all:

- ``routing.max_attempts`` attempts per group, so that a failing group does not starve the fallbacks;
- one deadline for the whole request (``routing.retry_deadline`` or the admin's ``x-anygate-timeout``),
  which also caps each attempt's connect and first-byte waits;
- the process's retry budget, which every attempt but a request's first must draw from;
- nothing is retried once the response has started (``Exchange.has_answered``).

The loop does no I/O of its own: an attempt is a function the edge gives it (send to this deployment and
relay the answer). The clock is the health book's, and the sleep and the randomness are injected, so
tests drive it with a fake clock and no real waits (a fake sleep must move the fake clock on).

An attempt made with the caller's own provider key (``Exchange.byok``) changes nothing in the shared
health: its failure says nothing about the operator's key, and its rate limit is its own (the next
round waits for the upstream's ``Retry-After`` itself).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from anygate.errors import AllDeploymentsFailed, GatewayError
from anygate.exchange import Exchange
from anygate.routing import Action, Deployment, HealthBook, classify, retry_after_seconds
from anygate.settings import RoutingSettings

NO_DEPLOYMENT = "No deployment could serve this request"
BACKOFF_BASE = 0.25
BACKOFF_CAP = 8.0

# Send the request to one deployment before ``deadline`` (a clock time) and relay its answer; raise the
# failure (a GatewayError) when it had none.
Attempt = Callable[[Deployment, float], Awaitable[None]]
FailureObserver = Callable[[str, GatewayError], None]


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    max_attempts: int = 6
    retry_deadline: float = 120.0
    max_retry_after_wait: float = 10.0
    ordered: bool = False

    @classmethod
    def from_settings(cls, routing: RoutingSettings) -> DispatchPolicy:
        return cls(
            routing.max_attempts, routing.retry_deadline, routing.max_retry_after_wait, routing.strategy == "ordered"
        )


def ignore_failure(provider_id: str, error: GatewayError) -> None:
    return None


class Dispatcher:
    """One per app. ``rounds_of(deployment)`` is 1 + its provider's ``max_retries``; ``on_failure`` hears of
    every failed attempt (for the metrics)."""

    def __init__(
        self,
        book: HealthBook,
        policy: DispatchPolicy,
        rounds_of: Callable[[Deployment], int],
        *,
        on_failure: FailureObserver = ignore_failure,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.book = book
        self.policy = policy
        self._rounds_of = rounds_of
        self._on_failure = on_failure
        self.clock = book.now
        self._sleep = sleep
        self._rng = rng or random.Random()

    def deadline(self, timeout: float | None) -> float:
        """The clock time by which the request must be answered."""
        return self.clock() + (timeout or self.policy.retry_deadline)

    async def dispatch(
        self, exchange: Exchange, groups: Sequence[Sequence[Deployment]], attempt: Attempt, deadline: float
    ) -> None:
        """Try the groups in order until a deployment answers; raise the failure to report when none does."""
        self.book.retry_budget.deposit()
        last_error: GatewayError | None = None
        for index, group in enumerate(groups):
            exchange.group = index
            last_error = await self._try_group(exchange, list(group), attempt, deadline, last_error)
            if last_error is None:
                return
        raise_last(last_error)

    async def _try_group(
        self,
        exchange: Exchange,
        group: list[Deployment],
        attempt: Attempt,
        deadline: float,
        last_error: GatewayError | None,
    ) -> GatewayError | None:
        """Rounds over one group. None once a deployment has answered; else the failure to report if no later
        group does better. Raises what must be answered now (not retryable, out of time or retry budget)."""
        rounds = max(self._rounds_of(d) for d in group)
        attempts = 0
        failed: Deployment | None = None  # the deployment that failed last; the next one follows it in order
        for round_number in range(rounds):
            tried: set[str] = set()
            while attempts < self.policy.max_attempts and (
                deployment := self.book.choose(group, tried, failed, self.policy.ordered)
            ):
                self._check_budgets(exchange, deadline, last_error)
                tried.add(deployment.id)
                attempts += 1
                try:
                    await self._attempt(exchange, deployment, group, attempt, deadline)
                    return None
                except GatewayError as error:
                    self._record_failure(exchange, deployment, error, group)
                    last_error, failed = error, deployment
            if failed is None:  # nothing could be tried: every deployment of the group is cooling down
                return self.book.cooldown_failure(group) or last_error or AllDeploymentsFailed(NO_DEPLOYMENT)
            if attempts >= self.policy.max_attempts or round_number + 1 == rounds:
                break
            if not await self._pause_between_rounds(last_error, group, deadline, round_number, exchange.byok):
                break
        return last_error

    async def _attempt(
        self, exchange: Exchange, deployment: Deployment, group: list[Deployment], attempt: Attempt, deadline: float
    ) -> None:
        exchange.attempts += 1
        self.book.started(deployment)
        try:
            await attempt(deployment, deadline)
        finally:
            self.book.finished(deployment)
        broken = exchange.broken_by_upstream
        if broken is not None:
            self._on_failure(deployment.provider_id, broken)
        if exchange.byok:
            return  # an attempt with the caller's own key changes nothing in the shared health
        if broken is not None:
            # The stream started, so nothing can be retried; but the upstream failed, and its health says so.
            self.book.record_failure(deployment, broken, group)
        else:
            self.book.record_success(deployment)

    def _check_budgets(self, exchange: Exchange, deadline: float, last_error: GatewayError | None) -> None:
        """Before any attempt but the request's first: stop, with the last failure, when the request is out
        of time or the process's retry budget is empty."""
        if exchange.attempts == 0:
            return
        if self.clock() >= deadline or not self.book.retry_budget.try_spend():
            raise_last(last_error)

    def _record_failure(
        self, exchange: Exchange, deployment: Deployment, error: GatewayError, group: list[Deployment]
    ) -> None:
        """Count a failed attempt; raise it when it must be the answer (not retryable, or the response has
        started); else remember it in the deployment's health."""
        self._on_failure(deployment.provider_id, error)
        action = classify(error)
        if exchange.has_answered or action is Action.FAIL:
            raise error
        if not exchange.byok:  # the caller's own key failing says nothing about the shared deployment
            self.book.record_failure(deployment, error, group)
        if action is Action.NEXT_AFTER and "retry-after" not in error.headers:
            # No Retry-After from the upstream: tell the client how long this deployment cools down.
            error.headers["retry-after"] = str(max(1, math.ceil(self.book.cooldown_left([deployment]))))

    async def _pause_between_rounds(
        self, error: GatewayError | None, group: list[Deployment], deadline: float, round_number: int, own_key: bool
    ) -> bool:
        """Wait before the next round: a full-jitter backoff, or until a rate-limited deployment may be asked
        again (the upstream's Retry-After, else a backoff of its own). False when there is no point: a
        credential failure, a wait longer than ``max_retry_after_wait``, or past the deadline. ``own_key``:
        the failure was the caller's own key's, whose rate limit no cooldown remembers."""
        if error is None:
            return False
        action = classify(error)
        if action is Action.NEXT:
            return False
        wait = self._backoff(round_number)
        if action is Action.NEXT_AFTER:
            cooling = (retry_after_seconds(error) or 0.0) if own_key else self.book.cooldown_left(group)
            wait = max(wait, cooling)
            if wait > self.policy.max_retry_after_wait:
                return False
        until = self.clock() + wait
        if until >= deadline:
            return False
        await self._sleep_until(until)
        return True

    async def _sleep_until(self, until: float) -> None:
        """Sleep until the clock reads ``until``: a sleep may wake a little early, and a wait for a cooldown
        must not end before the cooldown has."""
        while (left := until - self.clock()) > 0:
            await self._sleep(left)

    def _backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff."""
        return self._rng.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * (2**attempt)))


def raise_last(error: GatewayError | None) -> NoReturn:
    if error is None:
        raise AllDeploymentsFailed(NO_DEPLOYMENT)
    raise error
