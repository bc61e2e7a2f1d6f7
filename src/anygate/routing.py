"""Deployments, their health, and the choice of the next one to try.

A *deployment* is one way to serve a model: a provider, the upstream model id, and one of the provider's
keys. A request's deployments come from model resolution (all providers serving the model, in configured
order) and then from its fallback chain, tier by tier (``priority``, lower first; the preferred provider's
deployments, for a bare name several providers serve, are a tier ahead of every other: ``Deployment.tier``).
Within a tier the first choice depends on the strategy: ``balanced`` draws two deployments by weight and
takes the one with fewer requests in flight per unit of weight; ``ordered`` takes the first in configured
order. After a failure, the next deployment tried is the one after it in configured order, whatever the
strategy.

Health is passive (consecutive failures eject a deployment for a backoff that grows; never more than
``MAX_EJECTED_SHARE`` of a group at once) and active (the background checks of ``/models`` feed
``record_check``: a failed check ejects under the same rule, a passing one restores).

Health is about the deployment and the operator's key, shared by every tenant, so only what says
something about them changes it:

    failure of an attempt                 this request                  the shared deployment
    401 (the operator's key refused)      next deployment               the key cools down (every model)
    429                                   next, or this after a wait    the model cools down (Retry-After)
    5xx, 408, timeout, connection         backoff and retry             counts towards ejection
    402, 403                              next deployment               nothing: the request may have caused it
    other 4xx                             answered as is                nothing
    any, made with the caller's own key   as above                      nothing (the relay records none)

A 402 or 403 is often the request's own doing (``max_tokens`` beyond the credits left, a model the key
may not use) and an attempt with a caller's own key (bring your own key) says nothing about the
operator's key: neither may take a deployment away from the other tenants.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from anygate.errors import GatewayError, UpstreamStatusError, UpstreamTimeout

EJECT_AFTER_FAILURES = 3
EJECT_BASE_SECONDS = 5.0
EJECT_MAX_SECONDS = 300.0
MAX_EJECTED_SHARE = 0.5
CREDENTIAL_COOLDOWN_SECONDS = 60.0
# A 429 without Retry-After: the deployment cools down for a backoff that doubles with each 429 in a row.
RATE_LIMIT_BASE_SECONDS = 0.5
RATE_LIMIT_MAX_SECONDS = 30.0
# Backoffs double up to their cap and stay there: the exponent is bounded too (2.0 ** 1024 overflows, and a
# long outage ejects a deployment that many times).
MAX_DOUBLINGS = 32


def deployment_id(provider_id: str, key_index: int) -> str:
    return f"{provider_id}#{key_index}"


@dataclass(frozen=True, slots=True)
class Deployment:
    """``preferred``: a deployment of the preferred provider for a bare name several providers serve; it
    is in a tier ahead of every ``priority`` (``tier``), so the others serve only as its fallbacks."""

    provider_id: str
    model: str
    key_index: int = 0
    weight: float = 1.0
    priority: int = 0
    preferred: bool = False
    id: str = field(init=False, compare=False)
    tier: tuple[bool, int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", deployment_id(self.provider_id, self.key_index))
        object.__setattr__(self, "tier", (not self.preferred, self.priority))

    def __repr__(self) -> str:
        where = f"{self.provider_id}/{self.model} key={self.key_index}"
        preferred = " preferred" if self.preferred else ""
        return f"Deployment({where} w={self.weight} p={self.priority}{preferred})"


class Action(Enum):
    """What to do after a failed attempt."""

    FAIL = "fail"  # not retryable: answer the client with this error
    NEXT = "next"  # move to another deployment at once (credential failure)
    NEXT_AFTER = "next_after"  # rate limited: another deployment, or this one after Retry-After
    BACKOFF = "backoff"  # transient: retry with full-jitter exponential backoff


def classify(error: GatewayError) -> Action:
    if isinstance(error, UpstreamStatusError):
        status = error.status
        if status in (401, 402, 403):
            return Action.NEXT
        if status == 429:
            return Action.NEXT_AFTER
        if status >= 500 or status == 408:
            return Action.BACKOFF
        return Action.FAIL
    if isinstance(error, UpstreamTimeout) or error.retryable:
        return Action.BACKOFF
    return Action.FAIL


def rate_limit_backoff(strikes: int, rng: random.Random) -> float:
    """How long a deployment that answered ``strikes`` 429s in a row without Retry-After cools down:
    between half and all of an exponential step (never near zero, so that other requests do not rush in)."""
    step = min(RATE_LIMIT_MAX_SECONDS, RATE_LIMIT_BASE_SECONDS * 2.0 ** min(strikes - 1, MAX_DOUBLINGS))
    return rng.uniform(step / 2, step)


def ejection_backoff(ejections: int) -> float:
    return min(EJECT_MAX_SECONDS, EJECT_BASE_SECONDS * 2.0 ** min(ejections - 1, MAX_DOUBLINGS))


def retry_after_seconds(error: GatewayError) -> float | None:
    raw = error.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


@dataclass
class DeploymentHealth:
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    outstanding: int = 0
    last_error: str | None = None

    def available(self, now: float) -> bool:
        return now >= self.ejected_until


@dataclass(frozen=True, slots=True)
class Cooldown:
    """A deployment (or one of its models) refused for a while, and the failure that caused it."""

    until: float
    failure: GatewayError
    strikes: int = 1  # 429s in a row without Retry-After


@dataclass
class RetryBudget:
    """Retries may add at most ``ratio`` of recent requests (plus a small floor) to the load.

    A token bucket: each request deposits ``ratio`` tokens, each retry spends one. During an outage
    retries stop multiplying the load once the bucket is empty.
    """

    ratio: float = 0.2
    floor_per_second: float = 5.0
    capacity: float = 100.0
    tokens: float = 10.0
    updated: float = field(default_factory=time.monotonic)

    def deposit(self) -> None:
        self._refill()
        self.tokens = min(self.capacity, self.tokens + self.ratio)

    def try_spend(self) -> bool:
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.floor_per_second)
        self.updated = now


class HealthBook:
    """Health of every deployment in this process; read and written on the request path (no I/O)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self._health: dict[str, DeploymentHealth] = {}
        # A 401 cools the key down for every model; a 429 only the model it answered for.
        self._cooldowns: dict[str, Cooldown] = {}
        self.retry_budget = RetryBudget()

    def now(self) -> float:
        """The time cooldowns and ejections are measured in."""
        return self._clock()

    def health(self, deployment_id: str) -> DeploymentHealth:
        state = self._health.get(deployment_id)
        if state is None:
            state = self._health[deployment_id] = DeploymentHealth()
        return state

    def provider_health(self, provider_id: str) -> dict[str, object]:
        """A summary for ``/v1/providers`` and ``/health/ready``."""
        now = self._clock()
        states = [s for d, s in self._health.items() if d.partition("#")[0] == provider_id]
        return {
            "ejected": any(now < s.ejected_until for s in states),
            "cooling_down": any(
                c.until > now for k, c in self._cooldowns.items() if k.partition("#")[0] == provider_id
            ),
            "consecutive_failures": max((s.consecutive_failures for s in states), default=0),
            "in_flight": sum(s.outstanding for s in states),
        }

    # ------------------------------------------------------------------------------ choosing

    def choose(
        self, candidates: list[Deployment], tried: set[str], after: Deployment | None = None, ordered: bool = False
    ) -> Deployment | None:
        """The next deployment: untried and available first, in the best priority tier that has one.

        ``after`` is the deployment that failed last: the next one follows it in configured order.
        Otherwise ``ordered`` takes the first in configured order, and the balanced strategy draws.
        """
        now = self._clock()
        if len(candidates) == 1 and not tried and not self._cooldowns and self.health(candidates[0].id).available(now):
            return candidates[0]  # the common case: one deployment, nothing tried yet
        fresh = [d for d in candidates if d.id not in tried and not self.cooling_down(d, now)]
        available = [d for d in fresh if self.health(d.id).available(now)]
        pool = available or self._least_recently_failed(fresh, now)
        if not pool:
            return None
        best_tier = min(d.tier for d in pool)
        tier = [d for d in pool if d.tier == best_tier]
        if after is not None:
            return next_in_order(candidates, tier, after)
        if ordered or len(tier) == 1:
            return tier[0]
        return self._two_choices(tier)

    def _least_recently_failed(self, fresh: list[Deployment], now: float) -> list[Deployment]:
        # Every untried deployment is ejected: rather than fail, try the one that comes back soonest.
        if not fresh:
            return []
        return [min(fresh, key=lambda d: self.health(d.id).ejected_until)]

    def cooling_down(self, deployment: Deployment, now: float | None = None) -> bool:
        if not self._cooldowns:
            return False
        now = self._clock() if now is None else now
        return any(
            cooldown.until > now
            for key in (deployment.id, f"{deployment.id}/{deployment.model}")
            if (cooldown := self._cooldowns.get(key)) is not None
        )

    def cooldown_failure(self, group: list[Deployment]) -> GatewayError | None:
        """When every deployment of a group is cooling down: the failure that will end soonest."""
        now = self._clock()
        found: list[Cooldown] = []
        for deployment in group:
            keys = (deployment.id, f"{deployment.id}/{deployment.model}")
            active = [c for k in keys if (c := self._cooldowns.get(k)) is not None and c.until > now]
            if not active:
                return None
            found.append(max(active, key=lambda c: c.until))
        if not found:
            return None
        soonest = min(found, key=lambda c: c.until)
        failure = soonest.failure.fresh_copy()  # each request adds its own headers to its copy
        if classify(failure) is Action.NEXT_AFTER:
            failure.headers["retry-after"] = str(max(1, round(soonest.until - now)))
        return failure

    def cooldown_left(self, group: list[Deployment]) -> float:
        """Seconds until some deployment of the group is no longer cooling down (0: one is not)."""
        if not self._cooldowns:
            return 0.0
        now = self._clock()
        left = []
        for deployment in group:
            keys = (deployment.id, f"{deployment.id}/{deployment.model}")
            ends = [c.until for k in keys if (c := self._cooldowns.get(k)) is not None and c.until > now]
            left.append(max(ends) - now if ends else 0.0)
        return min(left, default=0.0)

    def _two_choices(self, tier: list[Deployment]) -> Deployment:
        """Two distinct deployments drawn by weight; the one with fewer requests in flight per unit of
        weight wins, the first drawn on a tie."""
        first = self._rng.choices(tier, weights=[d.weight for d in tier])[0]
        others = [d for d in tier if d is not first]
        second = self._rng.choices(others, weights=[d.weight for d in others])[0]
        load_first = self.health(first.id).outstanding / first.weight
        load_second = self.health(second.id).outstanding / second.weight
        return first if load_first <= load_second else second

    # ------------------------------------------------------------------------------ outcomes

    def started(self, deployment: Deployment) -> None:
        self.health(deployment.id).outstanding += 1

    def finished(self, deployment: Deployment) -> None:
        state = self.health(deployment.id)
        state.outstanding = max(0, state.outstanding - 1)

    def record_success(self, deployment: Deployment) -> None:
        if self._cooldowns:
            self._forget_expired_cooldowns()
        state = self.health(deployment.id)
        state.consecutive_failures = 0
        state.ejections = 0
        state.ejected_until = 0.0
        state.last_error = None

    def record_failure(self, deployment: Deployment, error: GatewayError, group: list[Deployment]) -> None:
        """A failed attempt made with the operator's key (see the module docstring for what changes)."""
        state = self.health(deployment.id)
        state.last_error = error.code
        action = classify(error)
        now = self._clock()
        if action is Action.NEXT:
            if isinstance(error, UpstreamStatusError) and error.status == 401:  # 402/403: nothing shared
                self._cooldowns[deployment.id] = Cooldown(now + CREDENTIAL_COOLDOWN_SECONDS, error)
        elif action is Action.NEXT_AFTER:
            self._cool_down_rate_limited(deployment, error, now)
        elif action is Action.BACKOFF:
            state.consecutive_failures += 1
            if state.consecutive_failures >= EJECT_AFTER_FAILURES and self._may_eject([deployment.id], group, now):
                self._eject(state, now)

    def _cool_down_rate_limited(self, deployment: Deployment, error: GatewayError, now: float) -> None:
        key = f"{deployment.id}/{deployment.model}"
        wait = retry_after_seconds(error)
        strikes = 1
        if wait is None:
            previous = self._cooldowns.get(key)
            strikes = previous.strikes + 1 if previous is not None else 1
            wait = rate_limit_backoff(strikes, self._rng)
        self._cooldowns[key] = Cooldown(now + wait, error, strikes)

    @staticmethod
    def _eject(state: DeploymentHealth, now: float, at_least: float = 0.0) -> None:
        state.ejections += 1
        state.ejected_until = now + max(at_least, ejection_backoff(state.ejections))

    def record_check(self, deployment_ids: list[str], healthy: bool, group: list[str], hold: float = 0.0) -> None:
        """An active health check's verdict for every deployment of one provider.

        Passing restores them at once. Failing ejects them (for at least ``hold`` seconds, the time until
        the next check) when that leaves at most ``MAX_EJECTED_SHARE`` of ``group`` ejected: the
        deployments of every provider that serves one of the same models.
        """
        now = self._clock()
        states = [self.health(d) for d in deployment_ids]
        if healthy:
            for state in states:
                state.ejected_until = min(state.ejected_until, now)
                state.consecutive_failures = 0
                state.ejections = 0
            return
        if states and self._may_eject(deployment_ids, group, now):
            for state in states:
                self._eject(state, now, hold)

    def _forget_expired_cooldowns(self) -> None:
        now = self._clock()
        for key in [k for k, c in self._cooldowns.items() if c.until <= now]:
            del self._cooldowns[key]

    def _may_eject(self, candidates: list[str], group: list[Deployment] | list[str], now: float) -> bool:
        """Whether ejecting ``candidates`` leaves at most ``MAX_EJECTED_SHARE`` of the group ejected. A
        group that is only the candidates may be ejected whole: nothing else could serve, and ``choose``
        still tries the deployment that comes back soonest."""
        ids = {d if isinstance(d, str) else d.id for d in group} | set(candidates)
        if ids <= set(candidates):
            return True
        ejected = sum(1 for d in ids if d not in candidates and self.health(d).ejected_until > now)
        return (ejected + len(candidates)) / len(ids) <= MAX_EJECTED_SHARE


def next_in_order(candidates: list[Deployment], pool: list[Deployment], after: Deployment) -> Deployment:
    """The deployment of ``pool`` that comes first after ``after`` in the configured order (wrapping)."""
    position = {d.id: index for index, d in enumerate(candidates)}
    start = position.get(after.id, -1)
    count = len(candidates)
    return min(pool, key=lambda d: (position[d.id] - start - 1) % count)
