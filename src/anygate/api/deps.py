"""FastAPI dependencies for the management routes: the app state and the authenticated caller."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from anygate.api.http import PRINCIPAL_SCOPE_KEY, parse_json_object
from anygate.api.state import AppState
from anygate.auth import Principal
from anygate.errors import AuthenticationFailed, PermissionDenied

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.anygate
    return state


def get_principal(request: Request) -> Principal:
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if not isinstance(principal, Principal):
        raise AuthenticationFailed("Missing or invalid API key")
    return principal


async def get_caller(request: Request) -> Principal:
    """The authenticated caller. A key's request that changes something (making, changing or revoking
    keys, storing its provider keys) counts against its requests-per-minute limits, as its model requests
    do: every limit a key has holds against everything it can do. Reads are not counted (the console
    reads a page's worth at a time)."""
    principal = get_principal(request)
    if not principal.is_admin and request.method not in READ_METHODS:
        await get_state(request).accounting.count_request(principal)
    return principal


def get_optional_principal(request: Request) -> Principal | None:
    """The caller on a public route: who sent a valid key, else None (no key, or one that is not valid)."""
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY)
    return principal if isinstance(principal, Principal) else None


def require_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.is_admin:
        raise PermissionDenied("This route needs an admin key", code="admin_required")
    return principal


StateDep = Annotated[AppState, Depends(get_state)]
CallerDep = Annotated[Principal, Depends(get_caller)]
OptionalCallerDep = Annotated[Principal | None, Depends(get_optional_principal)]
AdminDep = Annotated[Principal, Depends(require_admin)]


async def json_object_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object, whatever its content type (the edge has capped its size)."""
    return parse_json_object(await request.body())


# Read by hand rather than as a FastAPI body: each route documents its schema (api/openapi.py) and
# validates the object itself, so absent, null and masked values keep their meaning.
JsonBody = Annotated[dict[str, Any], Depends(json_object_body)]
