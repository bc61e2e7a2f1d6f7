"""Reserve before dispatch, settle after: budgets and rate limits of every scope of a caller.

For each scope (the key, each key it was made from, its user, its team) the enforcer reserves, in this
order: one concurrency slot, one request of the minute, the minute's tokens, then, for each of the scope's
budgets (one per window), the window's tokens, USD and requests. Each bucket is reserved atomically by
the limiter, and the request is admitted only when every bucket of every scope admitted it: a refusal
anywhere releases what the others held, so no scope is ever charged for a request another refused. The
in-process limiter is asked bucket by bucket, without I/O; the others once for the whole request
(``reserve_all``: the SQL limiter's one transaction, Redis's one pipeline), and settle it in one call
(``settle_all``).
A rejection releases what was already reserved and raises ``RateLimited`` (rate limits) or
``QuotaExceeded`` (budgets) with ``Retry-After`` (a budget that never resets: ``NEVER_RESETS_RETRY_AFTER``).
A hard token budget with less left than asked, but more than the prompt, admits the request with its
output clamped to what is left (at least one token for each answer it asks for: ``Ask.outputs``).

Every counter reserved or refused leaves a ``Reading`` in the admission's ``Headroom``: the request's
``x-ratelimit-*`` headers (a refusal carries them too) and the budget gauges, without another limiter call.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from anygate.accounting.budgets import Scope
from anygate.accounting.headroom import UNIT_OF_COUNTER, Headroom, Reading, Window
from anygate.accounting.limiter import NOTHING_USED, Claim, Grant, Hold, Limiter, MemoryLimiter, Rejection, Settling
from anygate.accounting.periods import SLOTS, rolling_reset, seconds_until_reset, slot_width
from anygate.accounting.unsettled import Settlement, UnsettledQueue
from anygate.accounting.windows import LedgerWindow, bucket_name, ledger_window
from anygate.auth import Budget, Limits
from anygate.errors import GatewayError, QuotaExceeded, RateLimited

log = logging.getLogger("anygate.accounting")

RESERVATION_TTL = 900.0  # a request holding budget longer than this is presumed crashed
CLOCKS_DRIFT = 60.0  # how far this process's clock and a shared limiter's may run apart over RESERVATION_TTL
MINIMUM_USD = 1e-9  # a USD claim of an unknown price still needs a budget not yet spent
# Retry-After of a used-up budget that never resets: waiting frees nothing (an admin must raise it), and
# every 429 says when to come back.
NEVER_RESETS_RETRY_AFTER = 86400


@dataclass(slots=True)  # not frozen: made per request (docs/architecture.md, Hot path)
class Ask:
    """What a request may use: its prompt and the most it may generate (all ``outputs`` answers
    together); USD when a price is known."""

    prompt_tokens: int
    max_output_tokens: int
    usd: float | None = None
    usd_per_output_token: float | None = None  # lets a USD budget clamp max_tokens too
    counts_usd: bool = True  # False: paid with the caller's own key (BYOK), never held by a USD budget
    outputs: int = 1  # answers generated (n): a clamp leaves each at least one token

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.max_output_tokens

    @property
    def least_tokens(self) -> int:
        """The prompt and one token for each answer: less than that left is a refusal."""
        return self.prompt_tokens + min(self.outputs, self.max_output_tokens)

    @property
    def least_usd(self) -> float | None:
        """The cost of the prompt and one generated token per answer: less than that left is a refusal."""
        if self.usd is None or self.usd_per_output_token is None:
            return None
        return self.usd - max(0, self.max_output_tokens - self.outputs) * self.usd_per_output_token


@dataclass(slots=True)
class Admission:
    """The reservations of one admitted request; ``max_tokens`` (every answer's output together) set when
    a budget or rate limit clamped it."""

    grants: list[tuple[Grant, str]] = field(default_factory=list)  # (grant, what it counts)
    max_tokens: int | None = None
    settled: bool = False
    headroom: Headroom = field(default_factory=Headroom)  # what each counter had left: x-ratelimit-*
    reserved_at: float = float("-inf")  # time.monotonic() before a shared limiter was asked (settles may be retried)


def charges(grant: Grant, kind: str, tokens: int, usd: float | None) -> Mapping[str, float]:
    """What a request that used ``tokens`` (and ``usd``) is charged on one of its grants."""
    if kind == "concurrency":
        return NOTHING_USED  # a slot is only held, never used up
    actual: dict[str, float] = {}
    if kind == "minute" and "requests" in grant.amounts:
        actual["requests"] = 1.0
    if "tokens" in grant.amounts:
        actual["tokens"] = float(tokens)
    if kind == "budget" and "usd" in grant.amounts:
        actual["usd"] = usd or 0.0
    if kind == "budget" and "requests" in grant.amounts:
        actual["requests"] = 1.0 if tokens > 0 else 0.0  # a request that was answered (``windows``)
    return actual


def note_readings(
    headroom: Headroom,
    result: Grant | Rejection,
    claims: Sequence[Claim],
    window: Window,
    scope: Scope,
    resets_at: float | None,
) -> None:
    """What the limiter's decision on ``claims`` tells of each counter: every counter of a grant (when the
    limiter reports what is left), the refusing counter of a rejection and those checked before it."""
    readings, name = headroom.readings, scope.name
    if isinstance(result, Rejection):
        for claim in claims:
            unit = UNIT_OF_COUNTER.get(claim.counter)
            had = result.available if claim.counter == result.counter else result.left.get(claim.counter)
            if unit is not None and had is not None:
                readings.append(Reading(unit, claim.limit, had, 0.0, resets_at, window, name))
        return
    left_of, held_of = result.left, result.amounts
    for claim in claims:
        unit = UNIT_OF_COUNTER.get(claim.counter)
        left = left_of.get(claim.counter)
        if unit is not None and left is not None:
            readings.append(Reading(unit, claim.limit, left, held_of.get(claim.counter, 0.0), resets_at, window, name))


class RatePlan:
    """What a scope's rate limits make of every request, worked out once per scope: its concurrency step
    (the same for every request) and the names and refusals of its minute's counters."""

    __slots__ = ("scope", "limits", "concurrency", "requests", "minute_prefix", "_minute", "_minute_bucket")

    def __init__(self, scope: Scope, limits: Limits) -> None:
        self.scope, self.limits = scope, limits
        self.minute_prefix = f"{scope.name}:minute:"
        self.concurrency: Step | None = None
        if limits.concurrency is not None:
            hold = Hold(f"{scope.name}:concurrency", [Claim("inflight", limits.concurrency, 1)])
            self.concurrency = Step(hold, "concurrency", scope, None, self.too_many)
        # The same for every request (claims are never changed once made): made once.
        self.requests = None if limits.rpm is None else Claim("requests", limits.rpm, 1)
        self._minute, self._minute_bucket = -1.0, ""

    def steps(self, ask: Ask, now: float) -> list[Step]:
        steps = [] if self.concurrency is None else [self.concurrency]
        claims = [] if self.requests is None else [self.requests]
        if self.limits.tpm is not None:
            claims.append(Claim("tokens", self.limits.tpm, ask.tokens, ask.least_tokens))
        if claims:
            steps.append(self.minute_step(claims, now))
        return steps

    def request_steps(self, now: float) -> list[Step]:
        """The minute's requests counter alone (a request that asks for no tokens)."""
        return [] if self.requests is None else [self.minute_step([self.requests], now)]

    def minute_step(self, claims: list[Claim], now: float) -> Step:
        minute = now // 60
        if minute != self._minute:  # the bucket's name, once a minute
            self._minute, self._minute_bucket = minute, f"{self.minute_prefix}{int(minute)}"
        return Step(Hold(self._minute_bucket, claims, 120.0), "minute", self.scope, (minute + 1) * 60, self.per_minute)

    def too_many(self, _: Rejection, __: float | None) -> GatewayError:
        return RateLimited(
            f"Too many concurrent requests for {self.scope.described} (limit {self.limits.concurrency})",
            retry_after=1,
        )

    def per_minute(self, rejection: Rejection, _: float | None) -> GatewayError:
        unit = "requests" if rejection.counter == "requests" else "tokens"
        limit = self.limits.rpm if unit == "requests" else self.limits.tpm
        return RateLimited(
            f"Rate limit of {limit} {unit} per minute reached for {self.scope.described}",
            retry_after=60 - time.time() % 60,
        )


