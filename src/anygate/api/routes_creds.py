"""Bring your own key: ``GET/PUT /auth/creds``, the caller's own provider keys.

    PUT {"providers": {"groq": {"apiKey": "gsk_..."}}}    sets
    PUT {"providers": {"groq": {"apiKey": null}}}         deletes the field (an empty section disappears)
    PUT {"providers": {"groq": null}}                     deletes the section
    PUT {"providers": null}                               deletes every section
Absent keys are kept; unknown provider ids are 400; every response is masked.

Who owns what is set: a key sets its own (used by it and the keys it made, never by its user's other
keys: several people may share one user record, a course for one, and one of them must not choose where
the others' prompts go, or move their spend off the budget); a person signed in to the console as a user
record sets that user's, which every key of the user falls back on (``caller_keys.CallerKeys.key_for``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from anygate.api.deps import CallerDep, JsonBody, StateDep
from anygate.api.openapi import request_body
from anygate.api.state import AppState
from anygate.auth import Principal
from anygate.errors import InvalidRequest
from anygate.store.credentials import Sections

router = APIRouter(tags=["credentials"])

SECTION_FIELDS = ("apiKey",)


def mask_secret(value: str) -> str:
    """``"***"`` for 16 characters or fewer, else the first 8, ``...`` and the last 4."""
    return "***" if len(value) <= 16 else f"{value[:8]}...{value[-4:]}"


def masked(sections: Sections) -> dict[str, Any]:
    providers = {
        provider: {name: mask_secret(v) if isinstance(v, str) else v for name, v in section.items()}
        for provider, section in sorted(sections.items())
        if section
    }
    return {"providers": providers} if providers else {}


def owner_of(caller: Principal) -> str:
    return caller.user_id if caller.via_session and caller.user_id else caller.key_id


def merge_section(provider: str, current: dict[str, Any], changes: Any) -> dict[str, Any]:
    if not isinstance(changes, dict):
        raise InvalidRequest(f"providers.{provider}: must be an object or null", param=f"providers.{provider}")
    merged = dict(current)
    for name, value in changes.items():
        where = f"providers.{provider}.{name}"
        if name not in SECTION_FIELDS:
            raise InvalidRequest(f"{where}: unknown field", param=where, code="invalid_field")
        if value is None:
            merged.pop(name, None)
        elif not isinstance(value, str) or not value.strip():
            raise InvalidRequest(f"{where}: must be a non-empty string or null", param=where, code="invalid_field")
        elif name in current and value == mask_secret(current[name]):
            continue  # the masked value sent back unchanged
        else:
            merged[name] = value.strip()
    return merged


def merge_credentials(state: AppState, current: Sections, body: dict[str, Any]) -> Sections:
    unknown = sorted(set(body) - {"providers"})
    if unknown:
        raise InvalidRequest(f"{unknown[0]}: unknown field", param=unknown[0], code="invalid_field")
    if "providers" not in body:
        return current
    changes = body["providers"]
    if changes is None:
        return {}
    if not isinstance(changes, dict):
        raise InvalidRequest("providers: must be an object or null", param="providers", code="invalid_field")
    merged = dict(current)
    for provider, section in changes.items():
        runtime = state.registry.find(provider)
        if runtime is None:
            raise InvalidRequest(
                f"providers.{provider}: unknown provider '{provider}'",
                param=f"providers.{provider}",
                code="unknown_provider",
            )
        if section is None:
            merged.pop(runtime.id, None)
            continue
        merged[runtime.id] = merge_section(provider, merged.get(runtime.id, {}), section)
    return {provider: section for provider, section in merged.items() if section}


@router.get("/auth/creds")
async def get_credentials(state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """The caller's own provider keys, masked."""
    return masked(await state.store.credentials.get(owner_of(caller)))


@router.put("/auth/creds", openapi_extra=request_body("CredentialsUpdate"))
async def put_credentials(state: StateDep, caller: CallerDep, body: JsonBody) -> dict[str, Any]:
    """Merge the caller's provider keys (a value sets, ``null`` deletes, absent keeps); answer masked."""
    store = state.sealing_store()
    owner = owner_of(caller)
    current = await store.credentials.get(owner)
    merged = merge_credentials(state, current, body)
    await store.credentials.replace(owner, merged)
    await state.store_changed()
    await state.audit.record(caller, "credentials.update", "credentials", owner, masked(current), masked(merged))
    return masked(merged)
