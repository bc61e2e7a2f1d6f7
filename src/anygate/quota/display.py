"""How quota reads in a terminal: ``95% left (250K/5M)``, ``$0.42 / $5.00``, ``resets 2026-12-01 00:00 UTC``."""

from __future__ import annotations

import math
from datetime import datetime

from anygate.quota.formats import CostBucket, TokenBucket

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CNY": "¥", "INR": "₹", "VND": "₫"}


def compact(count: float) -> str:
    """``1_200_000`` → ``1.2M``, ``45_000`` → ``45K``, ``1_500`` → ``1.5K``, ``999`` → ``999``."""
    sign = "-" if count < 0 else ""
    count = abs(count)
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        scaled = round(count / size, 1)
        if count >= size or (count >= 1000 and scaled >= 1):
            return f"{sign}{scaled:g}{suffix}"
    return f"{sign}{round(count):d}"


def amount_text(amount: float) -> str:
    """``1,234.50``, ``0.42``; under a cent, two significant digits (``0.000026``), never ``0.00``."""
    value = abs(amount)
    if value == 0 or value >= 0.01 or not math.isfinite(value):
        return f"{value:,.2f}"
    return f"{value:.{1 - math.floor(math.log10(value))}f}"


def money(amount: float, currency: str) -> str:
    symbol = CURRENCY_SYMBOLS.get(currency.upper())
    sign = "-" if amount < 0 else ""
    if symbol is not None:
        return f"{sign}{symbol}{amount_text(amount)}"
    return f"{sign}{amount_text(amount)} {currency.upper()}"


def tokens_text(bucket: TokenBucket) -> str:
    if bucket.limit is None:
        return f"unlimited ({compact(bucket.used) if bucket.used is not None else '?'} used)"
    used = bucket.used if bucket.used is not None else bucket.limit - (bucket.remaining or 0)
    remaining = bucket.remaining if bucket.remaining is not None else bucket.limit - used
    percent = 100.0 * remaining / bucket.limit if bucket.limit > 0 else 0.0
    return f"{percent:.0f}% left ({compact(used)}/{compact(bucket.limit)})"


def cost_text(bucket: CostBucket) -> str:
    used = money(bucket.used, bucket.currency) if bucket.used is not None else "?"
    if bucket.limit is None:
        return f"{used} / unlimited"
    return f"{used} / {money(bucket.limit, bucket.currency)}"


def reset_text(resets_at: str | None) -> str:
    if not resets_at:
        return "never"
    try:
        moment = datetime.fromisoformat(resets_at.replace("Z", "+00:00"))
    except ValueError:
        return resets_at
    return moment.strftime("%Y-%m-%d %H:%M UTC")
