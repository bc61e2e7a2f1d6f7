"""Upstream quota: providers that declare ``quota`` are polled in the background, at most once a minute
per provider across every worker and replica that shares the store's database.

Every ``CHECK_EVERY`` seconds each process looks at each such provider: the one that claims the poll
(``polls.QuotaPolls``) asks the upstream and stores the answer; the others read the stored answer. The
result is the provider's ``quota`` in ``/v1/providers`` (normalized, with ``checked_at`` and any
``error``) and the gauge ``anygate_upstream_quota_remaining{provider, unit}``, on every process.

Polls go through the process's transport, like every other upstream request: with the provider's own
headers, through its proxy (``proxy``, else ``HTTPS_PROXY``/``HTTP_PROXY``), and the SSRF guard checks each
address the provider's host resolves to, under the provider's own ``allow_private_network``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from anygate.errors import redact_text
from anygate.quota.client import QuotaFetchError, Source, fetch_quota, provider_source
from anygate.quota.polls import QuotaPolls
from anygate.registry import ProviderRegistry, ProviderRuntime
from anygate.settings import Settings
from anygate.telemetry import Metrics
from anygate.transport import Transport

log = logging.getLogger("anygate.quota")

MIN_INTERVAL = 60.0
CHECK_EVERY = 10.0  # seconds between looks at the shared results
POLL_IN_PROGRESS = 10.0  # a claim this recent without a result yet: its poll is still running
RESULT_WAIT = 0.25


def source_of(runtime: ProviderRuntime) -> Source | None:
    """The provider's quota endpoint, polled as its other requests go: its headers, through its proxy."""
    config = runtime.config
    if config.quota is None or not config.base_url:
        return None
    return provider_source(config, runtime.client.proxy)


async def fetch_view(transport: Transport, source: Source, key: str) -> dict[str, Any]:
    """What the provider's quota endpoint says, as ``/v1/providers`` shows it."""
    view: dict[str, Any] = {"path": source.quota_path, "format": source.format, "checked_at": int(time.time())}
    try:
        quota = await fetch_quota(transport, source, key)
    except QuotaFetchError as exc:
        view["error"] = redact_text(str(exc), [key])
    else:
        view.update(quota.as_dict())
    return view


def show(metrics: Metrics, runtime: ProviderRuntime, view: dict[str, Any]) -> None:
    runtime.quota = view
    for unit, bucket in (("tokens", view.get("tokens")), ("usd", view.get("cost"))):
        remaining = bucket.get("remaining") if isinstance(bucket, dict) else None
        if isinstance(remaining, int | float):
            metrics.quota_remaining.labels(runtime.id, unit).set(remaining)


async def shared_result(polls: QuotaPolls, provider_id: str) -> dict[str, Any] | None:
    """Another process's last answer; one still being fetched is waited for a few seconds."""
    while True:
        found = await polls.read(provider_id)
        if found is None:
            return None
        claimed_at, checked_at, result = found
        done = checked_at is not None and checked_at >= claimed_at
        if done or time.time() - claimed_at > POLL_IN_PROGRESS:
            return result
        await asyncio.sleep(RESULT_WAIT)


@dataclass(frozen=True, slots=True)
class QuotaPoller:
    """The providers' quota polls of one process; ``run`` is its owned background work."""

    settings: Settings
    registry: ProviderRegistry
    transport: Transport
    metrics: Metrics
    engine: AsyncEngine

    async def poll_once(self, polls: QuotaPolls, interval: float) -> None:
        for runtime in list(self.registry.runtimes.values()):
            source = source_of(runtime)
            key = self.settings.provider_key(runtime.config)
            if source is None or key is None:
                continue
            now = time.time()
            view: dict[str, Any] | None
            if await polls.claim(runtime.id, now, interval):
                view = await fetch_view(self.transport, source, key)
                await polls.store(runtime.id, view, now)
            else:
                view = await shared_result(polls, runtime.id)
            if view is not None:
                show(self.metrics, runtime, view)

    async def run(self) -> None:
        interval = max(MIN_INTERVAL, self.settings.quota_poll_interval)
        polls = QuotaPolls(self.engine)
        while True:
            try:
                await self.poll_once(polls, interval)
            except SQLAlchemyError:
                log.exception("upstream quota polls: the store's database failed; trying again later")
            await asyncio.sleep(CHECK_EVERY)