class RatePlans:
    """Each scope's ``RatePlan``, by the scope itself (the store makes a new one when a key or user changes,
    and the caller's scopes are memoised: the same objects request after request)."""

    LIMIT = 50_000  # plans kept: past that, the cache starts afresh

    def __init__(self) -> None:
        self._plans: dict[int, RatePlan] = {}

    def of(self, scope: Scope, limits: Limits) -> RatePlan:
        plan = self._plans.get(id(scope))
        if plan is None or plan.scope is not scope:  # an id is only reused once the scope is gone
            if len(self._plans) >= self.LIMIT:
                self._plans.clear()
            plan = self._plans[id(scope)] = RatePlan(scope, limits)
        return plan


class BudgetPlan:
    """What one budget makes of every request in its current window, worked out once a window: its bucket,
    its requests claim (the same for every request) and its refusal."""

    __slots__ = ("scope", "budget", "window", "requests")

    def __init__(self, scope: Scope, budget: Budget, window: BudgetWindow) -> None:
        self.scope, self.budget, self.window = scope, budget, window
        self.requests = None if budget.requests is None else Claim("requests", budget.requests, 1, hard=budget.is_hard)

    def step(self, ask: Ask, now: float) -> Step:
        budget, window, claims = self.budget, self.window, []
        if budget.tokens is not None:
            claims.append(Claim("tokens", budget.tokens, ask.tokens, ask.least_tokens, budget.is_hard))
        if budget.usd is not None and not ask.counts_usd:
            # Nothing held and never refused; a request that ends up paid by anygate's key is still charged.
            claims.append(Claim("usd", budget.usd, 0.0, hard=False))
        elif budget.usd is not None:
            least = ask.least_usd
            least = None if least is None else max(least, MINIMUM_USD)
            claims.append(Claim("usd", budget.usd, max(ask.usd or 0.0, MINIMUM_USD), least, budget.is_hard))
        if self.requests is not None:
            claims.append(self.requests)
        hold = Hold(window.bucket, claims, window.lifetime(now), window.seed_from, window.slot)
        return Step(hold, "budget", self.scope, window.resets_at, self.used_up)

    def used_up(self, rejection: Rejection, grows_in: float | None) -> GatewayError:
        what = {"tokens": "token", "usd": "USD", "requests": "request"}.get(rejection.counter, rejection.counter)
        period = "" if self.budget.period == "none" else f"{self.budget.period} "
        resets_at = self.window.resets_at
        if resets_at is None:
            retry_after: float = NEVER_RESETS_RETRY_AFTER
        else:
            retry_after = grows_in or max(0.0, resets_at - time.time())
        return QuotaExceeded(f"The {period}{what} budget of {self.scope.described} is used up", retry_after=retry_after)


