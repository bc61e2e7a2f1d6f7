"""The request log: the ledger's per-request rows (``accounting/request_log.py``).

GET /v1/requests                 newest first, filtered, a page at a time (``cursor``)
GET /v1/requests/{request_id}    one row

An admin key sees every row; any other key sees its own rows and those of the keys made from it, and
gets 404 for a row it may not see, as for one that does not exist. A bad filter is a 400 naming it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from anygate.accounting.request_log import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    BadCursor,
    RequestQuery,
    find_request,
    list_requests,
    moment_of,
)
from anygate.api.deps import CallerDep, StateDep
from anygate.api.routes_quota import json_response
from anygate.auth import Principal
from anygate.errors import InvalidRequest, NotFound

router = APIRouter(tags=["requests"])

MOMENT = {
    "anyOf": [{"type": "string", "pattern": r"^\d{1,12}(\.\d{1,6})?$"}, {"type": "string", "format": "date-time"}]
}
STATUS = {"pattern": "^[1-5][0-9][0-9]$"}
LIMIT = {"pattern": "^([1-9]|[1-9][0-9]|1[0-9][0-9]|200)$"}


def viewer_of(caller: Principal) -> str | None:
    return None if caller.is_admin else caller.key_id


def moment(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        return moment_of(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be UNIX seconds or an ISO 8601 time, not '{value}'", param=name) from None


def whole_number(value: str | None, name: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    number = int(value) if value.isascii() and value.isdigit() and len(value) <= 6 else low - 1
    if not low <= number <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}, not '{value}'", param=name)
    return number


@router.get("/v1/requests")
async def requests(
    state: StateDep,
    caller: CallerDep,
    key_id: str | None = None,
    user_id: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    status: Annotated[str | None, Query(description="An HTTP status (100-599)", json_schema_extra=STATUS)] = None,
    since: Annotated[
        str | None, Query(description="From (inclusive): UNIX seconds or ISO 8601", json_schema_extra=MOMENT)
    ] = None,
    until: Annotated[
        str | None, Query(description="Until (exclusive): UNIX seconds or ISO 8601", json_schema_extra=MOMENT)
    ] = None,
    limit: Annotated[
        str | None,
        Query(description=f"Rows per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})", json_schema_extra=LIMIT),
    ] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the page before")] = None,
) -> Response:
    """Requests newest first; a page ends with the cursor of the next (null on the last)."""
    query = RequestQuery(
        viewer=viewer_of(caller),
        key_id=key_id,
        user_id=user_id,
        provider_id=provider,
        model=model,
        status=whole_number(status, "status", 100, 599),
        since=moment(since, "since"),
        until=moment(until, "until"),
    )
    rows = whole_number(limit, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
    ledger = state.accounting.ledger
    await ledger.flush()  # the rows this worker still holds: a request just answered is in the log
    try:
        page = await list_requests(ledger.engine, query, rows, cursor)
    except BadCursor:
        raise InvalidRequest(
            "cursor is not one this log gave out: pass next_cursor as it came", param="cursor"
        ) from None
    return json_response({"object": "list", "data": page.records, "next_cursor": page.next_cursor})


@router.get("/v1/requests/{request_id}")
async def request_detail(state: StateDep, caller: CallerDep, request_id: str) -> Response:
    ledger = state.accounting.ledger
    await ledger.flush()
    found = await find_request(ledger.engine, request_id, viewer_of(caller))
    if found is None:
        raise NotFound(f"Unknown request '{request_id}'", code="request_not_found")
    return json_response(found)
