"""Keys and users as the store returns them: plain, frozen records (never a secret: only a key's hash)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class KeyRecord:
    id: str
    key_hash: str
    key_prefix: str
    alias: str
    user_id: str | None
    role: str
    models: list[str] | None
    providers: list[str] | None
    budget: Any  # a list of budgets (``budget_lists``), or one budget object stored before 0006
    limits: dict[str, Any] | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    created_by: str | None
    previous_hash: str | None = None
    previous_valid_until: datetime | None = None
    alerts: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"KeyRecord(id={self.id!r}, alias={self.alias!r}, role={self.role!r}, user={self.user_id!r})"


@dataclass(frozen=True)
class UserRecord:
    id: str
    name: str
    budget: Any  # a list of budgets (``budget_lists``), or one budget object stored before 0006
    limits: dict[str, Any] | None
    created_at: datetime
    team_id: str | None = None
    alerts: dict[str, Any] | None = None


@dataclass(frozen=True)
class TeamRecord:
    id: str
    name: str
    budgets: list[dict[str, Any]] | None
    limits: dict[str, Any] | None
    models: list[str] | None
    providers: list[str] | None
    alerts: dict[str, Any] | None
    created_at: datetime
