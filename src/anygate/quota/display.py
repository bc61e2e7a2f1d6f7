"""How quota reads in a terminal: ``95% left (250K/5M)``, ``$0.42 / $5.00``, ``resets 2026-12-01 00:00 UTC``."""

from __future__ import annotations

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


def money(amount: float, currency: str) -> str:
    symbol = CURRENCY_SYMBOLS.get(currency.upper())
    sign = "-" if amount < 0 else ""
    if symbol is not None:
        return f"{sign}{symbol}{abs(amount):,.2f}"
    return f"{sign}{abs(amount):,.2f} {currency.upper()}"


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
