"""A budget's window is worked out once a window (``BudgetWindows``), a scope's rate plan once a scope
(``RatePlans``): what a request's steps take from them must be what the calendar says at that moment."""

from __future__ import annotations

from datetime import UTC, datetime

from anygate.accounting.budgets import Scope
from anygate.accounting.enforcer import Ask, BudgetWindows, RatePlans, budget_window
from anygate.accounting.periods import SLOTS
from anygate.auth import Budget, Limits

SCOPE = Scope("key", "k1", Budget(tokens=100, period="daily"))


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_a_daily_window_is_kept_until_midnight_and_then_is_the_next_day() -> None:
    windows = BudgetWindows()
    budget = SCOPE.all_budgets[0]
    morning = windows.current(SCOPE, budget, at("2026-12-03T08:00:00"))
    assert windows.current(SCOPE, budget, at("2026-12-03T23:59:59.5")) is morning
    assert morning.bucket == "key:k1:daily:2026-12-03"
    assert morning.resets_at == at("2026-12-04T00:00:00")
    assert morning.seed_from.start == at("2026-12-03T00:00:00")
    next_day = windows.current(SCOPE, budget, at("2026-12-04T00:00:00"))
    assert next_day.bucket == "key:k1:daily:2026-12-04"
    assert next_day.resets_at == at("2026-12-05T00:00:00")


def test_a_kept_window_is_the_one_the_calendar_gives_at_every_moment() -> None:
    windows = BudgetWindows()
    for period in ("daily", "weekly", "monthly", "none", "5h", "24h"):
        scope = Scope("user", "u1", Budget(usd=5.0, period=period))
        budget = scope.all_budgets[0]
        for moment in ("2026-11-30T23:59:59", "2026-12-01T00:00:00", "2026-12-03T10:04:59", "2026-12-03T10:05:00"):
            now = at(moment)
            kept, fresh = windows.current(scope, budget, now), budget_window(scope, budget, now)
            assert (kept.bucket, kept.seed_from, kept.resets_at) == (fresh.bucket, fresh.seed_from, fresh.resets_at)
            assert kept.lifetime(now) == fresh.lifetime(now)


def test_a_rolling_window_keeps_its_bucket_and_moves_at_each_slot_boundary() -> None:
    windows = BudgetWindows()
    scope = Scope("team", "t1", Budget(requests=10, period="5h"))
    budget = scope.all_budgets[0]
    first = windows.current(scope, budget, at("2026-12-03T10:00:01"))
    assert windows.current(scope, budget, at("2026-12-03T10:04:59")) is first
    moved = windows.current(scope, budget, at("2026-12-03T10:05:00"))
    assert moved.bucket == first.bucket == "team:t1:5h:rolling"
    assert moved.seed_from.start == first.seed_from.start + 300
    assert moved.resets_at == at("2026-12-03T10:10:00")
    assert first.lifetime(0.0) == 300 * (SLOTS + 2)


def test_a_calendar_bucket_lives_an_hour_past_its_reset_counted_from_now() -> None:
    window = budget_window(SCOPE, SCOPE.all_budgets[0], at("2026-12-03T08:00:00"))
    assert window.lifetime(at("2026-12-03T23:00:00")) == 2 * 3600
    never = budget_window(Scope("key", "k2", Budget(tokens=1)), Budget(tokens=1), at("2026-12-03T08:00:00"))
    assert never.resets_at is None and never.lifetime(0.0) is None


def test_a_rate_plan_is_kept_for_its_scope_and_made_anew_for_a_changed_one() -> None:
    plans = RatePlans()
    limits = Limits(rpm=60, tpm=1000, concurrency=2)
    scope = Scope("key", "k1", limits=limits)
    plan = plans.of(scope, limits)
    assert plans.of(scope, limits) is plan
    changed = Scope("key", "k1", limits=Limits(rpm=1))
    assert plans.of(changed, changed.limits or limits) is not plan
    steps = plan.steps(Ask(10, 20), at("2026-12-03T10:00:30"))
    assert [step.kind for step in steps] == ["concurrency", "minute"]
    minute = steps[1]
    assert minute.hold.bucket == f"key:k1:minute:{int(at('2026-12-03T10:00:30') // 60)}"
    assert minute.resets_at == at("2026-12-03T10:01:00")
    assert [(claim.counter, claim.amount) for claim in minute.hold.claims] == [("requests", 1), ("tokens", 30)]
