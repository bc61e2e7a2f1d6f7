"""What a user key may do with keys: manage itself and the keys made from it, and only ever narrow.

A key a user key makes, and every change a user key makes to a key, must leave each field no wider than
the caller's own rights and (for a change) than the key's current value:

    models, providers   each pattern provably inside one of the bound's patterns (``pattern_within``);
                        never removed (``null`` allows everything)
    budget(s)           each of the bound's budgets kept by one of the new ones: tokens, usd and requests
                        lower or equal, never removed (``null`` is unlimited); mode only soft -> hard;
                        window equal, or one whose windows hold the bound's (daily -> weekly,
                        daily -> monthly, Nh -> daily when N divides 24, Nh -> Mh when N divides M,
                        any -> none): a shorter window with the same amount allows more, and a monthly
                        window straddles weekly ones
    limits              rpm, tpm, concurrency lower or equal, never removed
    expires_at          earlier or equal, never removed
    user_id, role       never changed (an admin moves keys between users and makes admin keys)

A refusal is 403 ``too_many_rights`` naming the field in ``param``. Admins are trusted: none of this
applies to them. The request path enforces the same bounds whatever the store holds (``store.families``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from anygate.accounting.periods import hours_of
from anygate.auth import Principal
from anygate.errors import PermissionDenied
from anygate.store.budget_lists import as_stored, stored_budgets
from anygate.store.families import MAX_DEPTH, Lineage
from anygate.store.records import KeyRecord

GLOB_CHARACTERS = frozenset("*?[]")
UNITS = ("tokens", "usd", "requests")
LIMIT_NAMES = ("rpm", "tpm", "concurrency")
# Periods whose windows lie inside a longer one's: a narrower key may move from the first to the second.
NESTED_PERIODS = {
    "daily": {"daily", "weekly", "monthly", "none"},
    "weekly": {"weekly", "none"},
    "monthly": {"monthly", "none"},
    "none": {"none"},
}


def too_many_rights(param: str, message: str) -> PermissionDenied:
    return PermissionDenied(f"{param}: {message}", param=param, code="too_many_rights")


# ---------------------------------------------------------------------------------------------- patterns


def is_literal(pattern: str) -> bool:
    return not GLOB_CHARACTERS.intersection(pattern)


def literal_prefix(pattern: str) -> str | None:
    """``groq/llama-`` for ``groq/llama-*``; ``None`` unless the pattern is a literal and one final ``*``."""
    if pattern.endswith("*") and is_literal(pattern[:-1]):
        return pattern[:-1]
    return None


def pattern_within(narrow: str, wide: str) -> bool:
    """Whether every name ``narrow`` matches is provably matched by ``wide``.

    Provable here: ``wide`` is ``*``; the two are the same text; ``narrow`` is a literal name that ``wide``
    matches; or both are a literal prefix and one final ``*``, ``narrow``'s prefix extending ``wide``'s.
    Anything else (``fake/[s]*`` against ``fake/[!s]*``, say) is not, and is refused.
    """
    if wide == "*" or narrow == wide:
        return True
    if is_literal(narrow):
        return fnmatchcase(narrow, wide)
    narrow_prefix, wide_prefix = literal_prefix(narrow), literal_prefix(wide)
    return narrow_prefix is not None and wide_prefix is not None and narrow_prefix.startswith(wide_prefix)


def check_patterns(name: str, wanted: list[str] | None, bound: tuple[str, ...] | None, whose: str) -> None:
    if bound is None:
        return
    if wanted is None:
        raise too_many_rights(name, f"cannot be null (every {name[:-1]}): {whose} allowlist is {list(bound)}")
    for pattern in wanted:
        if not any(pattern_within(pattern, mine) for mine in bound):
            raise too_many_rights(
                name,
                f"'{pattern}' is not provably inside {whose} allowlist {list(bound)}; only literal names and "
                "literal-prefix globs ending in one '*' (such as 'groq/llama-*') can be proven narrower",
            )


# ---------------------------------------------------------------------------------------------- amounts


def budget_values(budget: Any) -> dict[str, Any] | None:
    """A budget (a stored or legacy dict, or a Budget) with every field (``period`` for its window);
    ``None`` when it limits nothing."""
    if budget is None:
        return None
    raw = budget if isinstance(budget, dict) else as_stored(budget)
    values = {unit: raw.get(unit) for unit in UNITS}
    if all(value is None for value in values.values()):
        return None
    return {**values, "period": raw.get("window") or raw.get("period") or "none", "mode": raw.get("mode") or "hard"}


def budgets_of(value: Any) -> list[dict[str, Any]]:
    """Every budget of a holder (a stored list, one dict, a tuple of Budgets, None) as ``budget_values``."""
    if isinstance(value, tuple):
        value = [as_stored(budget) for budget in value]
    return [v for v in (budget_values(b) for b in stored_budgets(value)) if v is not None]


def window_allowed(wanted: str, bound: str) -> bool:
    """Whether a budget over ``wanted`` windows allows no more than the same amount over ``bound``'s: each
    ``bound`` window lies inside one ``wanted`` window (a longer or equal window, or ``none``)."""
    if wanted == bound or wanted == "none":
        return True
    wanted_hours, bound_hours = hours_of(wanted), hours_of(bound)
    if wanted_hours is not None and bound_hours is not None:
        return wanted_hours % bound_hours == 0
    if wanted_hours is not None:
        return bound == "daily" and wanted_hours % 24 == 0
    if bound_hours is not None:
        return 24 % bound_hours == 0 and wanted in NESTED_PERIODS["daily"]
    return wanted in NESTED_PERIODS.get(bound, set())


def check_budgets(wanted: Any, bound: Any, whose: str) -> None:
    """Each budget of ``bound`` kept, no wider, by one of ``wanted`` (one against one: named by field)."""
    mine, theirs = budgets_of(bound), budgets_of(wanted)
    if len(mine) <= 1 and len(theirs) <= 1:
        check_budget(theirs[0] if theirs else None, mine[0] if mine else None, whose)
        return
    for budget in mine:
        if not any(_kept(candidate, budget, whose) for candidate in theirs):
            raise too_many_rights(
                "budgets",
                f"none of the budgets given keeps {whose} {budget['period']} budget {budget} (as low, as hard, "
                "over a window inside its own)",
            )


def _kept(candidate: dict[str, Any], bound: dict[str, Any], whose: str) -> bool:
    try:
        check_budget(candidate, bound, whose)
    except PermissionDenied:
        return False
    return True


def limit_values(limits: Any) -> dict[str, Any] | None:
    if limits is None:
        return None
    raw = limits if isinstance(limits, dict) else asdict(limits)
    values = {name: raw.get(name) for name in LIMIT_NAMES}
    return None if all(v is None for v in values.values()) else values


def check_budget(wanted: Any, bound: Any, whose: str) -> None:
    mine, theirs = budget_values(bound), budget_values(wanted)
    if mine is None:
        return
    if theirs is None:
        raise too_many_rights("budget", f"cannot be removed: {whose} budget is {mine}")
    for unit in UNITS:
        check_amount(f"budget.{unit}", theirs[unit], mine[unit], whose)
    if mine["mode"] == "hard" and theirs["mode"] != "hard":
        raise too_many_rights("budget.mode", f"cannot be soft: {whose} budget is hard")
    if not window_allowed(theirs["period"], mine["period"]):
        raise too_many_rights(
            "budget.period",
            f"'{theirs['period']}' allows more than {whose} '{mine['period']}' budget (a window must lie "
            "inside one of the bound's: daily -> weekly or monthly, any -> none)",
        )


def check_limits(wanted: Any, bound: Any, whose: str) -> None:
    mine, theirs = limit_values(bound), limit_values(wanted)
    if mine is None:
        return
    if theirs is None:
        raise too_many_rights("limits", f"cannot be removed: {whose} limits are {mine}")
    for name in LIMIT_NAMES:
        check_amount(f"limits.{name}", theirs[name], mine[name], whose)


def check_amount(param: str, wanted: float | None, bound: float | None, whose: str) -> None:
    if bound is None:
        return
    if wanted is None:
        raise too_many_rights(param, f"cannot be null (unlimited): {whose} is {bound}")
    if wanted > bound:
        raise too_many_rights(param, f"{wanted} is more than {whose} {bound}")


def check_expiry(wanted: datetime | None, bound: float | None, whose: str) -> None:
    if bound is None:
        return
    limit = datetime.fromtimestamp(bound, UTC)
    if wanted is None:
        raise too_many_rights("expires_at", f"cannot be removed: {whose} expires at {limit.isoformat()}")
    if wanted.timestamp() > bound:
        raise too_many_rights("expires_at", f"later than {whose} {limit.isoformat()}")


# ---------------------------------------------------------------------------------------------- rights


@dataclass(frozen=True)
class Rights:
    """The most a key may have: the caller's own (allowlists, budget, limits, expiry along its chain), or
    a managed key's current fields. ``whose`` names it in refusals."""

    whose: str
    models: tuple[str, ...] | None
    providers: tuple[str, ...] | None
    budget: Any
    limits: Any
    expires_at: float | None
    user_id: str | None
    role: str

    @classmethod
    def of_caller(cls, caller: Principal) -> Rights:
        return cls(
            "the calling key's",
            caller.models,
            caller.providers,
            caller.budgets,
            caller.limits,
            caller.expires_at,
            caller.user_id,
            "admin" if caller.is_admin else "user",
        )

    @classmethod
    def of_record(cls, record: KeyRecord) -> Rights:
        return cls(
            "the key's current",
            None if record.models is None else tuple(record.models),
            None if record.providers is None else tuple(record.providers),
            record.budget,
            record.limits,
            None if record.expires_at is None else record.expires_at.timestamp(),
            record.user_id,
            record.role,
        )

    def check(self, fields: dict[str, Any]) -> None:
        """Raise 403 ``too_many_rights`` unless each field given is no wider than these rights."""
        if "role" in fields and fields["role"] != self.role:
            raise too_many_rights("role", f"only an admin can change a key's role ({self.whose} is '{self.role}')")
        if "user_id" in fields and fields["user_id"] != self.user_id:
            raise too_many_rights("user_id", "only an admin can move a key to another user, or off its user")
        for name in ("models", "providers"):
            if name in fields:
                check_patterns(name, fields[name], getattr(self, name), self.whose)
        if "budget" in fields:
            check_budgets(fields["budget"], self.budget, self.whose)
        if "limits" in fields:
            check_limits(fields["limits"], self.limits, self.whose)
        if "expires_at" in fields:
            check_expiry(fields["expires_at"], self.expires_at, self.whose)


