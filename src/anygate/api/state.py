"""AppState: everything a request may reach, made once in the lifespan and owned by one app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from anygate.auth import KeyRing, Principal
from anygate.errors import NotReady, ServiceUnavailable
from anygate.registry import ProviderRegistry, ProviderRuntime
from anygate.routing import HealthBook, deployment_id
from anygate.settings import Settings
from anygate.telemetry import Metrics
from anygate.transport import Transport
from anygate.upstream import HealthResult

if TYPE_CHECKING:
    from anygate.accounting.service import Accounting
    from anygate.store.store import Store
    from anygate.store.sync import StoreSync

log = logging.getLogger("anygate.state")


@dataclass
class AppState:
    settings: Settings
    transport: Transport
    registry: ProviderRegistry
    keyring: KeyRing
    metrics: Metrics
    health: HealthBook = field(default_factory=HealthBook)
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    readiness_probes: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    # Callers' own provider keys (bring your own key): (owner id, provider id) -> key. Owner is the
    # caller's user id, else its key id. Filled from the store; read on the request path.
    byok_keys: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    # Callers' own keys this worker cannot decrypt (a secret key mismatch): never replaced by another key.
    byok_unreadable: frozenset[tuple[str, str]] = frozenset()
    # The database (providers, keys, users, credentials): ``store.db.engine`` for other subsystems.
    store: Store | None = None
    store_sync: StoreSync | None = None

    def __post_init__(self) -> None:
        # Every provider has a health sample from the moment it is registered (-1 until checked).
        self.registry.listen_to_membership(self.metrics.track_providers)

    async def store_changed(self) -> None:
        """After a management write: this worker reloads its caches now (the others at their next poll),
        waiting briefly for new providers' model lists so the answer shows them."""
        if self.store_sync is not None:
            await self.store_sync.after_write(discovery_wait=3.0)

    def require_store(self) -> Store:
        if self.store is None:
            raise RuntimeError("the store is not open")
        return self.store

    def require_sealing_store(self) -> Store:
        """The store, for a write that encrypts a secret: refused while this worker lacks a key that stored
        secrets were made with (what it wrote, the other replicas could not read)."""
        store = self.require_store()
        missing = self.store_sync.missing_key_ids if self.store_sync is not None else set()
        if missing:
            raise ServiceUnavailable(
                f"This gateway cannot decrypt stored secrets (secret key mismatch: key id {', '.join(sorted(missing))} "
                "unknown); secrets are not stored until ANYGATE_SECRET_KEY matches the other replicas",
                code="secret_key_mismatch",
            )
        return store

    # Budgets, rate limits, usage ledger and prices (anygate.accounting); None: nothing is accounted.
    accounting: Accounting | None = None

    def caller_key(self, principal: Principal, provider_id: str) -> str | None:
        if not self.byok_keys and not self.byok_unreadable:
            return None
        owner = (principal.user_id or principal.key_id, provider_id)
        if owner in self.byok_unreadable:
            raise ServiceUnavailable(
                f"Your own key for {provider_id} cannot be decrypted by this gateway (secret key mismatch)",
                code="secret_key_mismatch",
            )
        return self.byok_keys.get(owner)

    async def readiness(self) -> dict[str, str]:
        """Each dependency's state: ``ok`` or why not (the store, Redis when configured)."""
        results: dict[str, str] = {}
        for name, probe in self.readiness_probes.items():
            try:
                await asyncio.wait_for(probe(), timeout=2.0)
            except NotReady as exc:
                results[name] = str(exc)
            except (TimeoutError, OSError, RuntimeError) as exc:
                results[name] = f"unavailable ({type(exc).__name__})"
            else:
                results[name] = "ok"
        return results

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run owned background work: failures are logged, and ``stop()`` cancels what is left."""
        return self.adopt(asyncio.create_task(coroutine, name=name))

    def adopt(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """Own a task started elsewhere, as ``spawn`` owns its own."""
        self.background.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception(), extra={"fields": {"task": task.get_name()}})

    async def check_providers(self) -> list[tuple[ProviderRuntime, HealthResult]]:
        """Check every provider now; the verdicts feed routing health and the metrics."""
        results = await self.registry.health_check_all()
        hold = self.settings.routing.health_check_interval  # a failed check keeps it out until the next
        for runtime, result in results:
            group = [d for peer in self.peers_of(runtime) for d in deployment_ids(peer)]
            self.health.record_check(deployment_ids(runtime), result.healthy, group, hold)
            self.metrics.provider_healthy.labels(runtime.id).set(1 if result.healthy else 0)
        return results

    def peers_of(self, runtime: ProviderRuntime) -> list[ProviderRuntime]:
        """The providers that serve one of the models ``runtime`` serves, ``runtime`` included: the
        group whose bounded share a failed check may eject."""
        index = self.registry.index
        ids = {runtime.id}
        for model in index.models_by_provider.get(runtime.id) or ():
            ids.update(index.providers_by_model.get(model, ()))
        return [peer for peer_id in sorted(ids) if (peer := self.registry.find(peer_id)) is not None]

    async def stop(self) -> None:
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        await self.transport.aclose()
        if self.store_sync is not None:
            await self.store_sync.close()
        if self.store is not None:
            await self.store.close()


def deployment_ids(runtime: ProviderRuntime) -> list[str]:
    """The routing ids of a provider's deployments: its own key, then each of its ``api_keys``."""
    return [deployment_id(runtime.id, index) for index in range(1 + len(runtime.config.api_keys))]
