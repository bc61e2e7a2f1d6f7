"""Read-only routes: health, metrics, the model list and the provider list."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from fastapi.responses import JSONResponse, RedirectResponse

from anygate.accounting.pricing import MILLION, Price
from anygate.api.deps import AdminDep, CallerDep, OptionalCallerDep, StateDep
from anygate.auth import Principal
from anygate.errors import ModelNotFound, NotFound, ServiceUnavailable
from anygate.management.provider_view import routed_view, unavailable_view
from anygate.registry import ProviderRegistry
from anygate.wire.anthropic_models import anthropic_model_info, anthropic_model_list

router = APIRouter()
CREATED = int(time.time())


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root() -> RedirectResponse:
    """A browser opening the gateway's address lands in the console. The Location is a path: the edge never
    lets a redirect name a host (``headers.relative_locations``)."""
    return RedirectResponse("/ui/", status_code=307)


@router.get("/health", tags=["health"])
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready", tags=["health"], response_model=None)
async def ready(state: StateDep, caller: OptionalCallerDep) -> dict[str, Any] | JSONResponse:
    """For anyone: ``{"status": "ready"}`` (200) or ``{"status": "not_ready"}`` (503), naming nothing.
    With the admin key: the checks and every provider's state, and on 503 an error naming each problem."""
    checks = await state.readiness.check()
    failing = {name: check for name, check in checks.items() if check != "ok"}
    if caller is None or not caller.is_admin:
        if failing:
            return JSONResponse({"status": "not_ready"}, status_code=503)
        return {"status": "ready"}
    if failing:
        problems = "; ".join(f"{name}: {check}" for name, check in failing.items())
        raise ServiceUnavailable(f"Not ready: {problems}", code="not_ready")
    providers = {
        r.id: {"healthy": r.health.healthy if r.health else None, **state.health.provider_health(r.id)}
        for r in state.registry.runtimes.values()
    }
    return {"status": "ready", "checks": checks, "providers": providers}


@router.get("/metrics", tags=["health"], response_class=Response)
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def visible_models(registry: ProviderRegistry, principal: Principal) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for runtime in registry.runtimes.values():
        for model_id, entry in runtime.model_entries.items():
            if principal.may_use(runtime.id, model_id):
                entries.append(model_object(runtime.id, model_id, entry))
    return entries


def model_object(provider_id: str, model_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    view = {"id": f"{provider_id}/{model_id}", "object": "model", "created": entry.get("created", CREATED)}
    view["owned_by"] = provider_id
    for extra in ("context_length", "pricing", "name"):
        if extra in entry:
            view[extra] = entry[extra]
    return view


def visible_aliases(registry: ProviderRegistry, principal: Principal) -> list[dict[str, Any]]:
    """The configured aliases (``aliases:``) whose target this caller may use, as model objects named by the
    alias: the names agents ask for (``claude-sonnet-4-5``) are what they find in the list."""
    entries: list[dict[str, Any]] = []
    for alias in registry.index.aliases:
        try:
            targets = registry.resolve(alias)
        except ModelNotFound:
            continue
        if any(principal.may_use(t.provider_id, t.model) for t in targets):
            entries.append({"id": alias, "object": "model", "created": CREATED, "owned_by": targets[0].provider_id})
    return entries


AnthropicVersion = Annotated[
    str | None,
    Header(description="Sent by Anthropic's clients (Claude Code): the answer then has the Anthropic shape."),
]


@router.get("/v1/models", tags=["models"])
async def list_models(state: StateDep, caller: CallerDep, anthropic_version: AnthropicVersion = None) -> dict[str, Any]:
    models = visible_models(state.registry, caller)
    if anthropic_version is not None:
        return anthropic_model_list([*visible_aliases(state.registry, caller), *models])
    return {"object": "list", "data": models}


@router.get("/v1/models/{model_id:path}", tags=["models"])
async def get_model(
    model_id: str, state: StateDep, caller: CallerDep, anthropic_version: AnthropicVersion = None
) -> dict[str, Any]:
    registry = state.registry
    for target in registry.resolve(model_id):
        runtime = registry.get(target.provider_id)
        entry = runtime.model_entries.get(target.model)
        if entry is not None and caller.may_use(runtime.id, target.model):
            found = model_object(runtime.id, target.model, entry)
            if anthropic_version is not None:
                return anthropic_model_info({**found, "id": model_id})
            return found
    raise ModelNotFound(model_id)


@router.get("/v1/providers", tags=["providers"])
async def list_providers(state: StateDep, caller: CallerDep) -> dict[str, Any]:
    registry = state.registry
    data = [
        routed_view(registry, r, state.health.provider_health(r.id))
        for r in registry.runtimes.values()
        if caller.may_use_provider(r.id)
    ]
    watch = state.store_watch
    data += [unavailable_view(p) for p in watch.unavailable_providers.values() if caller.may_use_provider(p.id)]
    invalid = watch.invalid_providers.values()
    data += [unavailable_view(p, f"invalid: {why}") for p, why in invalid if caller.may_use_provider(p.id)]
    return {"object": "list", "data": data, "default_provider": registry.index.default_provider}


def price_view(price: Price | None) -> dict[str, Any] | None:
    """A price as people write it: USD per million tokens, and where it comes from."""
    if price is None:
        return None
    return {"input": price.input * MILLION, "output": price.output * MILLION, "origin": price.origin}


@router.get("/v1/providers/{provider_id}/models", tags=["providers"])
async def provider_models(provider_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    runtime = state.registry.get(provider_id)
    if not caller.may_use_provider(runtime.id):
        raise NotFound(f"Unknown provider '{provider_id}'", code="provider_not_found")  # as in /v1/providers
    prices = state.accounting.prices
    data = [
        {**model_object(runtime.id, m, e), "price": price_view(prices.price(runtime.id, m))}
        for m, e in runtime.model_entries.items()
        if caller.may_use(runtime.id, m)
    ]
    body: dict[str, Any] = {"object": "list", "data": data, "provider": runtime.id, "source": runtime.models_source}
    if runtime.discovery_error:
        body["error"] = runtime.discovery_error
    return body


@router.post("/v1/providers/health-check", tags=["providers"])
async def health_check(state: StateDep, _: AdminDep) -> dict[str, Any]:
    results = await state.health_checks.check_all()
    providers = []
    for runtime, result in results:
        item: dict[str, Any] = {
            "id": runtime.id,
            "name": runtime.config.name,
            "configured": runtime.client.is_configured,
            "healthy": result.healthy,
            "latency_ms": result.latency_ms,
            # What was checked: the model list (GET /models), with the provider's key or without one.
            "checked": "models",
            "key_sent": runtime.client.has_key,
        }
        if result.error:
            item["error"] = result.error
        providers.append(item)
    return {"status": "completed", "providers": providers}
