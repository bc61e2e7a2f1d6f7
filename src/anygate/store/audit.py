"""The audit log: every management change, who made it, when, and the values before and after.

Append-only: the store writes rows and reads them (newest first, a cursor per page); nothing updates or
deletes one, and no API route writes it except by making the change it records. Secrets never reach it:
values are masked (``masked``) before they are written, whatever the caller passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from anygate.auth import Principal
from anygate.store.database import Database
from anygate.store.tables import audit_log, utcnow

MASK = "***"
# Member names whose values are secrets (a provider's key, a caller's key, headers that carry tokens).
SECRET_NAMES = re.compile(r"(^|_)(key|api_?key|apikey|secret|secrets|token|password|authorization)$", re.IGNORECASE)
SECRET_CONTAINERS = frozenset({"headers", "api_keys", "providers_keys"})
MAX_PAGE = 500


def masked(value: Any, name: str = "") -> Any:
    """``value`` with every secret-named member (and every value under ``headers``) replaced by ``***``."""
    if isinstance(value, dict):
        if name.lower() in SECRET_CONTAINERS:
            return {k: MASK for k in value}
        return {
            k: (MASK if v is not None and SECRET_NAMES.search(str(k)) else masked(v, str(k))) for k, v in value.items()
        }
    if isinstance(value, list):
        if name.lower() in SECRET_CONTAINERS:
            return [MASK for _ in value]
        return [masked(item, name) for item in value]
    return value


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor_id: str
    actor_label: str | None
    action: str
    target_type: str
    target_id: str | None
    before: Any
    after: Any


@dataclass(frozen=True)
class AuditQuery:
    actor: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None  # the cursor: entries older than this one
    limit: int = 100


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self,
        actor: Principal | str,
        action: str,
        target_type: str,
        target_id: str | None,
        before: Any = None,
        after: Any = None,
    ) -> None:
        """Append one entry (``actor``: the caller, or a name such as ``cli``)."""
        actor_id, label = (actor, actor) if isinstance(actor, str) else (actor.key_id, actor.label or None)
        async with self.db.connect() as connection:
            await connection.execute(
                audit_log.insert().values(
                    at=utcnow(),
                    actor_id=actor_id,
                    actor_label=label,
                    action=action,
                    target_type=target_type,
                    target_id=target_id,
                    before=masked(before),
                    after=masked(after),
                )
            )

    async def entries(self, query: AuditQuery) -> list[AuditEntry]:
        """Newest first; ``before_id`` pages on."""
        statement = select(audit_log).order_by(audit_log.c.id.desc()).limit(max(1, min(query.limit, MAX_PAGE)))
        if query.actor is not None:
            statement = statement.where(
                (audit_log.c.actor_id == query.actor) | (audit_log.c.actor_label == query.actor)
            )
        if query.target is not None:
            statement = statement.where(audit_log.c.target_id == query.target)
        if query.since is not None:
            statement = statement.where(audit_log.c.at >= query.since)
        if query.until is not None:
            statement = statement.where(audit_log.c.at < query.until)
        if query.before_id is not None:
            statement = statement.where(audit_log.c.id < query.before_id)
        async with self.db.connect() as connection:
            rows = await connection.execute(statement)
            return [AuditEntry(**row) for row in rows.mappings()]
