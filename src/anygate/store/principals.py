"""Callers as the store's keys make them: a key record (its user, the keys above it) as a ``Principal``."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from anygate.auth import Limits, Principal
from anygate.store.budget_lists import budget_objects
from anygate.store.families import ADMIN_ROLE
from anygate.store.records import KeyRecord, TeamRecord, UserRecord

TEAM_ADMIN_ROLE = "team_admin"


def limits_of(raw: dict[str, Any] | None) -> Limits | None:
    return Limits(**raw) if raw else None


def _patterns(raw: list[str] | None) -> tuple[str, ...] | None:
    return tuple(raw) if raw is not None else None


def principal_of(
    key: KeyRecord,
    user: UserRecord | None,
    ancestors: tuple[Principal, ...] = (),
    team: TeamRecord | None = None,
) -> Principal:
    """The caller a key makes; with ``ancestors`` (see ``families``) its expiry is the earliest along them.
    ``team`` is its user's team: its budgets, limits and allowlists bind the key too."""
    expiries = [a.expires_at for a in ancestors if a.expires_at is not None]
    if key.expires_at is not None:
        expiries.append(key.expires_at.timestamp())
    return Principal(
        key_id=key.id,
        is_admin=key.role == ADMIN_ROLE,
        label=key.alias,
        user_id=key.user_id,
        models=tuple(key.models) if key.models is not None else None,
        providers=tuple(key.providers) if key.providers is not None else None,
        expires_at=min(expiries) if expiries else None,
        budgets=budget_objects(key.budget),
        limits=limits_of(key.limits),
        user_budgets=budget_objects(user.budget) if user else (),
        user_limits=limits_of(user.limits) if user else None,
        ancestors=ancestors,
        team_id=team.id if team else None,
        team_budgets=budget_objects(team.budgets) if team else (),
        team_limits=limits_of(team.limits) if team else None,
        team_models=_patterns(team.models) if team else None,
        team_providers=_patterns(team.providers) if team else None,
        is_team_admin=key.role == TEAM_ADMIN_ROLE and team is not None,
    )


def previous_secret_principal(principal: Principal, valid_until: datetime) -> Principal:
    """The key's caller, reached with its previous secret: the same key, up to the end of its grace hour."""
    until = valid_until.timestamp()
    if principal.expires_at is not None:
        until = min(until, principal.expires_at)
    return replace(principal, expires_at=until)
