"""The live set of providers: their clients, model lists (discovered, configured or last known) and health.

The request path reads plain attributes and a resolution cache; discovery and health checks run in the
background and swap in a new ``ModelIndex`` when something changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from anygate.catalog import DEFAULT_PROXY_ENDPOINTS, PRESETS
from anygate.errors import GatewayError, NotFound
from anygate.models import ModelIndex, Target, resolve_model
from anygate.routing import Deployment
from anygate.settings import ProviderConfig, Settings
from anygate.transport import Transport
from anygate.upstream import DiscoveryFailed, HealthResult, OpenAICompatibleProvider

log = logging.getLogger("anygate.registry")

ModelSource = Literal["discovered", "configured", "last-known", "unknown"]
ProviderOrigin = Literal["file", "env", "store"]
STARTUP_DISCOVERY_WAIT = 3.0
RESOLUTION_CACHE_LIMIT = 10_000
DEPLOYMENT_CACHE_LIMIT = 1_000  # models per provider; a /proxy client may name any model


@dataclass
class ProviderRuntime:
    """One provider as the gateway runs it."""

    config: ProviderConfig
    client: OpenAICompatibleProvider
    origin: ProviderOrigin
    proxy_endpoints: frozenset[tuple[str, str]]
    model_entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    models_source: ModelSource = "unknown"
    discovery_error: str | None = None
    health: HealthResult | None = None
    health_checked_at: float | None = None
    quota: dict[str, Any] | None = None
    capabilities: dict[str, Any] | None = None
    # What its last live probe found it cannot do (``streaming``, ``embeddings``): such requests go elsewhere.
    lacks: frozenset[str] = frozenset()
    # The upstream answered 404 or 405 to ``/responses``: learned by this process, forgotten with the runtime
    # (a provider changed in the store is a new runtime, and is tried again).
    lacks_responses: bool = False
    _deployments: dict[str, list[Deployment]] = field(default_factory=dict, repr=False)
    _preferred_deployments: dict[str, list[Deployment]] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return self.config.id

    def deployments(self, model: str, preferred: bool = False) -> list[Deployment]:
        """The model's deployments on this provider, one per key (made once per model: the request path
        asks on every request). A changed provider is a new runtime, so this never goes stale.
        ``preferred``: as the preferred provider of a name several providers serve (``Deployment.preferred``)."""
        cache = self._preferred_deployments if preferred else self._deployments
        found = cache.get(model)
        if found is None:
            config = self.config
            # Key 0 is the provider's own; a provider with only its extra ``api_keys`` has no key 0 to try.
            first = 0 if self.client.is_configured or not config.api_keys else 1
            found = [
                Deployment(self.id, model, index, config.weight, config.priority, preferred)
                for index in range(first, 1 + len(config.api_keys))
            ]
            if len(cache) < DEPLOYMENT_CACHE_LIMIT:
                cache[model] = found
        return found

    @property
    def models(self) -> list[str] | None:
        return None if self.models_source == "unknown" else list(self.model_entries)

    def serves_responses(self) -> bool:
        """Whether ``/v1/responses`` goes to the upstream's own ``/responses`` (else it is bridged over chat
        completions): the provider's ``responses`` setting; else not for an Anthropic upstream, nor once it
        answered 404 or 405 there; else what its last probe found; else its preset's; else yes (tried)."""
        config = self.config
        if config.responses is not None:
            return config.responses
        if config.api == "anthropic" or self.lacks_responses:
            return False
        probed = (self.capabilities or {}).get("responses")
        if isinstance(probed, bool):
            return probed
        return PRESETS[config.type or "custom"].responses is not False

    def __repr__(self) -> str:
        return f"ProviderRuntime(id={self.id!r}, origin={self.origin}, models={self.models_source})"


def proxy_allowlist(config: ProviderConfig) -> frozenset[tuple[str, str]]:
    rules = config.proxy_endpoints
    if rules is None:
        return frozenset(DEFAULT_PROXY_ENDPOINTS)
    return frozenset((method, endpoint) for method, _, endpoint in (r.partition(" ") for r in rules))


def configured_entries(config: ProviderConfig) -> dict[str, dict[str, Any]]:
    return {m: {"id": m, "object": "model", "owned_by": config.id} for m in config.models}


