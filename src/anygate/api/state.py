"""AppState: everything a request may reach, built once at start-up (``anygate.app``) and never replaced.

It is data: each field is a service with its own behaviour, and nothing here decides anything. Every
field is there for the life of the app (no ``None`` filled in later): the store is always open, the
accounting always runs (a key without budgets costs it nothing but a ledger row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from anygate.accounting.service import Accounting
from anygate.auth import KeyRing
from anygate.background import Background
from anygate.caller_keys import CallerKeys
from anygate.dispatch import Dispatcher
from anygate.errors import ServiceUnavailable
from anygate.health_checks import HealthChecks
from anygate.planning import Planner
from anygate.readiness import Readiness
from anygate.registry import ProviderRegistry
from anygate.routing import HealthBook
from anygate.settings import Settings
from anygate.signin.service import SignIn
from anygate.store.audit import AuditLog
from anygate.store.providers import StoredProvider
from anygate.store.store import Store
from anygate.telemetry import Metrics
from anygate.tracing import Tracing
from anygate.transport import Transport


class StoreWatch(Protocol):
    """What keeps this worker's caches equal to the store (``anygate.app.store_sync``), as routes see it."""

    @property
    def revision(self) -> int | None: ...

    @property
    def missing_key_ids(self) -> set[str]:
        """Ids of keys that stored secrets were made with and this worker lacks (a secret key mismatch)."""
        ...

    @property
    def unavailable_providers(self) -> dict[str, StoredProvider]:
        """Stored providers left out because their secrets cannot be read here."""
        ...

    @property
    def invalid_providers(self) -> dict[str, tuple[StoredProvider, str]]:
        """Stored providers left out because they fail today's checks, and why."""
        ...

    async def after_write(self, discovery_wait: float) -> None:
        """Reload now after a management write (the other workers and replicas are told)."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class AppState:
    settings: Settings
    transport: Transport
    registry: ProviderRegistry
    keyring: KeyRing
    caller_keys: CallerKeys
    metrics: Metrics
    health: HealthBook
    health_checks: HealthChecks
    planner: Planner
    dispatcher: Dispatcher
    accounting: Accounting
    store: Store
    store_watch: StoreWatch
    readiness: Readiness
    background: Background
    tracing: Tracing | None = None  # OpenTelemetry, when the settings turn it on
    signin: SignIn | None = None  # console sign-in with an OpenID issuer, when the settings configure one

    def __repr__(self) -> str:
        return f"AppState(providers={sorted(self.registry.runtimes)})"

    @property
    def audit(self) -> AuditLog:
        """Where management routes record their changes (the store's audit log)."""
        return self.store.audit

    async def store_changed(self) -> None:
        """After a management write: this worker reloads its caches now (the others are told, or poll),
        waiting briefly for new providers' model lists so the answer shows them."""
        await self.store_watch.after_write(discovery_wait=3.0)

    def sealing_store(self) -> Store:
        """The store, for a write that encrypts a secret: refused while this worker lacks a key that stored
        secrets were made with (what it wrote, the other replicas could not read)."""
        missing = self.store_watch.missing_key_ids
        if missing:
            raise ServiceUnavailable(
                f"This gateway cannot decrypt stored secrets (secret key mismatch: key id {', '.join(sorted(missing))} "
                "unknown); secrets are not stored until ANYGATE_SECRET_KEY matches the other replicas",
                code="secret_key_mismatch",
            )
        return self.store
