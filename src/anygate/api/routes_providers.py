"""Providers at runtime (admin): create, read, update, delete and live-test providers kept in the store.

Providers from the config file or the environment are shown read-only; a stored provider with the same
id as a file provider cannot be created (the file wins).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from anygate.api.deps import AdminDep, StateDep
from anygate.api.state import AppState
from anygate.errors import Conflict, InvalidRequest, NotFound
from anygate.probe import capabilities, probe_provider
from anygate.provider_input import MASK, checked, is_secret_header, merge_headers, split_key, translate_names
from anygate.settings import ProviderConfig
from anygate.store.providers import KEEP, DuplicateProvider, StoredProvider
from anygate.upstream import OpenAICompatibleProvider

router = APIRouter(tags=["providers"])

PROVIDER_EXAMPLE = {
    "id": "campus",
    "type": "custom",
    "base_url": "https://llm.example.edu/v1",
    "api_key": "sk-...",
    "models": ["llama-3.1-70b"],
}
ProviderBody = Annotated[dict[str, Any], Body(examples=[PROVIDER_EXAMPLE])]


def provider_view(state: AppState, config: ProviderConfig, has_key: bool, origin: str) -> dict[str, Any]:
    """The management view of a provider: its settings, ``api_key`` and credential-like headers as ``"***"``."""
    runtime = state.registry.find(config.id)
    live = state.registry.describe(runtime) if runtime is not None and runtime.origin == origin else {}
    view: dict[str, Any] = {
        "id": config.id,
        "name": config.name,
        "type": config.type,
        "base_url": config.base_url,
        "configured": has_key or config.auth == "none",
        "healthy": None,
        "default": False,
        "models": list(config.models),
        **live,
        "origin": origin,
        "read_only": origin != "store",
        "api_key": MASK if has_key else None,
        "auth": config.auth,
        "headers": {name: MASK if is_secret_header(name) else value for name, value in config.headers.items()},
        "allow_private_network": config.allow_private_network,
        "timeout": config.timeout,
        "max_retries": config.max_retries,
        "enabled": config.enabled,
        "quota": config.quota.model_dump() if config.quota else None,
    }
    return view


def stored_view(state: AppState, stored: StoredProvider) -> dict[str, Any]:
    config = ProviderConfig.model_validate(stored.config)
    return provider_view(state, config, bool(stored.api_key), "store")


def reject_read_only(state: AppState, provider_id: str) -> None:
    runtime = state.registry.find(provider_id)
    if runtime is not None and runtime.origin != "store":
        raise Conflict(
            f"Provider '{provider_id}' comes from the {runtime.origin} configuration and is read-only here",
            code="read_only_provider",
        )
    if provider_id in state.settings.provider_aliases:
        raise Conflict(f"'{provider_id}' is an alias of a configured provider", code="read_only_provider")


@router.post("/v1/providers", status_code=201)
async def create_provider(body: ProviderBody, state: StateDep, _: AdminDep) -> dict[str, Any]:
    """Add a provider (a preset id or ``custom``); its key is stored encrypted and shown as ``"***"``."""
    spec, api_key = split_key(translate_names(body))
    config = await checked(spec)
    reject_read_only(state, config.id)
    try:
        await state.require_store().providers.create(spec, api_key if isinstance(api_key, str) else None)
    except DuplicateProvider:
        raise Conflict(f"Provider '{config.id}' already exists", param="id", code="duplicate_provider") from None
    await state.store_changed()
    return provider_view(state, config, isinstance(api_key, str) and bool(api_key), "store")


@router.get("/v1/providers/{provider_id}")
async def get_provider(provider_id: str, state: StateDep, _: AdminDep) -> dict[str, Any]:
    runtime = state.registry.find(provider_id)
    if runtime is not None and runtime.origin != "store":
        return provider_view(state, runtime.config, runtime.client.is_configured, runtime.origin)
    stored = await state.require_store().providers.get(provider_id)
    if stored is None:
        raise NotFound(f"Unknown provider '{provider_id}'", code="provider_not_found")
    return stored_view(state, stored)


@router.put("/v1/providers/{provider_id}")
async def update_provider(provider_id: str, body: ProviderBody, state: StateDep, _: AdminDep) -> dict[str, Any]:
    """Merge the given fields into the stored provider; ``api_key`` ``"***"`` or ``""`` keeps the key."""
    reject_read_only(state, provider_id)
    store = state.require_store()
    stored = await store.providers.get(provider_id)
    if stored is None:
        raise NotFound(f"Unknown provider '{provider_id}'", code="provider_not_found")
    changes, api_key = split_key(translate_names(body))
    if changes.get("id", provider_id) != provider_id:
        raise InvalidRequest("id: cannot be changed", param="id", code="invalid_field")
    if isinstance(changes.get("headers"), dict):
        changes["headers"] = merge_headers(stored.config.get("headers") or {}, changes["headers"])
    spec = {**stored.config, **changes}
    config = await checked(spec)
    if api_key in (MASK, ""):
        api_key = KEEP
    await store.providers.update(spec, api_key)
    await state.store_changed()
    has_key = bool(stored.api_key) if api_key is KEEP else bool(api_key)
    return provider_view(state, config, has_key, "store")


@router.delete("/v1/providers/{provider_id}")
async def delete_provider(provider_id: str, state: StateDep, _: AdminDep) -> dict[str, Any]:
    reject_read_only(state, provider_id)
    if not await state.require_store().providers.delete(provider_id):
        raise NotFound(f"Unknown provider '{provider_id}'", code="provider_not_found")
    await state.store_changed()
    return {"id": provider_id, "deleted": True}


@router.post("/v1/providers/{provider_id}/test")
async def test_provider(
    provider_id: str,
    state: StateDep,
    _: AdminDep,
    body: Annotated[dict[str, Any] | None, Body(examples=[{"model": "llama-3.1-8b-instant"}])] = None,
) -> dict[str, Any]:
    """Probe the provider live (model list, 1-token chat, streaming, usage on streams, embeddings) and
    store what it supports; the result shows as ``capabilities`` on the provider."""
    model = (body or {}).get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("model: must be a string", param="model", code="invalid_field")
    store = state.require_store()
    runtime = state.registry.find(provider_id)
    if runtime is not None:
        result = await probe_provider(runtime.client, model)
    else:
        stored = await store.providers.get(provider_id)
        if stored is None:
            raise NotFound(f"Unknown provider '{provider_id}'", code="provider_not_found")
        config = ProviderConfig.model_validate(stored.config)
        client = OpenAICompatibleProvider.from_config(config, stored.api_key, state.pool)
        result = await probe_provider(client, model)
    result["capabilities"] = capabilities(result)
    await store.providers.save_probe(runtime.id if runtime else provider_id, result)
    await state.store_changed()
    return result