class ProviderRegistry:
    def __init__(self, settings: Settings, transport: Transport) -> None:
        self._settings = settings
        self._transport = transport
        self.runtimes: dict[str, ProviderRuntime] = {}
        self.index = ModelIndex()
        self._resolved: dict[str, list[Target]] = {}
        # Called with a provider's id after each discovery of its models (the price book refreshes).
        self.discovery_listeners: list[Callable[[str], None]] = []
        # Called with every provider's id whenever providers are added or removed (the health metric).
        self.membership_listeners: list[Callable[[Iterable[str]], None]] = []
        origin: ProviderOrigin = "file" if settings.config_file else "env"
        for config in settings.providers:
            if config.enabled:
                self.runtimes[config.id] = self._runtime(config, origin, settings.provider_key(config))
        self.rebuild_index()

    # ------------------------------------------------------------------------------ request path

    def resolve(self, model: str) -> list[Target]:
        targets = self._resolved.get(model)
        if targets is None:
            targets = resolve_model(model, self.index)
            if len(self._resolved) < RESOLUTION_CACHE_LIMIT:
                self._resolved[model] = targets
        return targets

    def get(self, provider_id: str) -> ProviderRuntime:
        canonical = self._settings.provider_aliases.get(provider_id, provider_id)
        runtime = self.runtimes.get(canonical)
        if runtime is None:
            raise NotFound(f"Unknown provider '{provider_id}'", code="provider_not_found")
        return runtime

    def find(self, provider_id: str) -> ProviderRuntime | None:
        return self.runtimes.get(self._settings.provider_aliases.get(provider_id, provider_id))

    # ------------------------------------------------------------------------------ changes

    def make_client(self, config: ProviderConfig, api_key: str | None) -> OpenAICompatibleProvider:
        """A client for ``config`` on the process's transport, as its requests go: through the gateway-wide
        Cloudflare settings (``Settings.routed``) and the proxy its settings give it."""
        config = self._settings.routed(config)
        settings = self._settings
        proxy = settings.proxy_for(config)
        return OpenAICompatibleProvider.from_config(
            config, api_key, self._transport, proxy, settings.max_response_bytes
        )

    def _runtime(self, config: ProviderConfig, origin: ProviderOrigin, api_key: str | None) -> ProviderRuntime:
        """The provider's runtime; its ``config`` is the provider as its requests go (``Settings.routed``)."""
        config = self._settings.routed(config)
        client = self.make_client(config, api_key)
        runtime = ProviderRuntime(config, client, origin, proxy_allowlist(config))
        if config.models:
            runtime.model_entries = configured_entries(config)
            runtime.models_source = "configured"
        return runtime

    def upsert(self, config: ProviderConfig, origin: ProviderOrigin, api_key: str | None) -> ProviderRuntime:
        """Add or replace a provider; keep its last known models until rediscovered."""
        previous = self.runtimes.get(config.id)
        runtime = self._runtime(config, origin, api_key)
        if previous is not None and runtime.models_source == "unknown":
            runtime.model_entries, runtime.models_source = previous.model_entries, "last-known"
        self.runtimes[config.id] = runtime
        self.rebuild_index()
        return runtime

    def remove(self, provider_id: str) -> None:
        if self.runtimes.pop(provider_id, None) is not None:
            self.rebuild_index()

    def replace_store_providers(self, entries: Iterable[tuple[ProviderConfig, str | None]]) -> None:
        """Make the store's providers exactly ``entries`` (file and env providers stay as they are)."""
        wanted = {config.id: (self._settings.routed(config), key) for config, key in entries}
        for provider_id in [p for p, r in self.runtimes.items() if r.origin == "store" and p not in wanted]:
            self.runtimes.pop(provider_id)
        for config, key in wanted.values():
            existing = self.runtimes.get(config.id)
            if existing is not None and existing.origin != "store":
                continue  # the file wins
            if existing is None or existing.config != config or existing.client.headers != _headers_for(config, key):
                self.upsert(config, "store", key)
        self.rebuild_index()

    def rebuild_index(self) -> None:
        self.index = ModelIndex.build(
            self.runtimes,
            {p: r.models for p, r in self.runtimes.items()},
            provider_aliases=self._settings.provider_aliases,
            aliases=self._settings.aliases,
            default_provider=self._settings.default_provider,
        )
        self._resolved = {}
        for listener in self.membership_listeners:
            listener(self.runtimes.keys())

    def listen_to_membership(self, listener: Callable[[Iterable[str]], None]) -> None:
        """Call ``listener`` with every provider's id now and whenever providers are added or removed."""
        self.membership_listeners.append(listener)
        listener(self.runtimes.keys())

    # ------------------------------------------------------------------------------ background work

    async def discover(self, runtime: ProviderRuntime) -> None:
        """Refresh one provider's list; on failure keep the configured or last good list, and say why."""
        try:
            entries = await runtime.client.list_model_entries()
        except (DiscoveryFailed, GatewayError) as exc:
            runtime.discovery_error = runtime.client.describe(exc)  # no secret of the provider in it
            if runtime.models_source == "discovered":
                runtime.models_source = "last-known"
            log.warning(
                "model discovery failed",
                extra={"fields": {"provider": runtime.id, "error": runtime.discovery_error}},
            )
        else:
            merged = {e["id"]: {**e, "owned_by": runtime.id} for e in entries}
            for model, entry in configured_entries(runtime.config).items():
                merged.setdefault(model, entry)
            runtime.model_entries, runtime.models_source, runtime.discovery_error = merged, "discovered", None
        if self.runtimes.get(runtime.id) is runtime:
            self.rebuild_index()
        for listener in self.discovery_listeners:
            listener(runtime.id)

    async def discover_all(self) -> None:
        """Refresh every list at once. A provider whose discovery breaks unexpectedly is logged and the
        others go on: one bad upstream never stops the background refresh."""
        runtimes = list(self.runtimes.values())
        results = await asyncio.gather(*(self.discover(r) for r in runtimes), return_exceptions=True)
        for runtime, result in zip(runtimes, results, strict=True):
            if isinstance(result, Exception):
                log.error("model discovery broke", exc_info=result, extra={"fields": {"provider": runtime.id}})

    async def discover_at_start(self) -> asyncio.Task[None]:
        """Start discovery; wait a short while so the first requests see most lists, then go on."""
        task = asyncio.create_task(self.discover_all(), name="model-discovery-at-start")
        await asyncio.wait({task}, timeout=STARTUP_DISCOVERY_WAIT)
        return task

    async def refresh_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.discover_all()

    async def health_check(self, runtime: ProviderRuntime) -> HealthResult:
        result = await runtime.client.health_check()
        runtime.health = result
        runtime.health_checked_at = time.time()
        return result

    async def health_check_all(self) -> list[tuple[ProviderRuntime, HealthResult]]:
        runtimes = list(self.runtimes.values())
        results = await asyncio.gather(*(self.health_check(r) for r in runtimes))
        return list(zip(runtimes, results, strict=True))


def _headers_for(config: ProviderConfig, key: str | None) -> Mapping[str, str]:
    from anygate.upstream import auth_headers

    preset_auth = config.auth or PRESETS[config.type or "custom"].auth
    return {**config.headers, **auth_headers(preset_auth, key)}
