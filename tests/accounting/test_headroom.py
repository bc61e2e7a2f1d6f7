"""What a reservation tells a caller of its limits: the tightest reading of each unit, OpenAI's duration
format, and Retry-After in whole seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from anygate.accounting.headroom import Headroom, Reading, Unit, amount, duration
from anygate.api.headers import retry_after_in_seconds

NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("seconds", "written"),
    [
        (0, "0s"),
        (-3, "0s"),
        (0.0004, "0s"),
        (0.017, "17ms"),
        (0.85, "850ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (21.4, "21.4s"),
        (59.9996, "1m0s"),
        (360, "6m0s"),
        (3723.25, "1h2m3.25s"),
        (86400, "24h0m0s"),
    ],
)
def test_durations_are_written_as_openai_writes_them(seconds: float, written: str) -> None:
    assert duration(seconds) == written


def test_amounts_are_whole_requests_and_tokens_and_dollars_to_the_millionth() -> None:
    assert [amount("requests", 59.0), amount("tokens", 99_000.7), amount("tokens", 2.9999999999)] == [
        "59",
        "99000",
        "3",
    ]
    assert [amount("usd", 5.0), amount("usd", 4.58), amount("usd", 0.0000013), amount("usd", 0.0)] == [
        "5",
        "4.58",
        "0.000001",
        "0",
    ]


def reading(unit: Unit, limit: float, left: float, resets_in: float | None, held: float = 0.0) -> Reading:
    return Reading(unit, limit, left, held, None if resets_in is None else NOW + resets_in, "minute", "key:k")


def test_each_unit_tells_its_tightest_reading() -> None:
    headroom = Headroom()
    for r in (
        reading("requests", 60, 59, 30),
        reading("requests", 10, 3, 30),  # the user's rpm: less left
        reading("tokens", 100_000, 90_000, 30),
        reading("tokens", 50_000, 40_000, 3600.5),  # a daily budget: less left than the tpm
        reading("usd", 5.0, 4.5, None),  # never resets
    ):
        headroom.note(r)
    assert headroom.error_headers(NOW) == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-reset-requests": "30s",
        "x-ratelimit-limit-tokens": "50000",
        "x-ratelimit-remaining-tokens": "40000",
        "x-ratelimit-reset-tokens": "1h0m0.5s",
        "x-ratelimit-limit-usd": "5",
        "x-ratelimit-remaining-usd": "4.5",
    }


def test_on_a_tie_the_longer_wait_binds_and_nothing_is_told_below_zero() -> None:
    headroom = Headroom()
    headroom.note(reading("requests", 60, 0, 10))
    headroom.note(reading("requests", 100, -2, 40))  # past a soft limit
    headroom.note(reading("tokens", 10, 0, 5))
    headroom.note(reading("tokens", 20, 0, 50))
    assert headroom.error_headers(NOW)["x-ratelimit-remaining-requests"] == "0"
    assert headroom.error_headers(NOW)["x-ratelimit-reset-tokens"] == "50s"


def test_a_refusal_tells_what_was_held_as_given_back() -> None:
    headroom = Headroom()
    headroom.note(reading("requests", 60, 41, 10, held=1))
    headroom.given_back = True
    assert headroom.error_headers(NOW)["x-ratelimit-remaining-requests"] == "42"


def test_nothing_limited_tells_nothing() -> None:
    assert not Headroom() and Headroom().headers() == [] and Headroom().error_headers() == {}


def test_budgets_after_a_charge() -> None:
    headroom = Headroom()
    headroom.note(Reading("tokens", 1000, 700, 200, None, "budget", "key:k"))
    headroom.note(Reading("usd", 5.0, 4.0, 0.5, None, "budget", "user:u"))
    headroom.note(Reading("requests", 60, 59, 1, NOW, "minute", "key:k"))  # not a budget
    assert list(headroom.budgets_after({"tokens": 50, "usd": 0.1})) == [
        ("key:k", "tokens", 850),
        ("user:u", "usd", pytest.approx(4.4)),
    ]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, 1), ("7", 7), ("2.5", 3), ("0", 1), ("-4", 1), ("soon", 1), ("nan", 1), ("inf", 1)],
)
def test_retry_after_is_whole_seconds(value: str | None, seconds: int) -> None:
    assert retry_after_in_seconds(value) == seconds


def test_retry_after_as_a_date() -> None:
    now = datetime(2026, 12, 3, 8, 0, 0, tzinfo=UTC)
    assert retry_after_in_seconds("Thu, 03 Dec 2026 08:00:30 GMT", now) == 30
    assert retry_after_in_seconds("Thu, 03 Dec 2026 07:59:00 GMT", now) == 1  # already past
    assert retry_after_in_seconds((now + timedelta(hours=1)).strftime("%a, %d %b %Y %H:%M:%S GMT"), now) == 3600