def check_new_key(caller: Principal, fields: dict[str, Any]) -> None:
    """A key a user key makes: no wider than the caller on any field, and not too deep a chain."""
    if caller.is_admin:
        return
    if len(caller.ancestors) + 1 > MAX_DEPTH:
        raise PermissionDenied(
            f"This key is {MAX_DEPTH} keys below an admin-made key: it cannot make more keys",
            code="too_many_rights",
        )
    Rights.of_caller(caller).check(fields)


def check_change(caller: Principal, record: KeyRecord, fields: dict[str, Any]) -> None:
    """A change a user key makes to a key it manages: no wider than the key now, nor than the caller."""
    if caller.is_admin:
        return
    Rights.of_record(record).check(fields)
    Rights.of_caller(caller).check(fields)


def manages(caller: Principal, lineage: Lineage) -> bool:
    """Whether ``caller`` may see, change and revoke the key: admins any, a user key itself and the keys
    made from it (never its creator, nor other keys of its user), a person signed in as a user the keys of
    that user and the keys made from them."""
    if caller.via_session and caller.user_id is not None:
        return any(record.user_id == caller.user_id for record in (lineage.key, *lineage.ancestors))
    return caller.is_admin or lineage.key.id == caller.key_id or lineage.descends_from(caller.key_id)


def inherit_limits(caller: Principal, fields: dict[str, Any]) -> dict[str, Any]:
    """A user key's new key starts with the caller's own restrictions where none are given."""
    if caller.is_admin:
        return fields
    inherited = dict(fields)
    if inherited.get("user_id") is None:
        inherited["user_id"] = caller.user_id
    for name in ("models", "providers"):
        if inherited.get(name) is None and getattr(caller, name) is not None:
            inherited[name] = list(getattr(caller, name))
    if inherited.get("budget") is None and caller.budgets:
        inherited["budget"] = [as_stored(budget) for budget in caller.budgets]
    if inherited.get("limits") is None and caller.limits is not None:
        inherited["limits"] = asdict(caller.limits)
    if inherited.get("expires_at") is None and caller.expires_at is not None:
        inherited["expires_at"] = datetime.fromtimestamp(caller.expires_at, UTC)
    return inherited
