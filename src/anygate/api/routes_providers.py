"""Providers at runtime (admin): create, read, update, delete and live-test providers kept in the store.

Providers from the config file or the environment are shown read-only; a stored provider with the same
id as a file provider cannot be created (the file wins).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError

from anygate.api.deps import AdminDep, JsonBody, StateDep
from anygate.api.openapi import request_body
from anygate.api.state import AppState
from anygate.errors import Conflict, InvalidRequest, NotFound
from anygate.management.provider_view import configured_view, stored_view, unavailable_view
from anygate.management.providers import (
    MASK,
    checked,
    merge_provider,
    reject_kept_key,
    require_secrets_on_move,
    split_key,
    translate_names,
)
from anygate.management.schemas import ProbeRequest
from anygate.probe import capabilities, probe_provider
from anygate.settings import ProviderConfig, describe_errors
from anygate.store.providers import KEEP, DuplicateProvider, StoredProvider

router = APIRouter(tags=["providers"])


def stored_config(stored: StoredProvider) -> ProviderConfig:
    """The stored provider object, validated; a row that fails today's checks is a 409 saying how to fix it."""
    try:
        return stored.validated()
    except ValidationError as exc:
        message = f"Provider '{stored.id}' as stored is invalid ({describe_errors(exc)}); correct it with PUT"
        raise Conflict(message, code="invalid_stored_provider") from None


def reject_read_only(state: AppState, provider_id: str) -> None:
    runtime = state.registry.find(provider_id)
    if runtime is not None and runtime.origin != "store":
        raise Conflict(
            f"Provider '{provider_id}' comes from the {runtime.origin} configuration and is read-only here",
            code="read_only_provider",
        )
    if provider_id in state.settings.provider_aliases:
        raise Conflict(f"'{provider_id}' is an alias of a configured provider", code="read_only_provider")


@router.post("/v1/providers", status_code=201, openapi_extra=request_body("ProviderCreate"))
async def create_provider(body: JsonBody, state: StateDep, caller: AdminDep) -> dict[str, Any]:
    """Add a provider (a preset id or ``custom``); its key, extra keys and headers are stored encrypted."""
    spec, api_key = split_key(translate_names(body))
    reject_kept_key(api_key)
    spec = merge_provider({}, spec)
    config = await checked(spec)
    reject_read_only(state, config.id)
    try:
        await state.sealing_store().providers.create(spec, api_key if isinstance(api_key, str) else None)
    except DuplicateProvider:
        raise Conflict(f"Provider '{config.id}' already exists", param="id", code="duplicate_provider") from None
    await state.store_changed()
    view = configured_view(state.registry, config, isinstance(api_key, str) and bool(api_key), "store")
    await state.audit.record(caller, "provider.create", "provider", config.id, None, view)
    return view


@router.get("/v1/providers/{provider_id}")
async def get_provider(provider_id: str, state: StateDep, _: AdminDep) -> dict[str, Any]:
    runtime = state.registry.find(provider_id)
    if runtime is not None and runtime.origin != "store":
        return configured_view(state.registry, runtime.config, runtime.client.is_configured, runtime.origin)
    stored = await state.store.providers.get(provider_id)
    if stored is None:
        raise NotFound(f"Unknown provider '{provider_id}'", code="provider_not_found")
    if stored.problem is not None:
        return unavailable_view(stored)
    return stored_view(state.registry, stored)


@router.put("/v1/providers/{provider_id}", openapi_extra=request_body("ProviderUpdate"))
async def update_provider(provider_id: str, body: JsonBody, state: StateDep, caller: AdminDep) -> dict[str, Any]:
    """Merge the given fields into the stored provider; ``"***"`` or ``""`` for ``api_key``, a header
    value or an ``api_keys`` entry keeps the stored value, unless the change moves the provider to
    another scheme, host or port (then every stored secret must be given again: 400 ``api_key_required``)."""
    reject_read_only(state, provider_id)
    store = state.sealing_store()
    found = await store.providers.get(provider_id)
    if found is None:
        raise NotFound(f"Unknown provider '{provider_id}'", code="provider_not_found")
    stored = found.readable()
    changes, api_key = split_key(translate_names(body))
    if changes.get("id", provider_id) != provider_id:
        raise InvalidRequest("id: cannot be changed", param="id", code="invalid_field")
    spec = merge_provider(stored.config, changes)
    config = await checked(spec)
    require_secrets_on_move(stored, changes, api_key, config)
    if api_key in (MASK, ""):
        api_key = KEEP
    before = stored_view(state.registry, found)
    await store.providers.update(spec, api_key)
    await state.store_changed()
    has_key = bool(stored.api_key) if api_key is KEEP else bool(api_key)
    view = configured_view(state.registry, config, has_key, "store")
    await state.audit.record(caller, "provider.update", "provider", provider_id, before, view)
    return view


@router.delete("/v1/providers/{provider_id}")
async def delete_provider(provider_id: str, state: StateDep, caller: AdminDep) -> dict[str, Any]:
    reject_read_only(state, provider_id)
    found = await state.store.providers.get(provider_id)
    before = stored_view(state.registry, found) if found is not None and found.problem is None else {"id": provider_id}
    if not await state.store.providers.delete(provider_id):
        raise NotFound(f"Unknown provider '{provider_id}'", code="provider_not_found")
    await state.store_changed()
    await state.audit.record(caller, "provider.delete", "provider", provider_id, before, None)
    return {"id": provider_id, "deleted": True}


@router.post("/v1/providers/{provider_id}/test")
async def test_provider(
    provider_id: str, state: StateDep, _: AdminDep, body: ProbeRequest | None = None
) -> dict[str, Any]:
    """Probe the provider live (model list, 1-token chat, streaming, usage on streams, embeddings) and
    store what it supports; the result shows as ``capabilities`` on the provider. The probe has
    ``probe.PROBE_DEADLINE`` seconds in all and makes each request once; out of time, ``timed_out`` names
    the check that got no answer and nothing is stored."""
    model = body.model if body is not None else None
    store = state.store
    runtime = state.registry.find(provider_id)
    if runtime is not None:
        result = await probe_provider(runtime.client, model or runtime.config.default_model)
    else:
        found = await store.providers.get(provider_id)
        if found is None:
            raise NotFound(f"Unknown provider '{provider_id}'", code="provider_not_found")
        stored = found.readable()
        config = stored_config(stored)
        client = state.registry.make_client(config, stored.api_key)
        result = await probe_provider(client, model or config.default_model)
    result["capabilities"] = capabilities(result)
    if "timed_out" in result:
        # Checks never made say nothing about what the provider lacks: routing keeps what it knew.
        return result
    await store.providers.save_probe(runtime.id if runtime else provider_id, result)
    await state.store_changed()
    return result
