"""The budget and rate-limit options keys and users share, turned into the API's request fields: the CLI
builds the same JSON body the API takes and validates it with the same request models, so a value the API
refuses is refused here with the same message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from anygate.cli.common import fail
from anygate.store.budget_lists import legacy_budget, stored_budgets

BudgetTokens = Annotated[int | None, typer.Option("--budget-tokens", help="Token budget per period.")]
BudgetUsd = Annotated[float | None, typer.Option("--budget-usd", help="USD budget per period.")]
BudgetPeriod = Annotated[
    str | None,
    typer.Option("--budget-period", help="When the budget resets: daily | weekly | monthly | none (default none)."),
]
BudgetMode = Annotated[
    str | None,
    typer.Option("--budget-mode", help="hard (refuse, clamp max_tokens; the default) | soft (report only)."),
]
Rpm = Annotated[int | None, typer.Option("--rpm", help="Requests per minute.")]
Tpm = Annotated[int | None, typer.Option("--tpm", help="Tokens per minute.")]
Concurrency = Annotated[int | None, typer.Option("--concurrency", help="Requests in flight at once.")]
NoBudget = Annotated[bool, typer.Option("--no-budget", help="Remove the budget.")]
NoLimits = Annotated[bool, typer.Option("--no-limits", help="Remove the rate limits.")]


@dataclass(frozen=True)
class SpendOptions:
    """What the budget and limit options were given (None: not given)."""

    tokens: int | None = None
    usd: float | None = None
    period: str | None = None
    mode: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None

    def budget(self, current: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The budget to send: the options given over ``current`` (a change keeps what is not given), or
        None when no budget option was given. A period or mode alone is sent too, so that a period without
        a limit is refused as the API refuses it rather than ignored."""
        given = {"tokens": self.tokens, "usd": self.usd, "period": self.period, "mode": self.mode}
        given = {name: value for name, value in given.items() if value is not None}
        if not given:
            return None
        return {"period": "none", "mode": "hard", **(current or {}), **given}

    def limits(self, current: dict[str, Any] | None = None) -> dict[str, Any] | None:
        given = {"rpm": self.rpm, "tpm": self.tpm, "concurrency": self.concurrency}
        given = {name: value for name, value in given.items() if value is not None}
        if not given:
            return None
        return {**(current or {}), **given}


def first_budget(stored: Any) -> dict[str, Any] | None:
    """The first of a holder's budgets, in the single-budget shape these options change (they set one
    budget: a holder's other budgets are replaced by it)."""
    budget = legacy_budget(stored)
    return None if budget is None else {k: v for k, v in budget.items() if k != "requests"}


def spend_changes(
    options: SpendOptions, current: Any, no_budget: bool, no_limits: bool
) -> dict[str, dict[str, Any] | None]:
    """The ``budget`` and ``limits`` members of a change (only those that change; null removes one)."""
    if (no_budget and options.budget() is not None) or (no_limits and options.limits() is not None):
        fail("--no-budget and --no-limits cannot be given with a budget or limit to set")
    changes: dict[str, dict[str, Any] | None] = {}
    if no_budget:
        changes["budget"] = None
    elif (budget := options.budget(first_budget(current.budget))) is not None:
        changes["budget"] = budget
    if no_limits:
        changes["limits"] = None
    elif (limits := options.limits(current.limits)) is not None:
        changes["limits"] = limits
    return changes


def budget_text(budget: dict[str, Any]) -> str:
    """One stored budget, short: ``50000 tok + $2 / daily (soft)``."""
    amounts = []
    if budget.get("tokens") is not None:
        amounts.append(f"{budget['tokens']} tok")
    if budget.get("usd") is not None:
        amounts.append(f"${budget['usd']:g}")
    if budget.get("requests") is not None:
        amounts.append(f"{budget['requests']} req")
    text = " + ".join(amounts) + f" / {budget['window']}"
    return text + " (soft)" if budget.get("mode") == "soft" else text


def budgets_text(stored: object) -> str:
    """A holder's stored budgets, one a line (``-`` for none)."""
    return "\n".join(budget_text(b) for b in stored_budgets(stored)) or "-"
