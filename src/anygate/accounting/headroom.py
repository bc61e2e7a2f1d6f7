"""What a caller has left of its rate limits and budgets, as its reservation found it: OpenAI's
``x-ratelimit-*`` headers, and the budget gauges.

The enforcer notes one ``Reading`` for each counter it reserved (``requests`` and ``tokens`` of a minute,
``tokens`` and ``usd`` of a budget window), from what the limiter's decision already computed
(``Grant.left``) or, when it refused, what the counter had (``Rejection.available``): nothing more is
asked of the limiter. Each unit's headers describe its tightest reading, the one with the least left:

    x-ratelimit-limit-requests: 60         x-ratelimit-limit-tokens: 100000       x-ratelimit-limit-usd: 5
    x-ratelimit-remaining-requests: 59     x-ratelimit-remaining-tokens: 99000    x-ratelimit-remaining-usd: 4.58
    x-ratelimit-reset-requests: 21.4s      x-ratelimit-reset-tokens: 21.4s        x-ratelimit-reset-usd: 14h2m3s

A reset is written as OpenAI writes it (Go's duration format: ``850ms``, ``1s``, ``6m0s``, ``1h2m3.5s``); a
budget that never resets has no reset header. A unit nothing limits has no headers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

Unit = Literal["requests", "tokens", "usd"]
UNITS: tuple[Unit, ...] = ("requests", "tokens", "usd")
UNIT_OF_COUNTER: Mapping[str, Unit] = {unit: unit for unit in UNITS}  # the limiter's counters of each unit
Window = Literal["minute", "budget"]
HEADER_NAMES: Mapping[Unit, tuple[bytes, bytes, bytes]] = {
    unit: (
        b"x-ratelimit-limit-%s" % unit.encode(),
        b"x-ratelimit-remaining-%s" % unit.encode(),
        b"x-ratelimit-reset-%s" % unit.encode(),
    )
    for unit in UNITS
}


@dataclass(slots=True)  # not frozen: made per request (docs/architecture.md, Hot path)
class Reading:
    """One counter of one scope as a reservation saw it. ``left`` is after this request's reservation
    (``held``); ``resets_at`` a UNIX time (None: never)."""

    unit: Unit
    limit: float
    left: float
    held: float
    resets_at: float | None
    window: Window
    scope: str  # ``key:<id>`` or ``user:<id>``


class Headroom:
    """The readings of one request's reservation."""

    __slots__ = ("readings", "given_back")

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.given_back = False  # refused: what the request held was given back

    def __repr__(self) -> str:
        return f"Headroom({', '.join(f'{r.scope} {r.unit} {r.left:g}/{r.limit:g}' for r in self.readings)})"

    def __bool__(self) -> bool:
        return bool(self.readings)

    def note(self, reading: Reading) -> None:
        self.readings.append(reading)

    def error_headers(self, now: float | None = None) -> dict[str, str]:
        """``headers`` as an error answer carries them (``GatewayError.headers``)."""
        return {name.decode(): value.decode() for name, value in self.headers(now)}

    def headers(self, now: float | None = None) -> list[tuple[bytes, bytes]]:
        """The ``x-ratelimit-*`` headers of every unit something limits (none: an empty list), as they are
        written: made on every limited request, so straight to bytes."""
        if not self.readings:
            return []
        given_back = self.given_back
        # One pass: each unit's reading with the least left (on a tie, the later reset: it binds longer).
        tightest: dict[Unit, tuple[float, Reading]] = {}
        for reading in self.readings:
            left = reading.left + reading.held if given_back else reading.left
            found = tightest.get(reading.unit)
            if found is None or left < found[0] or (left == found[0] and resets_in(reading) > resets_in(found[1])):
                tightest[reading.unit] = (left, reading)
        now = time.time() if now is None else now
        headers: list[tuple[bytes, bytes]] = []
        resets: dict[float, bytes] = {}  # units that reset together (a budget's tokens and USD) share the text
        for unit in UNITS:
            found = tightest.get(unit)
            if found is None:
                continue
            left, binding = found
            limit, remaining, reset = HEADER_NAMES[unit]
            if unit == "usd":
                headers += ((limit, usd_amount(binding.limit)), (remaining, usd_amount(max(0.0, left))))
            else:  # whole requests and tokens: what is left rounded down
                headers += ((limit, whole_amount(binding.limit)), (remaining, whole_amount(max(0.0, left))))
            resets_at = binding.resets_at
            if resets_at is not None:
                text = resets.get(resets_at)
                if text is None:
                    text = resets[resets_at] = duration(resets_at - now).encode()
                headers.append((reset, text))
        return headers

    def budgets_after(self, charged: Mapping[str, float]) -> Iterator[tuple[str, Unit, float]]:
        """(scope, unit, what is left) of each budget counter once the request is charged ``charged``
        (per unit) in place of what it held: the budget gauges' values, with no limiter read."""
        for reading in self.readings:
            if reading.window == "budget":
                yield reading.scope, reading.unit, reading.left + reading.held - charged.get(reading.unit, 0.0)


def resets_in(reading: Reading) -> float:
    return math.inf if reading.resets_at is None else reading.resets_at


def amount(unit: Unit, value: float) -> str:
    """Requests and tokens as whole numbers (what is left rounded down); dollars to the millionth."""
    if unit != "usd":
        return str(math.floor(value + 1e-9))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def whole_amount(value: float) -> bytes:
    """``amount`` of requests or tokens, as a header's bytes."""
    return b"%d" % math.floor(value + 1e-9)


def usd_amount(value: float) -> bytes:
    """``amount`` of dollars, as a header's bytes."""
    return (b"%.6f" % value).rstrip(b"0").rstrip(b".")


def duration(seconds: float) -> str:
    """Seconds in Go's duration format, as OpenAI writes its resets: ``0s``, ``250ms``, ``1s``, ``1.5s``,
    ``6m0s``, ``1h2m3.25s`` (to the millisecond)."""
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    whole, fraction = divmod(millis, 1000)
    text = f"{whole}.{fraction:03d}".rstrip("0") + "s" if fraction else f"{whole}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text
