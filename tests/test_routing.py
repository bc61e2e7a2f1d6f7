"""The routing core without sockets: choosing a deployment, ejection and its backoff, cooldowns."""

from __future__ import annotations

import random

import pytest

from anygate.errors import UpstreamStatusError, UpstreamTimeout
from anygate.routing import (
    EJECT_AFTER_FAILURES,
    EJECT_BASE_SECONDS,
    EJECT_MAX_SECONDS,
    RATE_LIMIT_BASE_SECONDS,
    RATE_LIMIT_MAX_SECONDS,
    Deployment,
    HealthBook,
    RetryBudget,
    ejection_backoff,
    rate_limit_backoff,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def book(seed: int = 1) -> tuple[HealthBook, Clock]:
    clock = Clock()
    return HealthBook(clock=clock, rng=random.Random(seed)), clock


def group(*names: str, **weights: float) -> list[Deployment]:
    return [Deployment(name, "m", weight=weights.get(name, 1.0)) for name in names]


def fail(health: HealthBook, deployment: Deployment, members: list[Deployment], times: int = 1) -> None:
    for _ in range(times):
        health.record_failure(deployment, UpstreamTimeout("slow"), members)


def test_backoffs_stay_at_their_cap_however_many_times_they_double() -> None:
    """A long outage ejects a deployment (or rate-limits it) thousands of times: the backoff stays at its
    cap (2.0 ** 1024 overflowed, and the request that hit it was a 500)."""
    assert ejection_backoff(5000) == EJECT_MAX_SECONDS
    assert rate_limit_backoff(5000, random.Random(1)) <= RATE_LIMIT_MAX_SECONDS


def test_ejection_backoff_doubles_up_to_the_cap() -> None:
    health, clock = book()
    (only,) = members = group("a")
    lengths = []
    for _ in range(10):
        fail(health, only, members, EJECT_AFTER_FAILURES)
        state = health.health(only.id)
        lengths.append(state.ejected_until - clock.now)
        clock.now = state.ejected_until  # it comes back, and fails again
        state.consecutive_failures = 0
    assert lengths[:4] == [EJECT_BASE_SECONDS * 2**n for n in range(4)]
    assert max(lengths) == EJECT_MAX_SECONDS == lengths[-1]


def test_a_success_resets_the_backoff() -> None:
    health, clock = book()
    (only,) = members = group("a")
    fail(health, only, members, EJECT_AFTER_FAILURES)
    clock.now = health.health(only.id).ejected_until
    health.record_success(only)
    fail(health, only, members, EJECT_AFTER_FAILURES)
    assert health.health(only.id).ejected_until - clock.now == EJECT_BASE_SECONDS


def test_fewer_consecutive_failures_do_not_eject() -> None:
    health, clock = book()
    (only,) = members = group("a")
    fail(health, only, members, EJECT_AFTER_FAILURES - 1)
    assert health.health(only.id).available(clock.now)


@pytest.mark.parametrize(("size", "ejectable"), [(2, 1), (3, 1), (4, 2), (5, 2)])
def test_at_most_half_of_a_group_is_ejected(size: int, ejectable: int) -> None:
    health, clock = book()
    members = group(*(f"p{i}" for i in range(size)))
    for deployment in members:
        fail(health, deployment, members, EJECT_AFTER_FAILURES)
    ejected = [d for d in members if not health.health(d.id).available(clock.now)]
    assert len(ejected) == ejectable


def test_when_every_deployment_is_ejected_the_one_back_soonest_is_tried() -> None:
    health, clock = book()
    a, b = members = group("a", "b")
    health.health(a.id).ejected_until = clock.now + 50
    health.health(b.id).ejected_until = clock.now + 10
    assert health.choose(members, set()) is b


def test_the_balanced_choice_prefers_fewer_requests_in_flight() -> None:
    health, _ = book()
    busy, idle = members = group("busy", "idle")
    health.started(busy)
    assert all(health.choose(members, set()) is idle for _ in range(200))
    health.finished(busy)
    chosen = {health.choose(members, set()).id for _ in range(200)}  # type: ignore[union-attr]
    assert chosen == {busy.id, idle.id}


def test_load_is_weighed_by_weight() -> None:
    health, _ = book()
    big, small = members = group("big", "small", big=4.0)
    health.started(big)  # 1 in flight for weight 4 is a lighter load than 1 for weight 1
    health.started(small)
    assert all(health.choose(members, set()) is big for _ in range(200))


def test_weights_share_the_first_choice() -> None:
    health, _ = book(seed=7)
    members = group("heavy", "light", heavy=9.0)
    picks = [health.choose(members, set()).id for _ in range(2000)]  # type: ignore[union-attr]
    assert 0.8 < picks.count("heavy#0") / len(picks) < 0.97


def test_the_ordered_strategy_takes_the_first_available_in_order() -> None:
    health, clock = book()
    a, b, c = members = group("a", "b", "c")
    assert health.choose(members, set(), ordered=True) is a
    health.health(a.id).ejected_until = clock.now + 5
    assert health.choose(members, set(), ordered=True) is b


@pytest.mark.parametrize("ordered", [False, True])
def test_after_a_failure_the_next_follows_the_configured_order(ordered: bool) -> None:
    health, _ = book()
    a, b, c = members = group("a", "b", "c")
    assert health.choose(members, {b.id}, after=b, ordered=ordered) is c
    assert health.choose(members, {c.id}, after=c, ordered=ordered) is a  # wraps around
    assert health.choose(members, {c.id, a.id}, after=a, ordered=ordered) is b


def test_priority_tiers_come_before_order() -> None:
    health, _ = book()
    members = [Deployment("a", "m"), Deployment("b", "m", priority=1), Deployment("c", "m")]
    a, b, c = members
    assert health.choose(members, {a.id}, after=a) is c
    assert health.choose(members, {a.id, c.id}, after=c) is b


def test_a_429_without_retry_after_cools_down_for_a_growing_backoff() -> None:
    health, clock = book()
    (only,) = members = group("a")
    waits = []
    for _ in range(4):
        health.record_failure(only, UpstreamStatusError(429, b""), members)
        waits.append(health.cooldown_left(members))
        clock.now += waits[-1]
    assert all(later > earlier for earlier, later in zip(waits, waits[1:], strict=False))
    assert RATE_LIMIT_BASE_SECONDS / 2 <= waits[0] <= RATE_LIMIT_BASE_SECONDS


def test_a_429_with_retry_after_cools_down_for_that_long() -> None:
    health, _ = book()
    (only,) = members = group("a")
    health.record_failure(only, UpstreamStatusError(429, b"", {"retry-after": "7"}), members)
    assert health.cooldown_left(members) == 7
    assert health.choose(members, set()) is None
    failure = health.cooldown_failure(members)
    assert failure is not None and failure.headers["retry-after"] == "7"


@pytest.mark.parametrize("status", [402, 403, 400, 404, 422])
def test_a_status_the_request_may_have_caused_cools_nothing_down(status: int) -> None:
    health, _ = book()
    (only,) = members = group("a")
    health.record_failure(only, UpstreamStatusError(status, b""), members)
    assert health.cooldown_left(members) == 0
    assert health.choose(members, set()) is only
    assert health.health(only.id).consecutive_failures == 0


def test_a_401_cools_the_key_down_for_every_model() -> None:
    health, clock = book()
    refused, other_model = Deployment("a", "m"), Deployment("a", "n")
    health.record_failure(refused, UpstreamStatusError(401, b""), [refused])
    assert health.choose([other_model], set()) is None
    clock.now += 61
    assert health.choose([other_model], set()) is other_model


def test_a_failed_check_ejects_within_the_share_and_a_passing_one_restores() -> None:
    health, clock = book()
    members = ["a#0", "b#0", "c#0", "d#0"]
    health.record_check(["a#0"], False, members, hold=60)
    health.record_check(["b#0"], False, members, hold=60)
    health.record_check(["c#0"], False, members, hold=60)  # would be three of four
    ejected = [d for d in members if not health.health(d).available(clock.now)]
    assert ejected == ["a#0", "b#0"]
    assert health.health("a#0").ejected_until == clock.now + 60  # until the next check at least
    health.record_check(["a#0"], True, members)
    assert health.health("a#0").available(clock.now)


def test_a_provider_that_alone_serves_its_models_may_be_ejected_by_a_check() -> None:
    health, clock = book()
    health.record_check(["a#0", "a#1"], False, ["a#0", "a#1"], hold=30)
    assert not health.health("a#0").available(clock.now)
    assert not health.health("a#1").available(clock.now)


def test_the_retry_budget_refills_slowly() -> None:
    budget = RetryBudget(tokens=2.0, floor_per_second=0.0)
    assert budget.try_spend() and budget.try_spend()
    assert not budget.try_spend()
    for _ in range(5):
        budget.deposit()
    assert budget.try_spend()