@dataclass(frozen=True, slots=True)
class BudgetWindow:
    """One budget's window as it stands until ``resets_at`` (UNIX time): its bucket, the ledger rows it
    starts from, a rolling window's slot width, and when it resets (None: never). Worked out from the
    calendar once a window, not once a request (``BudgetWindows``)."""

    bucket: str
    seed_from: LedgerWindow
    slot: float | None
    resets_at: float | None

    def turned(self, now: float) -> bool:
        """Whether ``now`` is past this window: it has reset, and another one counts now."""
        return self.resets_at is not None and now >= self.resets_at

    def lifetime(self, now: float) -> float | None:
        """Seconds the bucket lives from ``now``: a calendar window's until an hour past its reset; a rolling
        one's while it is used, and two slots more; None: forever."""
        if self.slot is not None:
            return self.slot * (SLOTS + 2)
        return None if self.resets_at is None else self.resets_at - now + 3600


def budget_window(scope: Scope, budget: Budget, now: float) -> BudgetWindow:
    """The window of ``budget`` holding ``now``. A calendar window turns when it resets; a rolling window's
    bucket stays, but what it counts (and when it next grows) moves at every slot boundary."""
    moment = datetime.fromtimestamp(now, UTC)
    reset_in = seconds_until_reset(budget.period, moment)
    resets_at = None if reset_in is None else now + reset_in
    seed_from = ledger_window(scope.kind, scope.id, budget.period, moment)
    bucket = budget_bucket(scope, budget, moment)
    return BudgetWindow(bucket, seed_from, slot_width(budget.period), resets_at)


