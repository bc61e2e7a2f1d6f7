"""The disconnect watch: the request's task cancelled when the client leaves, and nothing of a finished watch
left for the cycle collector (a cycle through it would keep a whole request's objects alive)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from anygate.api.disconnect import SWEEP_SECONDS, WATCH_AFTER_SECONDS, DisconnectWatch, DisconnectWatches
from anygate.api.http import ClientDisconnected


@pytest.fixture
def garbage_kept() -> Iterator[list[Any]]:
    """What the cycle collector finds unreachable from now on, kept in ``gc.garbage`` rather than freed."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def test_a_watch_that_watched_leaves_no_cycle_behind(garbage_kept: list[Any]) -> None:
    async def request() -> None:
        client_stays: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        async def receive() -> dict[str, Any]:
            return await client_stays

        async with DisconnectWatch(receive, SimpleNamespace(client_gone=False), DisconnectWatches()):  # type: ignore[arg-type]
            await asyncio.sleep(WATCH_AFTER_SECONDS * 3)  # long enough for the watcher to start

    await asyncio.create_task(request())
    await asyncio.sleep(0.01)  # the watcher's cancellation runs
    gc.collect()
    left = [type(thing).__name__ for thing in garbage_kept]
    assert "DisconnectWatch" not in left and "CancelledError" not in left and "Task" not in left


async def test_a_client_that_leaves_cancels_the_request_as_a_disconnect() -> None:
    left: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def receive() -> dict[str, Any]:
        return await left

    exchange = SimpleNamespace(client_gone=False)

    async def request() -> None:
        async with DisconnectWatch(receive, exchange, DisconnectWatches()):  # type: ignore[arg-type]
            await asyncio.sleep(WATCH_AFTER_SECONDS * 2)
            left.set_result({"type": "http.disconnect"})
            await asyncio.sleep(3600)  # cancelled when the watcher sees the client gone

    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(asyncio.create_task(request()), timeout=10)
    assert exchange.client_gone is True


def live_timers(loop: asyncio.AbstractEventLoop) -> int:
    """Timers the loop will still run (asyncio's own loop keeps them in ``_scheduled``)."""
    return sum(1 for timer in loop._scheduled if not timer.cancelled())  # type: ignore[attr-defined]


async def test_many_requests_share_one_timer_and_those_answered_in_time_never_start_a_watcher() -> None:
    loop = asyncio.get_running_loop()
    watches = DisconnectWatches()
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        await asyncio.sleep(3600)
        return {}

    timers_before = live_timers(loop)
    entered = [DisconnectWatch(receive, SimpleNamespace(client_gone=False), watches) for _ in range(200)]  # type: ignore[arg-type]
    for watch in entered:
        await watch.__aenter__()
    assert live_timers(loop) == timers_before + 1 and len(watches) == 200
    for watch in entered:
        await watch.__aexit__(None, None, None)  # answered well within WATCH_AFTER_SECONDS
    await asyncio.sleep(WATCH_AFTER_SECONDS + SWEEP_SECONDS)

    assert received == 0 and len(watches) == 0
    assert live_timers(loop) == timers_before  # nothing waiting: the sweep stops


async def test_a_long_request_is_watched_once_it_is_watch_after_seconds_old() -> None:
    watches = DisconnectWatches()
    watching = asyncio.Event()

    async def receive() -> dict[str, Any]:
        watching.set()
        await asyncio.sleep(3600)
        return {}

    async with DisconnectWatch(receive, SimpleNamespace(client_gone=False), watches):  # type: ignore[arg-type]
        await asyncio.sleep(WATCH_AFTER_SECONDS * 0.8)
        assert not watching.is_set()  # too early: most requests end by now
        await asyncio.wait_for(watching.wait(), timeout=5)  # due within a sweep; a slow machine may lag
    assert len(watches) == 0
