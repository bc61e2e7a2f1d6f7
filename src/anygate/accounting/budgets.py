"""Budgets and rate limits of a caller, as scopes (its key, the keys above it, its user) the enforcer
reserves against.

The store puts ``budget``/``limits`` (and ``user_budget``/``user_limits``) on a Principal. They are read
here through ``scopes_of`` so that the accounting does not depend on how the store builds principals:
``AppState.budget_source`` may be any callable from a Principal to its scopes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from anygate.accounting.periods import PERIODS, Period
from anygate.auth import Principal

Mode = Literal["hard", "soft"]


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """A token and/or USD budget; ``None`` is unlimited in that unit."""

    tokens: int | None = None
    usd: float | None = None
    period: Period = "none"
    mode: Mode = "hard"

    @property
    def is_hard(self) -> bool:
        return self.mode == "hard"


@dataclass(frozen=True, slots=True)
class LimitSpec:
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class Scope:
    """One thing that has budgets: ``key:<id>`` or ``user:<id>``."""

    kind: Literal["key", "user"]
    id: str
    budget: BudgetSpec | None = None
    limits: LimitSpec | None = None
    is_ancestor: bool = False  # a key above the caller's (see ``store.families``), not the caller's own

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def described(self) -> str:
        """How a refusal names it: ``this key``, ``this user``, or the ancestor key by id."""
        return f"key '{self.id}', which this key was made from" if self.is_ancestor else f"this {self.kind}"


BudgetSource = Callable[[Principal], Sequence[Scope]]


def budget_spec(value: Any) -> BudgetSpec | None:
    """A BudgetSpec from the store's Budget object, a mapping (the API's JSON), or None."""
    if value is None:
        return None
    get = value.get if isinstance(value, Mapping) else lambda name, default=None: getattr(value, name, default)
    period = get("period", "none") or "none"
    mode = get("mode", "hard") or "hard"
    if period not in PERIODS or mode not in ("hard", "soft"):
        raise ValueError(f"invalid budget: period {period!r}, mode {mode!r}")
    tokens, usd = get("tokens", None), get("usd", None)
    if tokens is None and usd is None:
        return None
    hard_or_soft: Mode = "soft" if mode == "soft" else "hard"
    return BudgetSpec(
        None if tokens is None else int(tokens), None if usd is None else float(usd), period, hard_or_soft
    )


def limit_spec(value: Any) -> LimitSpec | None:
    if value is None:
        return None
    get = value.get if isinstance(value, Mapping) else lambda name, default=None: getattr(value, name, default)
    spec = LimitSpec(get("rpm", None), get("tpm", None), get("concurrency", None))
    return None if spec == LimitSpec() else spec


def scopes_of(principal: Principal) -> tuple[Scope, ...]:
    """The key's own scope, each ancestor key's (its creator first) and its user's, each with the budget
    and limits the store gave them: a key made by another key spends from its own budget and from theirs.

    Memoised: a Principal is immutable, and the store makes new ones when a key or user changes.
    """
    try:
        return _memoised_scopes(principal)
    except TypeError:  # a Principal holding something unhashable: compute it every time
        return _scopes(principal)


def _scopes(principal: Principal) -> tuple[Scope, ...]:
    scopes = []
    # The key's own, then each key above it with the very scope (and so the counters) its own requests use.
    for key in (principal, *getattr(principal, "ancestors", ())):
        key_budget, key_limits = (
            budget_spec(getattr(key, "budget", None)),
            limit_spec(getattr(key, "limits", None)),
        )
        if key_budget is not None or key_limits is not None:
            scopes.append(Scope("key", key.key_id, key_budget, key_limits, is_ancestor=key is not principal))
    if principal.user_id is not None:
        user_budget = budget_spec(getattr(principal, "user_budget", None))
        user_limits = limit_spec(getattr(principal, "user_limits", None))
        if user_budget is not None or user_limits is not None:
            scopes.append(Scope("user", principal.user_id, user_budget, user_limits))
    return tuple(scopes)


_memoised_scopes = lru_cache(maxsize=8192)(_scopes)


class StaticBudgets:
    """A budget source from fixed mappings (key id → budget/limits), for tests and config-only setups."""

    def __init__(
        self,
        budgets: Mapping[str, BudgetSpec] | None = None,
        limits: Mapping[str, LimitSpec] | None = None,
        fallback: BudgetSource = scopes_of,
    ) -> None:
        self._budgets = dict(budgets or {})
        self._limits = dict(limits or {})
        self._fallback = fallback

    def __call__(self, principal: Principal) -> Sequence[Scope]:
        budget, limits = self._budgets.get(principal.key_id), self._limits.get(principal.key_id)
        if budget is None and limits is None:
            return self._fallback(principal)
        return (Scope("key", principal.key_id, budget, limits),)
