"""Active health: the providers' model lists probed now (``POST /v1/providers/health-check``) and every
``routing.health_check_interval`` seconds, the verdicts fed to routing health and the metrics.

A check charges no key. A failed one ejects the provider's deployments until the next check, under the
health book's rule that at most half of a group is ejected at once; the group is every provider that
serves one of the same models.
"""

from __future__ import annotations

import asyncio

from anygate.registry import ProviderRegistry, ProviderRuntime
from anygate.routing import HealthBook, deployment_id
from anygate.telemetry import Metrics
from anygate.upstream import HealthResult


class HealthChecks:
    __slots__ = ("registry", "book", "metrics", "hold")

    def __init__(self, registry: ProviderRegistry, book: HealthBook, metrics: Metrics, hold: float) -> None:
        self.registry = registry
        self.book = book
        self.metrics = metrics
        self.hold = hold  # a failed check keeps the provider out until the next one

    async def check_all(self) -> list[tuple[ProviderRuntime, HealthResult]]:
        """Check every provider now; the verdicts feed routing health and the metrics."""
        results = await self.registry.health_check_all()
        for runtime, result in results:
            group = [d for peer in self.peers_of(runtime) for d in deployment_ids(peer)]
            self.book.record_check(deployment_ids(runtime), result.healthy, group, self.hold)
            self.metrics.provider_healthy.labels(runtime.id).set(1 if result.healthy else 0)
        return results

    def peers_of(self, runtime: ProviderRuntime) -> list[ProviderRuntime]:
        """The providers that serve one of the models ``runtime`` serves, ``runtime`` included: the group
        whose bounded share a failed check may eject."""
        index = self.registry.index
        ids = {runtime.id}
        for model in index.models_by_provider.get(runtime.id) or ():
            ids.update(index.providers_by_model.get(model, ()))
        return [peer for peer_id in sorted(ids) if (peer := self.registry.find(peer_id)) is not None]

    async def run(self, interval: float) -> None:
        """Owned background work: a check every ``interval`` seconds."""
        while True:
            await asyncio.sleep(interval)
            await self.check_all()


def deployment_ids(runtime: ProviderRuntime) -> list[str]:
    """The routing ids of a provider's deployments: its own key, then each of its ``api_keys``."""
    return [deployment_id(runtime.id, index) for index in range(1 + len(runtime.config.api_keys))]
