"""Callers as the store's keys make them: a key record (its user, the keys above it) as a ``Principal``."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from anygate.auth import Budget, Limits, Principal
from anygate.store.families import ADMIN_ROLE
from anygate.store.records import KeyRecord, UserRecord


def budget_of(raw: dict[str, Any] | None) -> Budget | None:
    return Budget(**raw) if raw else None


def limits_of(raw: dict[str, Any] | None) -> Limits | None:
    return Limits(**raw) if raw else None


def principal_of(key: KeyRecord, user: UserRecord | None, ancestors: tuple[Principal, ...] = ()) -> Principal:
    """The caller a key makes; with ``ancestors`` (see ``families``) its expiry is the earliest along them."""
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
        budget=budget_of(key.budget),
        limits=limits_of(key.limits),
        user_budget=budget_of(user.budget) if user else None,
        user_limits=limits_of(user.limits) if user else None,
        ancestors=ancestors,
    )


def previous_secret_principal(principal: Principal, valid_until: datetime) -> Principal:
    """The key's caller, reached with its previous secret: the same key, up to the end of its grace hour."""
    until = valid_until.timestamp()
    if principal.expires_at is not None:
        until = min(until, principal.expires_at)
    return replace(principal, expires_at=until)
