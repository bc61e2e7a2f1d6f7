"""Optional push on top of the revision poll: with ANYGATE_REDIS_URL, a write publishes on a Redis
channel and every worker that listens reloads at once. The poll stays as the fallback, so a Redis outage
only slows propagation down to the poll interval.

The channel is named after the database, so gateways sharing a database share a channel.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger("anygate.store")
RETRY_DELAY = 2.0


def channel_for(database_url: str) -> str:
    return f"anygate:{hashlib.sha256(database_url.encode()).hexdigest()[:16]}:store-changed"


class ChangeNotifier:
    def __init__(self, redis_url: str, database_url: str) -> None:
        self.client = redis.from_url(redis_url)
        self.channel = channel_for(database_url)

    def __repr__(self) -> str:
        return f"ChangeNotifier(channel={self.channel!r})"

    async def publish(self) -> None:
        """Tell the other workers; a failure is logged (they will see the change at their next poll)."""
        try:
            await self.client.publish(self.channel, b"1")
        except (RedisError, OSError) as exc:
            log.warning("store change not published", extra={"fields": {"error": type(exc).__name__}})

    async def listen_forever(self, on_change: Callable[[], Awaitable[object]]) -> None:
        while True:
            try:
                await self._listen(on_change)
            except (RedisError, OSError) as exc:
                log.warning("store change channel lost", extra={"fields": {"error": type(exc).__name__}})
            await asyncio.sleep(RETRY_DELAY)

    async def _listen(self, on_change: Callable[[], Awaitable[object]]) -> None:
        async with self.client.pubsub() as pubsub:
            await pubsub.subscribe(self.channel)
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    await on_change()

    async def close(self) -> None:
        await self.client.aclose()
