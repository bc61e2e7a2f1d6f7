"""The audit log (admin, read-only): ``GET /v1/audit`` newest first, a page at a time.

Filters: ``actor`` (a key id or alias, ``cli``), ``target`` (the id changed), ``since``/``until`` (ISO
8601); ``cursor`` is the ``next_cursor`` of the page before. No route writes, changes or deletes an entry:
entries are written only by the changes they record.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from anygate.api.deps import AdminDep, StateDep
from anygate.api.routes_keys import iso
from anygate.api.routes_quota import MOMENT, unix_time
from anygate.errors import InvalidRequest
from anygate.store.audit import MAX_PAGE, AuditEntry, AuditQuery

router = APIRouter(tags=["audit"])


def entry_view(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": iso(entry.at),
        "actor": {"id": entry.actor_id, "label": entry.actor_label},
        "action": entry.action,
        "target": {"type": entry.target_type, "id": entry.target_id},
        "before": entry.before,
        "after": entry.after,
    }


def moment(value: str | None, name: str) -> datetime | None:
    seconds = unix_time(value, name)
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


@router.get("/v1/audit")
async def audit(
    state: StateDep,
    _: AdminDep,
    actor: str | None = None,
    target: str | None = None,
    since: Annotated[str | None, Query(description="From (inclusive), ISO 8601", json_schema_extra=MOMENT)] = None,
    until: Annotated[str | None, Query(description="Until (exclusive), ISO 8601", json_schema_extra=MOMENT)] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the page before", pattern="^[0-9]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> dict[str, Any]:
    if cursor is not None and not cursor.isdigit():
        raise InvalidRequest("cursor: not a cursor this route gave", param="cursor")
    query = AuditQuery(
        actor or None,
        target or None,
        moment(since, "since"),
        moment(until, "until"),
        int(cursor) if cursor is not None else None,
        limit,
    )
    entries = await state.store.audit.entries(query)
    next_cursor = str(entries[-1].id) if len(entries) == limit else None
    return {"object": "list", "data": [entry_view(e) for e in entries], "next_cursor": next_cursor}
