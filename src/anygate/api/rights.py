"""What a non-admin key may do with keys: see its own (and its user's), and make keys no stronger than itself."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from anygate.auth import Principal
from anygate.errors import PermissionDenied
from anygate.store.keys import KeyRecord


def owns(caller: Principal, record: KeyRecord) -> bool:
    """Whether ``caller`` may see and manage ``record``."""
    if caller.is_admin:
        return True
    if record.id == caller.key_id or record.created_by == caller.key_id:
        return True
    return caller.user_id is not None and record.user_id == caller.user_id


def _narrower_patterns(own: tuple[str, ...] | None, wanted: list[str] | None) -> bool:
    if own is None:
        return True
    if wanted is None:
        return False
    return all(any(fnmatchcase(pattern, mine) for mine in own) for pattern in wanted)


def _narrower_amounts(own: Any, wanted: dict[str, Any] | None, names: tuple[str, ...]) -> bool:
    if own is None:
        return True
    if wanted is None:
        return False
    for name in names:
        mine = getattr(own, name)
        theirs = wanted.get(name)
        if mine is not None and (theirs is None or theirs > mine):
            return False
    return True


def check_no_stronger(caller: Principal, fields: dict[str, Any]) -> None:
    """Raise PermissionDenied unless a key with ``fields`` has no more rights than ``caller``."""
    if caller.is_admin:
        return
    if fields.get("role", "user") != "user":
        raise PermissionDenied("A user key cannot create or make an admin key", param="role", code="too_many_rights")
    if fields.get("user_id") not in (None, caller.user_id):
        raise PermissionDenied("A user key can only manage its own user's keys", param="user_id", code="not_owner")
    for name in ("models", "providers"):
        if name in fields and not _narrower_patterns(getattr(caller, name), fields[name]):
            raise PermissionDenied(f"{name}: wider than the calling key's own", param=name, code="too_many_rights")
    if "budget" in fields and not _narrower_amounts(caller.budget, fields["budget"], ("tokens", "usd")):
        raise PermissionDenied("budget: larger than the calling key's own", param="budget", code="too_many_rights")
    limit_names = ("rpm", "tpm", "concurrency")
    if "limits" in fields and not _narrower_amounts(caller.limits, fields["limits"], limit_names):
        raise PermissionDenied("limits: higher than the calling key's own", param="limits", code="too_many_rights")
    if caller.expires_at is not None and "expires_at" in fields:
        wanted: datetime | None = fields["expires_at"]
        if wanted is None or wanted.timestamp() > caller.expires_at:
            raise PermissionDenied(
                "expires_at: later than the calling key's own", param="expires_at", code="too_many_rights"
            )


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
    for name in ("budget", "limits"):
        if inherited.get(name) is None and getattr(caller, name) is not None:
            inherited[name] = asdict(getattr(caller, name))
    if inherited.get("expires_at") is None and caller.expires_at is not None:
        inherited["expires_at"] = datetime.fromtimestamp(caller.expires_at, UTC)
    return inherited
