"""LiteLLM's shapes of a key and a user (``/key/info``, ``/user/info``), as its own clients read them.

Every field of LiteLLM's key row (``LiteLLM_VerificationToken``) and user row (``LiteLLM_UserTable``) is
there: the ones anygate has a value for carry it, the others their documented empty form (``null``,
``[]``, ``{}``). Pure functions of what the quota (``KeyQuota``) and the store (``KeyFacts``,
``UserFacts``) know.

- ``spend`` is what the USD budget's current window used; with no USD budget, everything the key (user)
  spent (LiteLLM: ``spend`` covers the window only when ``budget_duration`` is set).
- ``max_parallel_requests`` is anygate's ``concurrency`` limit; ``blocked`` is true for a revoked key.
- Teams: ``team_id`` is null and ``teams`` empty until anygate has teams.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from anygate.accounting.periods import iso_utc
from anygate.auth import Limits
from anygate.quota.shapes import Allowance, KeyQuota, iso_from_unix
from anygate.store.records import TeamRecord

BUDGET_DURATIONS = {"daily": "1d", "weekly": "7d", "monthly": "1mo"}
KEY_TYPE = "default"  # LiteLLM's key type for a key with the usual routes

# Fields of LiteLLM's key row anygate has no concept for, in their documented empty form.
EMPTY_KEY_FIELDS: dict[str, Any] = {
    "aliases": {},
    "config": {},
    "team_id": None,
    "agent_id": None,
    "project_id": None,
    "metadata": {},
    "tpd_limit": None,
    "allowed_cache_controls": [],
    "allowed_routes": [],
    "permissions": {},
    "model_max_budget": {},
    "budget_fallbacks": {},
    "soft_budget_cooldown": False,
    "litellm_budget_table": None,
    "budget_id": None,
    "org_id": None,
    "updated_at": None,
    "updated_by": None,
    "settings_updated_at": None,
    "object_permission_id": None,
    "object_permission": None,
    "access_group_ids": None,
    "rotation_count": None,
    "auto_rotate": False,
    "rotation_interval": None,
    "key_rotation_at": None,
    "router_settings": None,
    "budget_limits": None,
}
# Fields of LiteLLM's user row anygate has no concept for, in their documented empty form.
EMPTY_USER_FIELDS: dict[str, Any] = {
    "team_id": None,
    "sso_user_id": None,
    "organization_id": None,
    "object_permission_id": None,
    "password_reset_required": None,
    "last_breach_check_at": None,
    "teams": [],
    "user_role": None,
    "user_email": None,
    "models": [],
    "metadata": {},
    "allowed_cache_controls": [],
    "policies": [],
    "model_max_budget": {},
    "updated_at": None,
    "organization_memberships": None,
    "object_permission": None,
}


@dataclass(frozen=True, slots=True)
class KeyFacts:
    """What the store holds about a key beyond its quota. The defaults describe a key it does not hold
    (the admin key from the environment)."""

    key_prefix: str | None = None
    status: str = "active"  # active | expired | revoked
    created_at: datetime | None = None
    created_by: str | None = None
    rotated_at: datetime | None = None
    last_active: float | None = None  # UNIX time of the key's last request
    model_spend: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UserFacts:
    """A user as ``/user/info`` shows it: its USD allowance (window and use), limits and spend."""

    id: str
    name: str
    usd: Allowance
    total_spend: float = 0.0
    limits: Limits | None = None
    created_at: datetime | None = None
    model_spend: Mapping[str, float] = field(default_factory=dict)


def budget_window(usd: Allowance, now: datetime) -> tuple[str | None, str | None]:
    """(``budget_duration``, ``budget_reset_at``) of a USD allowance: both null without a limit."""
    if usd.limit is None:
        return None, None
    return BUDGET_DURATIONS.get(usd.period), usd.resets_at(now)


def windowed_spend(usd: Allowance, total: float) -> float:
    """LiteLLM's ``spend``: the budget window's with a USD budget, else everything spent."""
    return round(usd.used if usd.limit is not None else total, 6)


def rounded(spend: Mapping[str, float]) -> dict[str, float]:
    return {model: round(amount, 6) for model, amount in spend.items()}


def key_info(quota: KeyQuota, facts: KeyFacts, now: datetime | None = None) -> dict[str, Any]:
    """One key as LiteLLM's key row (what ``/key/info`` puts under ``info``)."""
    now = now or datetime.now(UTC)
    usd = quota.usd
    limits = quota.limits or Limits()
    duration, reset_at = budget_window(usd, now)
    return {
        **EMPTY_KEY_FIELDS,
        "key_name": f"{facts.key_prefix}..." if facts.key_prefix else quota.label or quota.key_id,
        "key_alias": quota.label or None,
        "spend": windowed_spend(usd, quota.spend.total),
        "total_spend": round(quota.spend.total, 6),
        "max_budget": usd.limit,
        "expires": iso_from_unix(quota.expires_at),
        "models": list(quota.models or ()),
        "user_id": quota.user_id,
        "max_parallel_requests": limits.concurrency,
        "tpm_limit": limits.tpm,
        "rpm_limit": limits.rpm,
        "budget_duration": duration,
        "budget_reset_at": reset_at,
        "key_type": KEY_TYPE,
        "model_spend": rounded(facts.model_spend),
        "blocked": facts.status == "revoked",
        "status": facts.status,
        "created_at": iso_utc(facts.created_at),
        "created_by": facts.created_by,
        "last_active": iso_from_unix(facts.last_active),
        "last_rotation_at": iso_utc(facts.rotated_at),
    }


