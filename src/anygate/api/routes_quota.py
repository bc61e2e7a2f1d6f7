"""Quota of the calling key (neutral and OpenRouter shapes) and usage reports for the admin.

GET /v1/quota, /quota                          neutral
GET /api/v1/key, /api/v1/auth/key, /v1/key     OpenRouter: the key
GET /api/v1/credits, /v1/credits               OpenRouter: the binding USD budget as credits
GET /v1/usage[?format=csv]                     ledger totals, filtered and grouped: the admin all,
                                               a key holder its own key and the keys made from it

LiteLLM's shapes (``/key/info``, ``/user/info``, ``/team/info``) are in ``routes_litellm``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response

from anygate.accounting.reports import GROUPS, UsageFilter, as_csv, report, unpriced_models
from anygate.accounting.request_log import iso_seconds
from anygate.api.deps import CallerDep, StateDep
from anygate.api.state import AppState
from anygate.auth import Principal
from anygate.errors import InvalidRequest, PermissionDenied
from anygate.quota import shapes, standing

router = APIRouter(tags=["quota"])


def json_response(data: Any) -> Response:
    # Not the app's default ORJSONResponse: this FastAPI deprecates it (a warning on every response).
    return Response(orjson.dumps(data), media_type="application/json")


async def key_quota(state: AppState, principal: Principal) -> shapes.KeyQuota:
    return await standing.key_quota(state.accounting, state.accounting.ledger, principal)


@router.get("/v1/quota")
@router.get("/quota")
async def neutral_quota(state: StateDep, caller: CallerDep) -> Response:
    return json_response(shapes.neutral(await key_quota(state, caller)))


@router.get("/api/v1/key")
@router.get("/api/v1/auth/key")
@router.get("/v1/key")
async def openrouter_quota(state: StateDep, caller: CallerDep) -> Response:
    return json_response(shapes.openrouter(await key_quota(state, caller)))


@router.get("/api/v1/credits")
@router.get("/v1/credits")
async def openrouter_credits(state: StateDep, caller: CallerDep) -> Response:
    """``total_credits`` is the USD budget that binds the key and ``total_usage`` what its window used; a
    key without a USD budget has no credits to report (403, as OpenRouter answers a key it refuses)."""
    answer = shapes.credits(await key_quota(state, caller))
    if answer is None:
        raise PermissionDenied(
            "This key has no USD budget, so no credits; its spend is at /api/v1/key", code="no_usd_budget"
        )
    return json_response(answer)


# ``start``/``end``: an ISO 8601 date (``2026-12-01``) or date and time (RFC 3339).
MOMENT = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}]}


GROUP = "(hour|day|month|key|model|provider|user|team)"
GROUPS_SCHEMA = {"type": "string", "pattern": f"^({GROUP}(,{GROUP})*)?$"}


def unix_time(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        return iso_seconds(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be an ISO date or time, not '{value}'", param=name) from None


@router.get("/v1/usage")
async def usage(
    state: StateDep,
    caller: CallerDep,
    key: str | None = None,
    user: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    start: Annotated[str | None, Query(description="From (inclusive)", json_schema_extra=MOMENT)] = None,
    end: Annotated[str | None, Query(description="Until (exclusive)", json_schema_extra=MOMENT)] = None,
    group_by: Annotated[
        str | None,
        Query(
            description="comma-separated: hour, day, month (UTC buckets), key, model, provider, user, team",
            json_schema_extra=GROUPS_SCHEMA,
        ),
    ] = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    ledger = state.accounting.ledger
    groups = [g.strip() for g in (group_by or "").split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise InvalidRequest(f"group_by: unknown group '{unknown[0]}' (known: {', '.join(GROUPS)})", param="group_by")
    # A key holder's report is confined to its own key and the keys made from it (filters narrow it further).
    family = None if caller.is_admin else caller.key_id
    where = UsageFilter(key, user, provider, model, unix_time(start, "start"), unix_time(end, "end"), family)
    await ledger.flush()
    rows = await report(ledger.engine, where, groups)  # type: ignore[arg-type]
    if format == "csv":
        headers = {"content-disposition": 'attachment; filename="anygate-usage.csv"'}
        return Response(as_csv(rows, groups), media_type="text/csv; charset=utf-8", headers=headers)
    missing = await unpriced_models(ledger.engine, where)
    return json_response({"object": "list", "group_by": groups, "data": rows, "unpriced_models": missing})