class BudgetWindows:
    """Each budget's current window, kept until it turns: a request's budget steps then cost no calendar
    arithmetic. Keyed by scope and period (a scope has at most one budget per window), each held in its
    ``BudgetPlan``: made again when the window turns, or with the same window when the budget changes."""

    LIMIT = 50_000  # windows kept: past that (as many budgets in use at once), the cache starts afresh

    def __init__(self) -> None:
        self._plans: dict[tuple[str, str, str], BudgetPlan] = {}

    def plan(self, scope: Scope, budget: Budget, now: float) -> BudgetPlan:
        key = (scope.kind, scope.id, budget.period)
        plan = self._plans.get(key)
        current = plan is not None and not plan.window.turned(now)
        if plan is not None and current and plan.budget is budget and plan.scope is scope:
            return plan
        window = plan.window if plan is not None and current else budget_window(scope, budget, now)
        if len(self._plans) >= self.LIMIT:
            self._plans.clear()
        plan = self._plans[key] = BudgetPlan(scope, budget, window)
        return plan

    def current(self, scope: Scope, budget: Budget, now: float) -> BudgetWindow:
        return self.plan(scope, budget, now).window


def budget_bucket(scope: Scope, budget: Budget, now: datetime) -> str:
    return bucket_name(scope.kind, scope.id, budget.period, now)


@dataclass(slots=True)  # not frozen: made per request (docs/architecture.md, Hot path)
class Step:
    """One bucket of a request's admission: what it holds, what it counts (``concurrency``, ``minute`` or
    ``budget``), and the refusal it raises."""

    hold: Hold
    kind: str
    scope: Scope
    resets_at: float | None
    refusal: Callable[[Rejection, float | None], GatewayError]  # and the seconds until headroom grows, if known