def user_info(user: UserFacts, now: datetime | None = None) -> dict[str, Any]:
    """One user as LiteLLM's user row."""
    now = now or datetime.now(UTC)
    limits = user.limits or Limits()
    duration, reset_at = budget_window(user.usd, now)
    return {
        **EMPTY_USER_FIELDS,
        "user_id": user.id,
        "user_alias": user.name,
        "max_budget": user.usd.limit,
        "spend": windowed_spend(user.usd, user.total_spend),
        "max_parallel_requests": limits.concurrency,
        "tpm_limit": limits.tpm,
        "rpm_limit": limits.rpm,
        "budget_duration": duration,
        "budget_reset_at": reset_at,
        "model_spend": rounded(user.model_spend),
        "created_at": iso_utc(user.created_at),
    }


def user_answer(user: UserFacts | None, keys: list[dict[str, Any]], now: datetime | None = None) -> dict[str, Any]:
    """``/user/info``: the user's row, its keys' rows and its teams (none until anygate has teams).
    ``user`` None: the admin's view of every key, as LiteLLM answers a proxy admin."""
    return {
        "user_id": user.id if user is not None else None,
        "user_info": user_info(user, now) if user is not None else None,
        "keys": keys,
        "teams": [],
    }


def team_answer(
    team: TeamRecord,
    member_ids: list[str],
    total_spend: float,
    usd: Allowance,
    keys: list[dict[str, Any]],
    now: datetime | None = None,
) -> dict[str, Any]:
    """``/team/info``: the team's row (its USD budget that binds first as ``max_budget``), its keys' rows
    and its memberships (every member a ``user``; a team admin is a key's role in anygate, not a member's)."""
    now = now or datetime.now(UTC)
    limits = Limits(**team.limits) if team.limits else Limits()
    duration, reset_at = budget_window(usd, now)
    info: dict[str, Any] = {
        "team_id": team.id,
        "team_alias": team.name,
        "organization_id": None,
        "admins": [],
        "members": [],
        "members_with_roles": [{"user_id": user_id, "user_email": None, "role": "user"} for user_id in member_ids],
        "metadata": {},
        "tpm_limit": limits.tpm,
        "rpm_limit": limits.rpm,
        "max_parallel_requests": limits.concurrency,
        "max_budget": usd.limit,
        "budget_duration": duration,
        "budget_reset_at": reset_at,
        "spend": windowed_spend(usd, total_spend),
        "models": list(team.models or ()),
        "blocked": False,
        "created_at": iso_utc(team.created_at),
        "model_max_budget": {},
        "model_spend": {},
    }
    memberships = [
        {
            "user_id": user_id,
            "team_id": team.id,
            "budget_id": None,
            "spend": 0.0,
            "litellm_budget_table": None,
            "budget_source": "none",  # a member has no team budget of its own: the team's binds
        }
        for user_id in member_ids
    ]
    return {"team_id": team.id, "team_info": info, "keys": keys, "team_memberships": memberships}
