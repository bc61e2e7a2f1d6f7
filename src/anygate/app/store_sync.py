"""Keeps a worker's in-memory caches (key ring, callers' keys, providers) equal to the store.

The request path never queries the database: it reads these caches. Every write bumps the store's
revision counter; each worker polls that one row every ``store_poll_interval`` seconds and reloads
only when it changed, so a change reaches every worker and replica within a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from anygate.accounting.alerts import Alerts
from anygate.auth import KeyRing, Principal, session_principal
from anygate.background import Background
from anygate.caller_keys import CallerKeys
from anygate.errors import NotReady
from anygate.netguard import UnsafeURL, check_url
from anygate.probe import missing_capabilities
from anygate.registry import ProviderRegistry
from anygate.settings import ProviderConfig, describe_errors
from anygate.store.budget_lists import budget_objects
from anygate.store.crypto import SecretKeyError
from anygate.store.families import lineages
from anygate.store.principals import limits_of, previous_secret_principal, principal_of
from anygate.store.providers import StoredProvider
from anygate.store.records import KeyRecord, TeamRecord, UserRecord
from anygate.store.store import Store

if TYPE_CHECKING:
    from anygate.store.notify import ChangeNotifier

log = logging.getLogger("anygate.store")


class StoreSync:
    """Reloads the caches section by section (keys, callers' keys, providers) and row by row: a row this
    worker cannot read (a secret under a key it lacks, say) is skipped and reported in ``unreadable``,
    and everything else still loads, key hashes and revocations above all."""

    def __init__(
        self,
        store: Store,
        keyring: KeyRing,
        caller_keys: CallerKeys,
        registry: ProviderRegistry,
        background: Background,
        notifier: ChangeNotifier | None = None,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.caller_keys = caller_keys
        self.registry = registry
        self.background = background
        self.notifier = notifier
        self.revision: int | None = None
        # What this worker cannot decrypt: "provider 'x'" or "credentials of <owner> for 'x'" -> why.
        self.unreadable: dict[str, SecretKeyError] = {}
        # Stored providers left out of routing because their secrets cannot be read (config without them).
        self.unavailable_providers: dict[str, StoredProvider] = {}
        # Stored providers left out of routing because they fail today's checks (a header refused since
        # they were saved, say): id -> (the row, why). Shown so that an admin can correct them.
        self.invalid_providers: dict[str, tuple[StoredProvider, str]] = {}
        self.alerts: Alerts | None = None  # told each holder's own alerts and name at every reload
        self._lock = asyncio.Lock()  # one reload at a time, so an older read never lands after a newer one

    async def refresh(self, discovery_wait: float = 0.0) -> None:
        """Reload every cache from the store (a database failure raises; unreadable rows are skipped).

        New or changed providers discover their models in the background; ``discovery_wait`` waits
        up to that many seconds for it (a management write does, so its answer shows the models).
        """
        async with self._lock:
            discoveries = await self._reload()
        if discoveries and discovery_wait > 0:
            await asyncio.wait(discoveries, timeout=discovery_wait)

    async def _reload(self) -> list[asyncio.Task[Any]]:
        revision = await self.store.db.revision()
        keys, owners = await self.store.keys.all_keys()
        teams = await self.store.teams.all_teams()
        self._load_keys(keys, owners, teams)  # first: hashes and revocations always propagate
        if self.alerts is not None:
            self._load_alerts(self.alerts, keys, owners, teams)
        byok, sealed_away = await self.store.credentials.all_keys()
        unreadable = {f"credentials of {owner} for '{p}'": problem for (owner, p), problem in sealed_away.items()}
        self.caller_keys.replace(byok, frozenset(sealed_away))
        readable: list[StoredProvider] = []
        self.unavailable_providers = {}
        for provider in await self.store.providers.list():
            if provider.problem is None:
                readable.append(provider)
            else:  # left out of routing: never a guessed key or half its headers upstream
                self.unavailable_providers[provider.id] = provider
                unreadable[f"provider '{provider.id}'"] = provider.problem
        discoveries = self._apply_providers(readable, await self.store.providers.probes())
        self.unreadable = unreadable
        if unreadable:
            log.error("stored secrets cannot be decrypted", extra={"fields": {"problem": self.describe_unreadable()}})
        self.revision = revision
        return discoveries

    def _load_keys(
        self, keys: list[KeyRecord], owners: dict[str, UserRecord], teams: dict[str, TeamRecord] | None = None
    ) -> None:
        principals: dict[str, Principal] = {}
        by_id = {key.id: key for key in keys}
        # Each key on its own (no user, no ancestors): what binds its descendants, made once and shared.
        alone: dict[str, Principal] = {}
        for lineage in lineages(by_id).values():
            key = lineage.key
            if lineage.is_cut_off:
                continue
            try:
                ancestors = tuple(self._alone(alone, record) for record in lineage.ancestors)
                owner = owners.get(key.user_id or "")
                team = (teams or {}).get(owner.team_id or "") if owner is not None else None
                principal = principal_of(key, owner, ancestors, team)
            except (TypeError, ValueError) as exc:
                log.error("stored key skipped", extra={"fields": {"key": key.id, "error": type(exc).__name__}})
                continue
            principals[key.key_hash] = principal
            if key.previous_hash is not None and key.previous_valid_until is not None:
                principals[key.previous_hash] = previous_secret_principal(principal, key.previous_valid_until)
        self.keyring.replace(principals, self._signed_in_users(owners))

    @staticmethod
    def _signed_in_users(owners: dict[str, UserRecord]) -> dict[str, Principal]:
        """Each user record's caller for a console session: a deleted user's session stops at once."""
        users: dict[str, Principal] = {}
        for user in owners.values():
            try:
                users[user.id] = session_principal(
                    user.id, user.name, budget_objects(user.budget), limits_of(user.limits)
                )
            except (TypeError, ValueError) as exc:
                log.error("stored user skipped", extra={"fields": {"user": user.id, "error": type(exc).__name__}})
        return users

    @staticmethod
    def _load_alerts(
        alerts: Alerts, keys: list[KeyRecord], owners: dict[str, UserRecord], teams: dict[str, TeamRecord]
    ) -> None:
        holders = [
            *((f"key:{k.id}", k.alias, k.alerts) for k in keys),
            *((f"user:{u.id}", u.name, u.alerts) for u in owners.values()),
            *((f"team:{t.id}", t.name, t.alerts) for t in teams.values()),
        ]
        alerts.replace_targets(
            {holder: (name, given) for holder, name, given in holders if given},
            {holder: name for holder, name, _ in holders},
        )

    @staticmethod
    def _alone(made: dict[str, Principal], key: KeyRecord) -> Principal:
        """The principal of ``key`` alone, made once and shared by its descendants (raises as ``principal_of``)."""
        principal = made.get(key.id)
        if principal is None:
            principal = made[key.id] = principal_of(key, None)
        return principal

    def describe_unreadable(self) -> str:
        """``secret key mismatch: key id 142d7432 unknown (cannot decrypt provider 'campus'); ...``."""
        by_reason: dict[str, list[str]] = {}
        for what, problem in sorted(self.unreadable.items()):
            by_reason.setdefault(problem.summary, []).append(what)
        return "; ".join(f"{reason} (cannot decrypt {', '.join(whats)})" for reason, whats in by_reason.items())

    async def check_secrets(self) -> None:
        """The readiness probe: NotReady while any stored secret cannot be decrypted by this worker."""
        if self.unreadable:
            raise NotReady(self.describe_unreadable() + "; every replica needs the same ANYGATE_SECRET_KEY")

    @property
    def missing_key_ids(self) -> set[str]:
        """Ids of keys that stored secrets were made with and this worker lacks (a secret key mismatch)."""
        return {problem.key_id for problem in self.unreadable.values() if problem.key_id is not None}

    async def after_write(self, discovery_wait: float) -> None:
        """This worker reloads now; with Redis the others are told at once, else they poll."""
        await self.refresh(discovery_wait)
        if self.notifier is not None:
            await self.notifier.publish()

    async def close(self) -> None:
        if self.notifier is not None:
            await self.notifier.close()

    async def refresh_if_changed(self) -> bool:
        if await self.store.db.revision() == self.revision:
            return False
        await self.refresh()
        return True

    async def poll_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.refresh_safely()

    async def refresh_safely(self) -> None:
        """``refresh_if_changed``; a failure keeps the last good caches and is logged."""
        try:
            await self.refresh_if_changed()
        except (SQLAlchemyError, OSError, SecretKeyError) as exc:
            log.warning("store refresh failed", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"}})

    def _apply_providers(
        self, stored: list[StoredProvider], probes: dict[str, dict[str, Any]]
    ) -> list[asyncio.Task[Any]]:
        registry = self.registry
        before = {runtime_id: id(runtime) for runtime_id, runtime in registry.runtimes.items()}
        entries: list[tuple[ProviderConfig, str | None]] = []
        invalid: dict[str, tuple[StoredProvider, str]] = {}
        for provider in stored:
            try:
                config = provider.validated()
                check_url(config.base_url or "", bool(config.allow_private_network))
            except (ValidationError, UnsafeURL) as exc:
                reason = str(exc) if isinstance(exc, UnsafeURL) else describe_errors(exc)
                invalid[provider.id] = (provider, reason)
                log.error("stored provider skipped", extra={"fields": {"provider": provider.id, "error": reason}})
                continue
            if config.enabled:
                entries.append((config, provider.api_key))
        self.invalid_providers = invalid
        registry.replace_store_providers(entries)
        discoveries: list[asyncio.Task[Any]] = []
        for runtime_id, runtime in registry.runtimes.items():
            probe = probes.get(runtime_id)
            found = probe.get("capabilities", {}) if probe else {}
            runtime.capabilities = {**found, "checked_at": probe.get("checked_at")} if probe else None
            runtime.lacks = missing_capabilities(found)
            if before.get(runtime_id) != id(runtime):
                discoveries.append(self.background.spawn(registry.discover(runtime), f"discover-{runtime_id}"))
        return discoveries
