"""Budgets and rate limits of a caller, as scopes (its key, the keys above it, its user, its user's team)
the enforcer reserves against. Each scope may hold several budgets, one per window.

The store puts ``budgets``/``limits`` (and ``user_budgets``/``user_limits``, ``team_budgets``/
``team_limits``) on a Principal. They are read here through ``scopes_of`` so that the accounting does not
depend on how the store builds principals: ``AppState.budget_source`` may be any callable from a
Principal to its scopes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from anygate.accounting.periods import is_period
from anygate.auth import Budget, BudgetMode, Limits, Principal


@dataclass(frozen=True, slots=True)
class Scope:
    """One thing that has budgets: ``key:<id>``, ``user:<id>`` or ``team:<id>``. ``budgets``: one
    Budget or several (at most one per window; the store refuses two with the same one)."""

    kind: Literal["key", "user", "team"]
    id: str
    budgets: tuple[Budget, ...] | Budget | None = ()
    limits: Limits | None = None
    is_ancestor: bool = False  # a key above the caller's (see ``store.families``), not the caller's own
    # What the accounting asks of every request's scopes, worked out once (a scope never changes):
    counts_tokens: bool = field(init=False, repr=False, compare=False)  # a token budget or a tpm limit
    counts_usd: bool = field(init=False, repr=False, compare=False)  # a USD budget
    hard_tokens: bool = field(init=False, repr=False, compare=False)  # a hard token budget
    hard_usd: bool = field(init=False, repr=False, compare=False)  # a hard USD budget
    name: str = field(init=False, repr=False, compare=False)  # ``key:<id>``: its counters' prefix

    def __post_init__(self) -> None:
        if not isinstance(self.budgets, tuple):
            object.__setattr__(self, "budgets", () if self.budgets is None else (self.budgets,))
        budgets = self.all_budgets
        tpm = self.limits is not None and self.limits.tpm is not None
        object.__setattr__(self, "counts_tokens", tpm or any(b.tokens is not None for b in budgets))
        object.__setattr__(self, "counts_usd", any(b.usd is not None for b in budgets))
        object.__setattr__(self, "hard_tokens", any(b.is_hard and b.tokens is not None for b in budgets))
        object.__setattr__(self, "hard_usd", any(b.is_hard and b.usd is not None for b in budgets))
        object.__setattr__(self, "name", f"{self.kind}:{self.id}")

    @property
    def all_budgets(self) -> tuple[Budget, ...]:
        assert isinstance(self.budgets, tuple)
        return self.budgets

    @property
    def budget(self) -> Budget | None:
        """The first budget (None: none)."""
        return self.all_budgets[0] if self.all_budgets else None

    @property
    def described(self) -> str:
        """How a refusal names it: ``this key``, ``this user``, or the ancestor key by id."""
        return f"key '{self.id}', which this key was made from" if self.is_ancestor else f"this {self.kind}"


BudgetSource = Callable[[Principal], Sequence[Scope]]


def budget_spec(value: Any) -> Budget | None:
    """A Budget from the store's Budget object, a mapping (the API's JSON: ``period`` or ``window``),
    or None."""
    if value is None:
        return None
    get = value.get if isinstance(value, Mapping) else lambda name, default=None: getattr(value, name, default)
    period = get("window", None) or get("period", "none") or "none"
    mode = get("mode", "hard") or "hard"
    if not is_period(period) or mode not in ("hard", "soft"):
        raise ValueError(f"invalid budget: window {period!r}, mode {mode!r}")
    tokens, usd, requests = get("tokens", None), get("usd", None), get("requests", None)
    if tokens is None and usd is None and requests is None:
        return None
    hard_or_soft: BudgetMode = "soft" if mode == "soft" else "hard"
    return Budget(
        None if tokens is None else int(tokens),
        None if usd is None else float(usd),
        period,
        hard_or_soft,
        None if requests is None else int(requests),
    )


def budget_specs(value: Any) -> tuple[Budget, ...]:
    """Every budget of a holder: from a list (or tuple) of budgets, one budget, or None."""
    if value is None:
        return ()
    items = value if isinstance(value, list | tuple) else (value,)
    return tuple(spec for spec in map(budget_spec, items) if spec is not None)


def _held_budgets(holder: Any, plural: str, singular: str) -> tuple[Budget, ...]:
    """A holder's budgets: ``budgets`` (several), else ``budget`` (one), as principals of either kind have."""
    several = getattr(holder, plural, None)
    return budget_specs(several if several else getattr(holder, singular, None))


def limit_spec(value: Any) -> Limits | None:
    if value is None:
        return None
    get = value.get if isinstance(value, Mapping) else lambda name, default=None: getattr(value, name, default)
    spec = Limits(get("rpm", None), get("tpm", None), get("concurrency", None))
    return None if spec == Limits() else spec


def scopes_of(principal: Principal) -> tuple[Scope, ...]:
    """The key's own scope, each ancestor key's (its creator first), its user's and its team's, each with
    the budgets and limits the store gave them: a key made by another key spends from its own budgets and
    from theirs, and a student's key from the student's and the course's.

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
        key_budgets = _held_budgets(key, "budgets", "budget")
        key_limits = limit_spec(getattr(key, "limits", None))
        if key_budgets or key_limits is not None:
            scopes.append(Scope("key", key.key_id, key_budgets, key_limits, is_ancestor=key is not principal))
    if principal.user_id is not None:
        user_budgets = _held_budgets(principal, "user_budgets", "user_budget")
        user_limits = limit_spec(getattr(principal, "user_limits", None))
        if user_budgets or user_limits is not None:
            scopes.append(Scope("user", principal.user_id, user_budgets, user_limits))
    team_id = getattr(principal, "team_id", None)
    if team_id is not None:
        team_budgets = budget_specs(getattr(principal, "team_budgets", None))
        team_limits = limit_spec(getattr(principal, "team_limits", None))
        if team_budgets or team_limits is not None:
            scopes.append(Scope("team", team_id, team_budgets, team_limits))
    return tuple(scopes)


_memoised_scopes = lru_cache(maxsize=8192)(_scopes)


class StaticBudgets:
    """A budget source from fixed mappings (key id → budget/limits), for tests and config-only setups."""

    def __init__(
        self,
        budgets: Mapping[str, Budget] | None = None,
        limits: Mapping[str, Limits] | None = None,
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
