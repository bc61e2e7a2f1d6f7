"""The management view of a provider, the one place that knows its shape. Three parts, composed by
``provider_view``:

- who the provider is (``Identity``): id, name, type, base URL, where it comes from, whether it is read-only;
- what the running gateway knows of it now (``Live``): from the registry, or the defaults of a provider
  out of routing (disabled, or stored but undecryptable or invalid here);
- its settings, every secret as ``"***"`` (``settings_view``).

``GET /v1/providers`` (and ``anygate providers models``) show the first two; ``GET /v1/providers/{id}``,
the answers to ``POST`` and ``PUT`` and the audit log all three. ``provider_type`` and ``api_base`` repeat
``type`` and ``base_url`` under seed 002's names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from anygate.management.providers import MASK, is_secret_header
from anygate.registry import ModelSource, ProviderOrigin, ProviderRegistry, ProviderRuntime
from anygate.settings import ProviderConfig, describe_errors
from anygate.store.providers import StoredProvider


@dataclass(frozen=True)
class Identity:
    id: str
    name: str | None
    type: str | None
    base_url: str | None
    origin: ProviderOrigin

    @property
    def read_only(self) -> bool:
        """A provider from the config file or the environment is changed there, not through the API."""
        return self.origin != "store"


@dataclass(frozen=True)
class Running:
    """What only a provider in routing has: how its key is sent, where its model list came from and what
    discovery, the quota poller and the last live test found."""

    auth: str | None
    models_source: ModelSource
    default_model: str | None = None
    discovery_error: str | None = None
    quota: dict[str, Any] | None = None
    capabilities: dict[str, Any] | None = None


@dataclass(frozen=True)
class Live:
    """What the running gateway knows of the provider now."""

    configured: bool
    healthy: bool | None
    default: bool
    models: tuple[str, ...]
    key_set: bool | None = None  # None: not shown (a stored provider this gateway cannot read)
    running: Running | None = None


# A stored provider out of routing: no key usable, never healthy, no models.
UNAVAILABLE = Live(configured=False, healthy=False, default=False, models=())


def identity_of_runtime(runtime: ProviderRuntime) -> Identity:
    """As its requests go: ``base_url`` is the URL the client really calls (a ``via`` gateway's, a preset's)."""
    config = runtime.config
    return Identity(runtime.id, config.name, config.type, runtime.client.base_url, runtime.origin)


def identity_of_config(config: ProviderConfig, origin: ProviderOrigin) -> Identity:
    return Identity(config.id, config.name, config.type, config.base_url, origin)


def identity_of_row(stored: StoredProvider) -> Identity:
    """A stored row as written, unvalidated (it may not pass today's checks)."""
    config = stored.config
    return Identity(stored.id, config.get("name"), config.get("type"), config.get("base_url"), "store")


def live_of(registry: ProviderRegistry, runtime: ProviderRuntime) -> Live:
    config = runtime.config
    running = Running(
        auth=config.auth,
        models_source=runtime.models_source,
        default_model=config.default_model or None,
        discovery_error=runtime.discovery_error or None,
        quota=runtime.quota,
        capabilities=runtime.capabilities,
    )
    return Live(
        configured=runtime.client.is_configured,
        healthy=runtime.health.healthy if runtime.health else None,
        default=runtime.id == registry.index.default_provider,
        models=tuple(runtime.models or ()),
        key_set=runtime.client.has_key,
        running=running,
    )


def not_routed(config: ProviderConfig, has_key: bool) -> Live:
    """A valid provider the registry does not run (disabled, or not yet read from the store): what its
    settings say."""
    return Live(
        configured=has_key or config.auth == "none",
        healthy=None,
        default=False,
        models=tuple(config.models),
        key_set=has_key and config.auth != "none",
    )


def live_fields(live: Live) -> dict[str, Any]:
    """The live part as shown: what a provider out of routing lacks is left out, not shown as null."""
    running = live.running
    fields: dict[str, Any] = {"configured": live.configured}
    if running is not None:
        fields["auth"] = running.auth
    if live.key_set is not None:
        fields["key_set"] = live.key_set
    fields.update(healthy=live.healthy, default=live.default, models=list(live.models))
    if running is not None:
        fields["models_source"] = running.models_source
        optional = {
            "default_model": running.default_model,
            "discovery_error": running.discovery_error,
            "quota": running.quota,
            "capabilities": running.capabilities,
        }
        fields.update({name: value for name, value in optional.items() if value is not None})
    return fields


def provider_view(
    identity: Identity,
    live: Live,
    settings: dict[str, Any] | None = None,
    *,
    unavailable: str | None = None,
    routing: dict[str, object] | None = None,
) -> dict[str, Any]:
    """The view: identity, live state, why it is out of routing, the routing summary, then the settings
    (where both say ``auth``, ``default_model`` or ``quota``, the settings' value is shown)."""
    view: dict[str, Any] = {
        "id": identity.id,
        "name": identity.name,
        "type": identity.type,
        "provider_type": identity.type,
        "base_url": identity.base_url,
        "api_base": identity.base_url,
        **live_fields(live),
        "origin": identity.origin,
        "read_only": identity.read_only,
    }
    if unavailable is not None:
        view["unavailable"] = unavailable
    if routing is not None:
        view["routing"] = routing
    return {**view, **(settings or {})}


# ------------------------------------------------------------------------------ the views served


def routed_view(
    registry: ProviderRegistry, runtime: ProviderRuntime, routing: dict[str, object] | None = None
) -> dict[str, Any]:
    """A provider in routing as ``GET /v1/providers`` lists it: never a secret, no settings."""
    return provider_view(identity_of_runtime(runtime), live_of(registry, runtime), routing=routing)


def configured_view(
    registry: ProviderRegistry, config: ProviderConfig, has_key: bool, origin: ProviderOrigin
) -> dict[str, Any]:
    """One provider with its settings (``GET /v1/providers/{id}``); its live state when the registry runs
    it from the same origin."""
    runtime = registry.find(config.id)
    if runtime is not None and runtime.origin == origin:
        identity, live = identity_of_runtime(runtime), live_of(registry, runtime)
    else:
        identity, live = identity_of_config(config, origin), not_routed(config, has_key)
    return provider_view(identity, live, settings_view(config, has_key))


def unavailable_view(stored: StoredProvider, reason: str | None = None) -> dict[str, Any]:
    """A stored provider out of routing, and why: its secrets cannot be decrypted here, or (``reason``)
    it fails a check added since it was saved."""
    return provider_view(identity_of_row(stored), UNAVAILABLE, unavailable=reason or stored.error)


def stored_view(registry: ProviderRegistry, stored: StoredProvider) -> dict[str, Any]:
    """A readable stored provider: with its settings, or out of routing when it fails today's checks."""
    try:
        config = stored.validated()
    except ValidationError as exc:
        return unavailable_view(stored, f"invalid: {describe_errors(exc)}")
    return configured_view(registry, config, bool(stored.api_key), "store")


# ------------------------------------------------------------------------------ settings


def settings_view(config: ProviderConfig, has_key: bool) -> dict[str, Any]:
    """The provider's settings, with ``api_key``, each ``api_keys`` entry and credential-like headers as
    ``"***"``."""
    return {
        "api_key": MASK if has_key else None,
        "api_keys": [MASK] * len(config.api_keys),
        "auth": config.auth,
        "headers": {name: MASK if is_secret_header(name) else value for name, value in configured_headers(config)},
        "allow_private_network": config.allow_private_network,
        "timeout": config.timeout,
        "timeouts": config.timeouts.model_dump(),
        "max_retries": config.max_retries,
        "weight": config.weight,
        "priority": config.priority,
        "default_model": config.default_model,
        "proxy_endpoints": config.proxy_endpoints,
        "enabled": config.enabled,
        "quota": config.quota.model_dump() if config.quota else None,
        "stream_usage": config.stream_usage,
        "api": config.api,
        "responses": config.responses,
        "prices": {model: price.model_dump(exclude_none=True) for model, price in config.prices.items()},
        "via": via_view(config),
        "cloudflare_access": access_view(config),
        "proxy": proxy_view(config),
    }


def configured_headers(config: ProviderConfig) -> list[tuple[str, str]]:
    """The headers the provider was given, without those ``via`` and ``cloudflare_access`` add (shown there)."""
    added = {"cf-access-client-id", "cf-access-client-secret"} if config.cloudflare_access is not None else set()
    if config.via is not None and config.via.cloudflare.token is not None:
        added.add("cf-aig-authorization")
    return [(name, value) for name, value in config.headers.items() if name.lower() not in added]


def access_view(config: ProviderConfig) -> dict[str, Any] | None:
    """The Cloudflare Access service token: its id, its secret masked."""
    access = config.cloudflare_access
    return None if access is None else {"client_id": access.client_id, "client_secret": MASK}


def proxy_view(config: ProviderConfig) -> dict[str, Any] | None:
    """The provider's own egress proxy: its URL (credentials never in it) and headers, credentials masked."""
    proxy = config.proxy
    if proxy is None:
        return None
    return {"url": proxy.url, "headers": {n: MASK if is_secret_header(n) else v for n, v in proxy.headers.items()}}


def via_view(config: ProviderConfig) -> dict[str, Any] | None:
    """The gateway a provider goes through, with its token masked."""
    if config.via is None:
        return None
    cloudflare = config.via.cloudflare
    token = MASK if cloudflare.token is not None else None
    return {"cloudflare": {"account_id": cloudflare.account_id, "gateway_id": cloudflare.gateway_id, "token": token}}
