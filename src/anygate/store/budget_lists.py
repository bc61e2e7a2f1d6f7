"""Budgets as the store keeps them: a holder (key, user, team) has a list of budgets, one per window.

    stored element   {"tokens": int|None, "usd": float|None, "requests": int|None, "window": str, "mode": str}
    legacy element   {"tokens", "usd", "period", "mode"}: what ``budget`` columns held before 0006, and
                     the single ``budget`` the API still accepts and shows (the first of the list)

``api_keys.budget`` and ``users.budget`` hold a list from migration 0006 on; an object stored before is
read as a list of one.
"""

from __future__ import annotations

from typing import Any

from anygate.auth import Budget

UNITS = ("tokens", "usd", "requests")


def stored_budgets(raw: Any) -> list[dict[str, Any]]:
    """Every budget of a stored value (a list, one legacy object, or None), in the stored shape; a budget
    that limits nothing is left out."""
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    found = []
    for item in items:
        element = {unit: item.get(unit) for unit in UNITS}
        if all(value is None for value in element.values()):
            continue
        element["window"] = item.get("window") or item.get("period") or "none"
        element["mode"] = item.get("mode") or "hard"
        found.append(element)
    return found


def stored_value(raw: Any) -> list[dict[str, Any]] | None:
    """What a ``budget`` column is given: the list, or None when no budget limits anything."""
    return stored_budgets(raw) or None


def legacy_budget(raw: Any) -> dict[str, Any] | None:
    """The first budget in the single-``budget`` shape (``period`` for ``window``), or None."""
    budgets = stored_budgets(raw)
    if not budgets:
        return None
    first = budgets[0]
    legacy = {"tokens": first["tokens"], "usd": first["usd"], "period": first["window"], "mode": first["mode"]}
    if first["requests"] is not None:
        legacy["requests"] = first["requests"]
    return legacy


def budget_objects(raw: Any) -> tuple[Budget, ...]:
    """The budgets a Principal carries."""
    return tuple(
        Budget(tokens=b["tokens"], usd=b["usd"], period=b["window"], mode=b["mode"], requests=b["requests"])
        for b in stored_budgets(raw)
    )


def as_stored(budget: Budget) -> dict[str, Any]:
    return {
        "tokens": budget.tokens,
        "usd": budget.usd,
        "requests": budget.requests,
        "window": budget.period,
        "mode": budget.mode,
    }
