"""``DeadlineTimer``: moved only for a sooner deadline, moved on request, and nothing left once cancelled."""

from __future__ import annotations

import asyncio

from anygate.deadline_timer import DeadlineTimer


async def test_a_later_deadline_keeps_the_sooner_timer_and_a_sooner_one_moves_it() -> None:
    loop = asyncio.get_running_loop()
    calls: list[str] = []
    timer = DeadlineTimer(loop)

    def called(name: str) -> None:
        timer.fired()
        calls.append(name)

    now = loop.time()
    timer.fire_by(now + 0.05, lambda: called("first"))
    timer.fire_by(now + 10, lambda: called("later"))  # the timer already fires sooner: kept
    await asyncio.sleep(0.1)
    assert calls == ["first"] and not timer.is_set
    timer.fire_by(now + 10, lambda: called("far"))
    timer.fire_by(loop.time() + 0.02, lambda: called("sooner"))  # sooner: moved
    await asyncio.sleep(0.1)
    assert calls == ["first", "sooner"] and not timer.is_set


async def test_fire_at_moves_the_timer_either_way_and_cancel_leaves_nothing_scheduled() -> None:
    loop = asyncio.get_running_loop()
    calls: list[str] = []
    timer = DeadlineTimer(loop)
    timer.fire_by(loop.time() + 0.02, lambda: calls.append("soon"))
    timer.fire_at(loop.time() + 10, lambda: calls.append("moved later"))
    await asyncio.sleep(0.08)
    assert calls == [] and timer.is_set
    timer.cancel()
    assert not timer.is_set
    timer.cancel()  # twice: nothing to do