class Enforcer:
    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        # The in-process limiter decides without I/O: called directly, not through a coroutine each time.
        self._memory = limiter if isinstance(limiter, MemoryLimiter) else None
        self.unsettled = UnsettledQueue()  # what the limiter could not settle yet
        self.windows = BudgetWindows()
        self.rates = RatePlans()

    async def admit(self, scopes: Sequence[Scope], ask: Ask) -> Admission:
        return await self._admit(self.steps(scopes, ask), ask)

    async def count_request(self, scopes: Sequence[Scope]) -> None:
        """Count one request that uses no tokens and spends nothing (a key making, changing or revoking
        keys) against every scope's requests-per-minute limit: refused with RateLimited past it."""
        now, ask = time.time(), Ask(0, 0)
        steps = [
            step
            for scope in scopes
            if scope.limits is not None and scope.limits.rpm is not None
            for step in self.rates.of(scope, scope.limits).request_steps(now)
        ]
        if steps:
            await self.settle(await self._admit(steps, ask), 0, None)

    async def _admit(self, steps: list[Step], ask: Ask) -> Admission:
        admission = Admission()
        try:
            if self._memory is not None:
                await self._admit_in_memory(self._memory, admission, steps, ask)
            elif steps:  # one call for the whole request: the SQL limiter makes it one transaction
                admission.reserved_at = time.monotonic()
                decisions = await self.limiter.reserve_all([step.hold for step in steps], RESERVATION_TTL)
                for step, decision in zip(steps, decisions, strict=False):
                    self._note(admission, step, decision)
                if isinstance(decisions[-1], Rejection):  # nothing of the request is held
                    raise await self._refusal(steps[len(decisions) - 1], decisions[-1])
                for step, decision in zip(steps, decisions, strict=True):
                    assert isinstance(decision, Grant)
                    self._take(admission, step, decision, ask)
        except BaseException as failure:
            await self.release(admission)
            if isinstance(failure, RateLimited):  # what was held is given back: the headers say so
                admission.headroom.given_back = True
                failure.headers.update(admission.headroom.error_headers())
            raise
        return admission

    async def _admit_in_memory(self, memory: MemoryLimiter, admission: Admission, steps: list[Step], ask: Ask) -> None:
        """``_admit`` with the in-process limiter: bucket by bucket, each decided without a coroutine once
        seeded (no I/O in the decision)."""
        for step in steps:
            hold = step.hold
            if memory.needs_seed(hold.bucket, hold.seed_from):
                decision = await memory.reserve(
                    hold.bucket, hold.claims, RESERVATION_TTL, hold.window, hold.seed_from, hold.slot
                )
            else:
                decision = memory.reserve_now(hold.bucket, hold.claims, RESERVATION_TTL, hold.window, hold.slot)
            self._note(admission, step, decision)
            if isinstance(decision, Rejection):
                raise await self._refusal(step, decision)
            self._take(admission, step, decision, ask)

    async def _refusal(self, step: Step, rejection: Rejection) -> GatewayError:
        """The error refusing the request; a rolling window's says when its oldest usage leaves it (one more
        limiter call, on a refusal only)."""
        grows_in = None
        if step.hold.slot is not None:
            oldest = await self.limiter.oldest_slot(step.hold.bucket)
            if oldest is not None:
                grows_in = max(1.0, rolling_reset(step.hold.slot, oldest) - time.time())
        return step.refusal(rejection, grows_in)

    def _take(self, admission: Admission, step: Step, decision: Grant, ask: Ask) -> None:
        """Keep a bucket's grant (and clamp the output to it)."""
        admission.grants.append((decision, step.kind))
        if step.kind != "concurrency":
            self._clamp(admission, decision, ask)

    @staticmethod
    def _note(admission: Admission, step: Step, decision: Grant | Rejection) -> None:
        if step.kind != "concurrency":
            counted: Window = "minute" if step.kind == "minute" else "budget"
            note_readings(admission.headroom, decision, step.hold.claims, counted, step.scope, step.resets_at)

    def steps(self, scopes: Sequence[Scope], ask: Ask) -> list[Step]:
        """Every bucket of the request, in order: each scope's rate limits, then each scope's budgets."""
        now = time.time()
        steps = [
            step
            for scope in scopes
            if scope.limits is not None
            for step in self.rates.of(scope, scope.limits).steps(ask, now)
        ]
        windows = self.windows
        steps += [windows.plan(scope, budget, now).step(ask, now) for scope in scopes for budget in scope.all_budgets]
        return steps

    @staticmethod
    def _clamp(admission: Admission, grant: Grant, ask: Ask) -> None:
        allowed: int | None = None
        least = max(1, ask.outputs)
        granted = grant.amounts.get("tokens")
        if granted is not None and granted < ask.tokens:
            allowed = max(least, math.floor(granted) - ask.prompt_tokens)
        dollars = grant.amounts.get("usd")
        if dollars is not None and ask.usd is not None and ask.usd_per_output_token and dollars < ask.usd:
            spare = dollars - (ask.usd - ask.max_output_tokens * ask.usd_per_output_token)
            by_cost = max(least, math.floor(spare / ask.usd_per_output_token + 1e-9))
            allowed = by_cost if allowed is None else min(allowed, by_cost)
        if allowed is not None:
            admission.max_tokens = allowed if admission.max_tokens is None else min(admission.max_tokens, allowed)

    async def settle(self, admission: Admission, tokens: int, usd: float | None) -> bool:
        """Charge what the request used (tokens in + out, USD when priced) and free the rest.

        Grants the limiter cannot settle now (its backend is unavailable) wait in ``unsettled`` to be
        retried; False when they did."""
        if admission.settled:
            return True
        admission.settled = True
        if self._memory is not None:  # directly: no coroutine
            for grant, kind in admission.grants:
                self._memory.settle_now(grant, charges(grant, kind, tokens, usd))
            return True
        settlements = [(grant, charges(grant, kind, tokens, usd)) for grant, kind in admission.grants]
        return self._wait(admission, await self.limiter.settle_all(settlements))

    async def release(self, admission: Admission) -> None:
        """Give everything back: the request never reached an upstream."""
        if admission.settled:
            return
        admission.settled = True
        self._wait(admission, await self.limiter.settle_all([(grant, {}) for grant, _ in admission.grants]))

    def _wait(self, admission: Admission, failed: Sequence[Settling]) -> bool:
        """Queue what the limiter could not settle, to be retried; False when anything was."""
        if not failed:
            return True
        # Till then a reservation gone can only have been settled (its expiry is counted from later, on a
        # clock of the limiter's own: a margin for the two clocks' drift).
        held_until = admission.reserved_at + RESERVATION_TTL - CLOCKS_DRIFT
        self.unsettled.add(Settlement(grant, actual, held_until) for grant, actual in failed)
        log.warning(
            "budget counters unavailable at settle; retried in the background",
            extra={"fields": {"buckets": sorted({grant.bucket for grant, _ in failed})}},
        )
        return False
