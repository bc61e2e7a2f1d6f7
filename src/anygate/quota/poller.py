"""Upstream quota: providers that declare ``quota`` are polled in the background, at most once a minute.

The result is the provider's ``quota`` in ``/v1/providers`` (normalized, with ``checked_at`` and any
``error``) and the gauge ``anygate_upstream_quota_remaining{provider, unit}``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from anygate.quota.client import QuotaFetchError, Source, fetch_quota

if TYPE_CHECKING:
    from anygate.api.state import AppState
    from anygate.registry import ProviderRuntime

MIN_INTERVAL = 60.0


def source_of(runtime: ProviderRuntime) -> Source | None:
    config = runtime.config
    if config.quota is None or not config.base_url:
        return None
    return Source(config.id, config.base_url, config.quota.path, config.quota.format, config.name or config.id)


async def poll_once(state: AppState, session: aiohttp.ClientSession) -> None:
    for runtime in list(state.registry.runtimes.values()):
        source = source_of(runtime)
        key = state.settings.provider_key(runtime.config)
        if source is None or key is None:
            continue
        view: dict[str, Any] = {"path": source.quota_path, "format": source.format, "checked_at": int(time.time())}
        try:
            quota = await fetch_quota(session, source, key)
        except QuotaFetchError as exc:
            view["error"] = str(exc)
        else:
            view.update(quota.as_dict())
            for unit, bucket in (("tokens", quota.tokens), ("usd", quota.cost)):
                if bucket is not None and bucket.remaining is not None:
                    state.metrics.quota_remaining.labels(runtime.id, unit).set(bucket.remaining)
        runtime.quota = view


async def poll_upstream_quotas(state: AppState) -> None:
    interval = max(MIN_INTERVAL, state.settings.quota_poll_interval)
    async with aiohttp.ClientSession(trust_env=False) as session:
        while True:
            await poll_once(state, session)
            await asyncio.sleep(interval)
